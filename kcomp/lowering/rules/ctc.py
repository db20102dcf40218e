"""CTC kernels: dense-to-sparse labels, loss and decoders (templates ctc_*.j2; per-item helpers
in csrc/include/kcomp/ctc.h)."""
from __future__ import annotations

from ...ir import dtypes as D
from ...ir.graph import Node
from ..names import Code, join
from ..plan import Kernel
from . import rule
from .common import Pointers, label_of


def _add(L, node: Node, template: str, ptrs: Pointers, **ctx) -> None:
    ctx.update(ptrs=ptrs.decls, can_fail=template != "ctc_sparse")
    L.add(Kernel(L.kernel_name(), template, ctx, label_of([node]), ptrs.reads, ptrs.writes))


def _logits(L, node: Node, ptrs: Pointers) -> dict:
    """The (B, T, C) logits every kernel but ctc_sparse reads, and their extents."""
    L.include("kcomp/ctc.h")
    x = node.inputs[0]
    B, T, C = (L.dims.expr(d) for d in x.dims)
    return {"x": ptrs.get(L.ref(x).buf), "B": B, "T": T, "C": C}


def _work(L, x, size: Code, dtype):
    """Scratch of `size` elements per batch item; the size comes from the header, which owns
    the layout. Returns the buffer and the per-item size's C expression."""
    per_item = L.dims.computed(size)
    return L.buffer(dtype, (x.dims[0], per_item), "scratch"), L.dims.expr(per_item)


@rule("ctc_dense_to_sparse")
def _sparse(L, node: Node):
    labels, lengths = node.inputs
    indices, values, count = node.outputs
    ptrs = Pointers()
    _add(L, node, "ctc_sparse", ptrs, labels=ptrs.get(L.ref(labels).buf),
         lengths=ptrs.get(L.ref(lengths).buf), indices=ptrs.get(L.ref(indices).buf, True),
         vals=ptrs.get(L.ref(values).buf, True), count=ptrs.get(L.ref(count).buf, True),
         B=L.dims.expr(labels.dims[0]), NL=L.dims.expr(labels.dims[1]),
         S=Code(values.type.dtype.ctype))


def _labels_ctx(L, node: Node, ptrs: Pointers) -> dict:
    """Pointers and extents of the labels and lengths that ctc_loss(_grad) read."""
    labels, label_length, logit_length = node.inputs[1:4]
    return {"labels": ptrs.get(L.ref(labels).buf),
            "label_length": ptrs.get(L.ref(label_length).buf),
            "logit_length": ptrs.get(L.ref(logit_length).buf),
            "NL": L.dims.expr(labels.dims[1])}


@rule("ctc_loss")
def _loss(L, node: Node):
    out = node.outputs[0]
    ptrs = Pointers()
    ctx = _logits(L, node, ptrs)
    ctx.update(_labels_ctx(L, node, ptrs))
    work, per_item = _work(L, node.inputs[0],
                           Code(f"kc::ctc::loss_work({ctx['C']}, {ctx['NL']})"), D.float64)
    _add(L, node, "ctc_loss", ptrs, **ctx, work=ptrs.get(work, True),
         y=ptrs.get(L.ref(out).buf, True), W=per_item, S=Code(out.type.dtype.ctype))


@rule("ctc_loss_grad")
def _loss_grad(L, node: Node):
    out = node.outputs[0]
    ptrs = Pointers()
    ctx = _logits(L, node, ptrs)
    ctx.update(_labels_ctx(L, node, ptrs))
    work, per_item = _work(L, node.inputs[0], Code(
        f"kc::ctc::loss_grad_work({ctx['T']}, {ctx['C']}, {ctx['NL']})"), D.float64)
    _add(L, node, "ctc_loss_grad", ptrs, **ctx, scale=ptrs.get(L.ref(node.inputs[4]).buf),
         work=ptrs.get(work, True), y=ptrs.get(L.ref(out).buf, True), W=per_item)


@rule("ctc_greedy_decode")
def _greedy(L, node: Node):
    seq = node.inputs[1]
    decoded, neg_sum = node.outputs
    ptrs = Pointers()
    _add(L, node, "ctc_greedy", ptrs, **_logits(L, node, ptrs), seq=ptrs.get(L.ref(seq).buf),
         decoded=ptrs.get(L.ref(decoded).buf, True), y=ptrs.get(L.ref(neg_sum).buf, True),
         S=Code(neg_sum.type.dtype.ctype))


@rule("ctc_beam_decode")
def _beam(L, node: Node):
    x, seq = node.inputs
    *paths, log_probs = node.outputs
    width = node.attrs["beam_width"]
    ptrs = Pointers()
    ctx = _logits(L, node, ptrs)
    work, per_item = _work(L, x, Code(f"kc::ctc::beam_work_bytes({ctx['T']}, {ctx['C']}, "
                                      f"{width})"), D.BY_NAME["uint8"])
    _add(L, node, "ctc_beam", ptrs, **ctx, seq=ptrs.get(L.ref(seq).buf),
         paths=join(", ", [ptrs.get(L.ref(p).buf, True) for p in paths]),
         y=ptrs.get(L.ref(log_probs).buf, True), work=ptrs.get(work, True),
         work_bytes=per_item, width=width, top=len(paths),
         merge=Code("true" if node.attrs["merge_repeated"] else "false"))
