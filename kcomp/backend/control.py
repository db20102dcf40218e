"""Control flow: rnn, map_fn, foldl, foldr (a Python step function traced once into a body that
runs as a native loop, kcomp/ir/ops/control.py); in_train_phase, in_test_phase."""
from __future__ import annotations

from ..ir import build as B
from ..ir import dtypes as D
from ..ir.graph import Tensor, TensorType, toposort
from ..ir.ops.control import loop, trace
from ..ir.registry import shape_error
from . import config
from .elementwise import switch
from .layout import permute_dimensions, stack

__all__ = ["rnn", "map_fn", "foldl", "foldr", "in_train_phase", "in_test_phase"]


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _element_type(t: Tensor) -> TensorType:
    """The type of one element along axis 0."""
    return TensorType(t.type.dtype, t.dims[1:])


def _swap01(x: Tensor) -> Tensor:
    return permute_dimensions(x, (1, 0) + tuple(range(2, x.ndim)))


def _expand(m: Tensor, ndim: int) -> Tensor:
    """A (samples,) mask shaped (samples, 1, ...) to select along ndim-dimensional values."""
    return B.reshape(m, m.dims + (1,) * (ndim - 1))


def _uses_learning_phase(t: Tensor) -> bool:
    lp = config.learning_phase()
    return isinstance(lp, Tensor) and any(n is lp.node for n in toposort([t]))


def rnn(step_function, inputs, initial_states, go_backwards=False, mask=None, constants=None,
        unroll=False, input_length=None):
    """Keras's rnn: (last_output, outputs, new_states). The step runs as one native loop over
    time; a masked step keeps the previous output (zeros before the first) and the states.
    With go_backwards, outputs come in the order the steps ran (reversed time)."""
    inputs = B.as_tensor(inputs)
    if inputs.ndim < 3:
        raise shape_error("rnn", "inputs need at least 3 dimensions (samples, time, ...)",
                          inputs.type)
    states = [B.as_tensor(s) for s in _as_list(initial_states or [])]
    constants = _as_list(constants) if constants is not None else []
    if mask is not None:
        if not states:
            raise ValueError("rnn: a mask needs at least one state")
        mask = B.cast(B.as_tensor(mask), D.bool_)
        if mask.ndim != 2:
            raise shape_error("rnn", "the mask must have shape (samples, time)", mask.type)
    if unroll:
        return _rnn_unrolled(step_function, inputs, states, go_backwards, mask, constants)
    n = len(states)

    # one call outside the loop gives the step output's type (as Keras's numpy backend does)
    sample, _ = step_function(B.getitem(inputs, (slice(None), 0)), states + constants)
    sample = B.as_tensor(sample)

    def body(*p):
        # p: x_t, [mask_t], states..., [previous output]
        x_t, m_t = p[0], (p[1] if mask is not None else None)
        carried = list(p[1 + (mask is not None):1 + (mask is not None) + n])
        out, new = step_function(x_t, carried + constants)
        out, new = B.as_tensor(out), [B.as_tensor(s) for s in _as_list(new)]
        if len(new) != n:
            raise ValueError(f"rnn: the step function returned {len(new)} states, expected {n}")
        new = [B.cast(s, c.type.dtype) for s, c in zip(new, carried)]
        if m_t is None:
            return new + [out]
        out = B.select(_expand(m_t, out.ndim), out, p[-1])
        new = [B.select(_expand(m_t, s.ndim), s, c) for s, c in zip(new, carried)]
        return new + [out, out]

    seqs = [_swap01(inputs)]
    init = list(states)
    if mask is not None:
        seqs.append(_swap01(mask))
        init.append(B.broadcast_to(B.cast(0, sample.type.dtype), sample.dims))
    types = [_element_type(s) for s in seqs] + [s.type for s in init]
    graph, captured = trace(body, types)
    results = loop(seqs, init, graph, captured, reverse=go_backwards)
    outputs_tm = results[-1]
    last = B.getitem(outputs_tm, -1)
    if _uses_learning_phase(last):
        last._uses_learning_phase = True
    return last, _swap01(outputs_tm), results[:n]


def _rnn_unrolled(step_function, inputs, states, go_backwards, mask, constants):
    steps = inputs.dims[1]
    if not isinstance(steps, int):
        raise ValueError("rnn: unroll=True needs a static number of time steps")
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    outputs, prev = [], None
    for t in order:
        out, new = step_function(B.getitem(inputs, (slice(None), t)), states + constants)
        out, new = B.as_tensor(out), [B.as_tensor(s) for s in _as_list(new)]
        if mask is not None:
            m_t = B.getitem(mask, (slice(None), t))
            if prev is None:
                prev = B.broadcast_to(B.cast(0, out.type.dtype), out.dims)
            out = B.select(_expand(m_t, out.ndim), out, prev)
            new = [B.select(_expand(m_t, s.ndim), s, c) for s, c in zip(new, states)]
        outputs.append(out)
        states, prev = new, out
    return outputs[-1], stack(outputs, axis=1), states


def map_fn(fn, elems, name=None, dtype=None):
    """fn applied to each element along axis 0, results stacked."""
    elems = B.as_tensor(elems)
    if elems.ndim == 0:
        raise shape_error("map_fn", "elems needs a leading axis", elems.type)
    graph, captured = trace(lambda x: [fn(x)], [_element_type(elems)])
    (out,) = loop([elems], [], graph, captured)
    return B.cast(out, dtype) if dtype is not None else out


def _fold(fn, elems, initializer, reverse: bool):
    elems = B.as_tensor(elems)
    if elems.ndim == 0:
        raise shape_error("foldl", "elems needs a leading axis", elems.type)
    if initializer is None:
        first = -1 if reverse else 0
        initializer = B.getitem(elems, first)
        elems = B.getitem(elems, slice(None, -1) if reverse else slice(1, None))
    init = B.as_tensor(initializer)

    def body(x, acc):
        return [B.cast(fn(acc, x), init.type.dtype)]

    graph, captured = trace(body, [_element_type(elems), init.type])
    (final,) = loop([elems], [init], graph, captured, reverse=reverse)
    return final


def foldl(fn, elems, initializer=None, name=None):
    """acc = fn(acc, x) for x in elems, left to right; initializer defaults to elems[0]."""
    return _fold(fn, elems, initializer, reverse=False)


def foldr(fn, elems, initializer=None, name=None):
    """acc = fn(acc, x) for x in elems, right to left; initializer defaults to elems[-1]."""
    return _fold(fn, elems, initializer, reverse=True)


def in_train_phase(x, alt, training=None):
    """x in the training phase, alt otherwise; the learning phase may be symbolic."""
    uses_learning_phase = training is None
    if training is None:
        training = config.learning_phase()
    if not isinstance(training, Tensor) and training in (0, 1):  # a fixed phase: no graph
        branch = x if training else alt
        return branch() if callable(branch) else branch
    out = switch(training, x, alt)
    if uses_learning_phase and isinstance(out, Tensor):
        out._uses_learning_phase = True
    return out


def in_test_phase(x, alt, training=None):
    return in_train_phase(alt, x, training=training)
