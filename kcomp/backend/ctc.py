"""Connectionist temporal classification: ctc_label_dense_to_sparse, ctc_batch_cost, ctc_decode.

Keras 2.3.1 semantics over TensorFlow's CTC ops (kcomp/ir/ops/ctc.py). Where TensorFlow's
result shape depends on the data (a sparse tensor's entry count, the decoded width), kcomp's
compiled functions, whose output shapes follow their input shapes, use the largest possible
static size and mark the unused part.
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
    """([decoded (samples, time_steps) int64, ...], log_prob). Each decoded tensor is padded
    with -1 to the full time_steps width: TensorFlow's is as wide as the longest decoded
    sequence in the batch, which an output shape cannot follow. log_prob: greedy, (samples, 1),
    minus the sum of each step's best log(y_pred + epsilon); beam search, (samples, top_paths),
    the paths' log-probabilities."""
    args = [_logits(y_pred), _lengths(input_length, "ctc_decode")]
    if greedy:
        decoded, log_prob = apply("ctc_greedy_decode", args)
        return [decoded], log_prob
    *paths, log_prob = apply("ctc_beam_decode", args, {
        "beam_width": int(beam_width), "top_paths": int(top_paths),
        "merge_repeated": bool(merge_repeated)})
    return paths, log_prob
