"""in_top_k: whether each row's target class is among its k highest predictions.

TensorFlow's rule (in_topk_op.cc): a target counts as in when fewer than k classes score
strictly higher, so a target tied with the k-th largest is in; a target out of range or a row
with a non-finite score gives False. The kernel is in kcomp/lowering/rules/array.py.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as D
from .. import shapes as S
from ..graph import TensorType
from ..registry import register, shape_error


def _in_top_k_infer(types, attrs):
    pred, tgt = types
    if pred.ndim != 2 or tgt.ndim != 1:
        raise shape_error("in_top_k", "needs predictions of rank 2 and targets of rank 1",
                          pred, tgt)
    if pred.dtype.is_bool or not tgt.dtype.is_int:
        raise shape_error("in_top_k", f"needs numeric predictions and integer targets, got "
                          f"{pred.dtype.name} and {tgt.dtype.name}", pred, tgt)
    try:
        b = S.same(pred.dims[0], tgt.dims[0], "in_top_k: batch sizes differ")
    except ValueError:
        raise shape_error("in_top_k", "batch sizes differ", pred, tgt) from None
    return [TensorType(D.bool_, (b,))]


def _in_top_k_ref(values, attrs, out_types):
    pred, tgt = values
    p = pred.astype(np.float64) if pred.dtype == np.float16 else pred
    n = p.shape[1]
    t = tgt.astype(np.int64)
    ok = (t >= 0) & (t < n)
    rows = np.arange(p.shape[0])
    score = p[rows, np.where(ok, t, 0)] if n else np.zeros(p.shape[0], p.dtype)
    finite = np.all(np.isfinite(p), axis=1) if p.dtype.kind == "f" else np.ones(len(t), bool)
    higher = np.sum(p > score[:, None], axis=1)
    return [ok & finite & (higher < attrs["k"])]


register("in_top_k", "other", _in_top_k_infer, _in_top_k_ref, exact=True,
         doc="attrs: k. predictions (batch, classes), targets (batch,) -> bool (batch,)")
