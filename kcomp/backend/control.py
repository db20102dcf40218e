"""Control flow: rnn, map_fn, foldl, foldr (traced once, run as native loops); in_train_phase, in_test_phase."""
from __future__ import annotations

__all__ = []
