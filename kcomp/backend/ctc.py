"""Connectionist temporal classification: ctc_label_dense_to_sparse, ctc_batch_cost, ctc_decode.

Keras 2.3.1 semantics over TensorFlow's CTC ops (kcomp/ir/ops/ctc.py). Where TensorFlow's
result shape depends on the data, kcomp's compiled functions, whose output shapes follow their
input shapes, use the largest possible size: a sparse tensor's entries are padded and counted;
a decoded path's width is bounded by the time steps and trimmed to TensorFlow's width when a
function returns it.
"""
from __future__ import annotations

from typing import NamedTuple

from ..ir import build as B
from ..ir import dtypes as D
from ..ir import shapes as S
from ..ir.graph import Tensor
from ..ir.registry import apply, apply1
from . import config

__all__ = ["ctc_label_dense_to_sparse", "ctc_batch_cost", "ctc_decode"]


class SparseTensor(NamedTuple):
    """ctc_label_dense_to_sparse's stand-in for TensorFlow's SparseTensor of the labels (B, L):
    the entries, row-major, packed first into tensors of the largest possible size B * L.
    Only the first `count` rows of indices and values are entries; the rest hold (-1, -1) and 0.
    """
    indices: Tensor      # int64 (B * L, 2): (row, position) of each entry
    values: Tensor       # (B * L,), the labels' dtype
    dense_shape: Tensor  # int64 (2,): (B, L)
    count: Tensor        # int64 (): the number of entries


def _lengths(x, what: str) -> Tensor:
    """Per-item lengths, (batch,) or (batch, 1) as Keras passes them, as an int32 vector."""
    x = B.as_tensor(x)
    if x.ndim == 2 and x.dims[1] == 1:
        x = B.reshape(x, x.dims[:1])
    if x.ndim != 1:
        raise ValueError(f"{what}: lengths need shape (batch,) or (batch, 1), got "
                         f"{S.fmt(x.dims)}")
    return B.cast(x, D.int32)


def _logits(y_pred) -> Tensor:
    """Keras feeds TensorFlow's CTC ops log(y_pred + epsilon)."""
    y = B.as_tensor(y_pred)
    if not y.type.dtype.is_float:
        y = B.cast(y, B.floatx_dtype())
    return B.unary("log", B.binary("add", y, config.epsilon()))


def ctc_label_dense_to_sparse(labels, label_lengths):
    labels = B.as_tensor(labels)
    indices, values, count = apply("ctc_dense_to_sparse", [
        labels, _lengths(label_lengths, "ctc_label_dense_to_sparse")])
    dense_shape = B.cast(apply1("shape_of", [labels]), D.int64)
    return SparseTensor(indices, values, dense_shape, count)


def ctc_batch_cost(y_true, y_pred, input_length, label_length):
    """(samples, 1): the CTC loss of each item. TensorFlow's rules for labels apply, except
    that an empty label gives -log P(all blanks) where TensorFlow raises."""
    loss = apply1("ctc_loss", [_logits(y_pred), B.cast(B.as_tensor(y_true), D.int32),
                               _lengths(label_length, "ctc_batch_cost"),
                               _lengths(input_length, "ctc_batch_cost")])
    return B.reshape(loss, loss.dims + (1,))


def ctc_decode(y_pred, input_length, greedy=True, beam_width=100, top_paths=1,
               merge_repeated=False):
    """([decoded (samples, width) int64, ...], log_prob). As in TensorFlow, a decoded tensor is
    as wide as the longest decoded sequence in the batch, the rest padded with -1: inside a
    compiled function it is time_steps wide (its bound), and a function returning it trims it
    (kcomp.function's bounded outputs). log_prob: greedy, (samples, 1), minus the sum of each
    step's best log(y_pred + epsilon); beam search, (samples, top_paths), the paths'
    log-probabilities."""
    args = [_logits(y_pred), _lengths(input_length, "ctc_decode")]
    if greedy:
        decoded, log_prob = apply("ctc_greedy_decode", args)
        return [_bounded(decoded)], log_prob
    *paths, log_prob = apply("ctc_beam_decode", args, {
        "beam_width": int(beam_width), "top_paths": int(top_paths),
        "merge_repeated": bool(merge_repeated)})
    return [_bounded(p) for p in paths], log_prob


def _bounded(decoded):
    """Mark decoded's width as bounded by time_steps, its actual value the longest path's."""
    length = B.reduce("max", B.reduce("sum", B.cast(B.binary("not_equal", decoded, -1),
                                                      "int64"), axis=1))
    decoded._kcomp_trim = (1, length)
    return decoded
