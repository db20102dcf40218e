"""Connectionist temporal classification: ctc_label_dense_to_sparse, ctc_batch_cost, ctc_decode."""
from __future__ import annotations

__all__ = []
