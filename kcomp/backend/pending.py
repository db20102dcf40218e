"""Keras 2 backend names kcomp does not implement yet.

Keras imports every backend name when it loads a backend, so these exist to let unmodified
Keras load kcomp; calling one raises NotImplementedError naming it. Each carries
`__kcomp_pending__ = True` so that tools (and tests) can tell them from real implementations.
"""
from __future__ import annotations

PENDING = (
    "arange", "batch_normalization", "bias_add", "binary_crossentropy",
    "categorical_crossentropy", "control_dependencies", "conv1d", "conv2d", "conv2d_transpose",
    "conv3d", "conv3d_transpose", "ctc_batch_cost", "ctc_decode", "ctc_label_dense_to_sparse",
    "depthwise_conv2d", "dropout", "foldl", "foldr", "gather", "gradients", "in_test_phase",
    "in_top_k", "in_train_phase", "l2_normalize", "local_conv1d", "local_conv2d", "map_fn",
    "normalize_batch_in_training", "one_hot", "pool2d", "pool3d", "print_tensor",
    "random_binomial", "random_normal", "random_normal_variable", "random_uniform",
    "random_uniform_variable", "repeat", "resize_images", "resize_volumes", "reverse", "rnn",
    "separable_conv1d", "separable_conv2d", "slice", "sparse_categorical_crossentropy",
    "spatial_2d_padding", "spatial_3d_padding", "stop_gradient", "temporal_padding", "to_dense",
    "truncated_normal",
)


def _pending(name: str):
    def fn(*args, **kwargs):
        raise NotImplementedError(f"K.{name} is not implemented by kcomp yet")
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = "Not implemented by kcomp yet: calling it raises NotImplementedError."
    fn.__kcomp_pending__ = True
    return fn


globals().update({name: _pending(name) for name in PENDING})
__all__ = list(PENDING)
