"""Random ops: seeded counter-based streams, fresh samples at every call of a compiled function; dropout."""
from __future__ import annotations

__all__ = []
