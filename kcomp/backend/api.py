"""The Keras 2 backend surface (../shared/keras2-backend-api.md): every name a backend must
define for Keras 2.3.1, by group. `kcomp check-backend` and kcomp/backend/pending.py use it."""

SURFACE = {
    "Configuration and bookkeeping": (
        "backend", "epsilon", "set_epsilon", "floatx", "set_floatx", "cast_to_floatx",
        "image_data_format", "set_image_data_format", "normalize_data_format", "get_uid",
        "reset_uids", "learning_phase", "set_learning_phase", "clear_session",
        "manual_variable_initialization", "name_scope", "symbolic", "eager",
        "control_dependencies",
    ),
    "Tensors, variables, placeholders, introspection": (
        "placeholder", "is_placeholder", "variable", "is_variable", "constant", "is_tensor",
        "is_keras_tensor", "is_sparse", "to_dense", "shape", "int_shape", "ndim", "size",
        "dtype", "count_params", "eval", "get_value", "batch_get_value", "set_value",
        "batch_set_value", "print_tensor",
    ),
    "Construction": (
        "zeros", "ones", "eye", "zeros_like", "ones_like", "identity", "arange",
        "random_uniform_variable", "random_normal_variable", "random_normal", "random_uniform",
        "random_binomial", "truncated_normal", "one_hot",
    ),
    "Compilation, state, differentiation": (
        "function", "update", "update_add", "update_sub", "moving_average_update", "gradients",
        "stop_gradient",
    ),
    "Linear algebra and contraction (hand-tuned kernels)": (
        "dot", "batch_dot", "transpose",
    ),
    "Reductions and scans (hand-tuned kernels)": (
        "max", "min", "sum", "prod", "mean", "var", "std", "any", "all", "argmax", "argmin",
        "logsumexp", "cumsum", "cumprod",
    ),
    "Elementwise": (
        "cast", "square", "abs", "sqrt", "exp", "log", "round", "sign", "pow", "clip", "equal",
        "not_equal", "greater", "greater_equal", "less", "less_equal", "maximum", "minimum",
        "sin", "cos", "switch",
    ),
    "Shape and indexing": (
        "gather", "concatenate", "reshape", "permute_dimensions", "repeat_elements", "repeat",
        "tile", "flatten", "batch_flatten", "expand_dims", "squeeze", "stack", "reverse",
        "slice", "temporal_padding", "spatial_2d_padding", "spatial_3d_padding", "resize_images",
        "resize_volumes",
    ),
    "Neural-network ops": (
        "relu", "elu", "softmax", "softplus", "softsign", "sigmoid", "hard_sigmoid", "tanh",
        "dropout", "l2_normalize", "in_top_k", "bias_add", "normalize_batch_in_training",
        "batch_normalization", "categorical_crossentropy", "sparse_categorical_crossentropy",
        "binary_crossentropy", "in_train_phase", "in_test_phase",
    ),
    "Convolution and pooling": (
        "conv1d", "conv2d", "conv3d", "conv2d_transpose", "conv3d_transpose", "separable_conv1d",
        "separable_conv2d", "depthwise_conv2d", "local_conv1d", "local_conv2d", "pool2d",
        "pool3d",
    ),
    "Control flow (traced Python functions lowered to native loops; rnn is a hand-tuned kernel)": (
        "rnn", "map_fn", "foldl", "foldr",
    ),
    "Sequence losses and decoding": (
        "ctc_label_dense_to_sparse", "ctc_batch_cost", "ctc_decode",
    ),
}

NAMES = tuple(n for group in SURFACE.values() for n in group)

# Names Keras imports only for its own built-in backends (not required of kcomp).
BUILTIN_ONLY = ("get_session", "set_session", "pattern_broadcast")
