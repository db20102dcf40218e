"""Convolution and pooling: conv1d/2d/3d, transposed, separable, depthwise and locally connected convolutions, pool2d/pool3d."""
from __future__ import annotations

__all__ = []
