"""Neural-network helpers: in_top_k, l2_normalize, bias_add, batch normalization, crossentropies."""
from __future__ import annotations

__all__ = []
