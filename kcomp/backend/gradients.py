"""gradients and stop_gradient: symbolic reverse-mode differentiation (kcomp/ir/autodiff.py).

The gradients are ordinary graph values: compiled with the forward pass and the optimizer's
updates into one native function, they share its intermediate values instead of recomputing
them.
"""
from __future__ import annotations

from ..ir import autodiff
from ..ir import build as B

__all__ = ["gradients", "stop_gradient"]


def gradients(loss, variables):
    """d(loss)/d(v) for each v of variables (a list), None for a variable the loss does not
    depend on (TensorFlow's behaviour, which Keras's optimizers turn into a clear error).
    A list of losses is differentiated as their sum."""
    losses = [B.as_tensor(v) for v in loss] if isinstance(loss, (list, tuple)) else \
        [B.as_tensor(loss)]
    single = not isinstance(variables, (list, tuple))
    xs = [variables] if single else list(variables)
    grads = autodiff.gradients(losses, [B.as_tensor(v) for v in xs])
    return grads[0] if single else grads


def stop_gradient(variables):
    """The tensor (or list of tensors) itself, marked so that gradients do not flow back."""
    if isinstance(variables, (list, tuple)):
        return [B.unary("stop_gradient", v) for v in variables]
    return B.unary("stop_gradient", variables)
