"""Array construction and indexing: gather, one_hot, reverse, slice, arange, repeat, padding, resizing."""
from __future__ import annotations

__all__ = []
