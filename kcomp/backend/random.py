"""Random ops: seeded counter-based streams, fresh samples at every call of a compiled function;
dropout. With seed=None a seed is drawn from numpy's global generator (as Keras's TensorFlow
backend does), so np.random.seed makes a whole program reproducible."""
from __future__ import annotations

import numpy as np

from ..ir import build as B
from ..ir import dtypes as D
from ..ir.graph import Tensor
from ..ir.ops import leaf
from ..ir.registry import apply1, shape_error
from . import config
from .layout import dims_arg
from .tensors import variable

__all__ = ["random_uniform", "random_normal", "truncated_normal", "random_binomial",
           "random_uniform_variable", "random_normal_variable", "dropout"]


def _seed(seed) -> int:
    return int(np.random.randint(10 ** 9)) if seed is None else int(seed)


def _sample(dist: str, shape, params, dtype, seed) -> Tensor:
    dt = D.as_dtype(dtype if dtype is not None else config.floatx())
    dims = tuple(dims_arg(shape, f"random_{dist}"))
    if any(isinstance(d, int) and d < 0 for d in dims):
        raise shape_error(f"random_{dist}", f"negative dimension in {dims}")
    counter = leaf.variable(np.zeros((), np.uint64), config.scoped(
        f"random_counter_{config.get_uid('random_counter')}"))
    return apply1("random", [counter], {"dist": dist, "params": tuple(float(p) for p in params),
                                        "seed": _seed(seed), "dims": dims, "dtype": dt})


def _affine(dist, shape, a, b, dtype, seed):
    """a + b * sample, composed in the graph when a or b is a tensor."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        base = _sample(dist, shape, (0.0, 1.0), dtype, seed)
        return B.binary("add", B.binary("mul", base, b), a)
    return _sample(dist, shape, (a, b), dtype, seed)


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    if isinstance(minval, Tensor) or isinstance(maxval, Tensor):
        u = _sample("uniform", shape, (0.0, 1.0), dtype, seed)
        return B.binary("add", B.binary("mul", u, B.binary("sub", maxval, minval)), minval)
    return _sample("uniform", shape, (minval, maxval), dtype, seed)


def random_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return _affine("normal", shape, mean, stddev, dtype, seed)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal samples more than two standard deviations from the mean are drawn again."""
    return _affine("truncated_normal", shape, mean, stddev, dtype, seed)


def random_binomial(shape, p=0.0, dtype=None, seed=None):
    """1 with probability p, else 0 (uniform <= p, as Keras computes it)."""
    return _sample("binomial", shape, (p,), dtype, seed)


def random_uniform_variable(shape, low, high, dtype=None, name=None, seed=None):
    return variable(random_uniform(shape, low, high, dtype, seed), dtype, name)


def random_normal_variable(shape, mean, scale, dtype=None, name=None, seed=None):
    return variable(random_normal(shape, mean, scale, dtype, seed), dtype, name)


def dropout(x, level, noise_shape=None, seed=None):
    """x / (1 - level) where a uniform draw >= level, else 0 (TensorFlow's dropout); noise_shape
    broadcasts the mask, None entries taking x's extents."""
    x = B.as_tensor(x)
    level = float(level)
    if not 0.0 <= level < 1.0:
        raise ValueError(f"dropout: level must be in [0, 1), got {level}")
    if noise_shape is None:
        dims = x.dims
    else:
        given = dims_arg(noise_shape, "dropout") if isinstance(noise_shape, Tensor) else \
            [None if d is None else dims_arg([d], "dropout")[0] for d in noise_shape]
        if len(given) != x.ndim:
            raise shape_error("dropout", f"noise_shape {given} does not match the rank of x",
                              x.type)
        dims = tuple(x.dims[i] if d is None else d for i, d in enumerate(given))
    u = _sample("uniform", dims, (0.0, 1.0), x.dtype if x.type.dtype.is_float else None, seed)
    keep = B.cast(B.binary("greater_equal", u, level), x.type.dtype)
    return B.binary("mul", B.binary("mul", x, 1.0 / (1.0 - level)), keep)
