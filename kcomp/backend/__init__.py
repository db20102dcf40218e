"""kcomp as a Keras 2 backend: `KERAS_BACKEND=kcomp.backend`.

Every function here only records nodes of kcomp's IR; `function` compiles a graph to native
code. The surface follows Keras 2.3.1 (../shared/keras2-backend-api.md); what this version does
not provide yet is listed by `kcomp check-backend kcomp.backend`.
"""
from . import compat  # noqa: F401  (Keras 2.3.1 on Python 3.11 / numpy 2; see compat.py)
from .pending import *  # noqa: F401,F403  (names not implemented yet; they raise when called)
from .config import (backend, cast_to_floatx, clear_session, epsilon, floatx, get_uid,
                     image_data_format, learning_phase, manual_variable_initialization,
                     name_scope, normalize_data_format, reset_uids, set_epsilon, set_floatx,
                     set_image_data_format, set_learning_phase, symbolic, eager)
from .elementwise import (abs, clip, cos, equal, exp, greater, greater_equal, less, less_equal,
                          log, maximum, minimum, not_equal, pow, round, sign, sin, sqrt, square,
                          switch)
from .layout import (batch_flatten, concatenate, expand_dims, flatten, permute_dimensions,
                     repeat_elements, reshape, squeeze, stack, tile)
from .linalg import batch_dot, dot, transpose
from .nn import elu, hard_sigmoid, relu, sigmoid, softmax, softplus, softsign, tanh
from .reductions import (all, any, argmax, argmin, cumprod, cumsum, logsumexp, max, mean, min,
                         prod, std, sum, var)
from .state import function, moving_average_update, update, update_add, update_sub
from .tensors import (batch_get_value, batch_set_value, cast, constant, count_params, dtype,
                      eval, eye, get_value, identity, int_shape, is_keras_tensor, is_placeholder,
                      is_sparse, is_tensor, is_variable, ndim, ones, ones_like, placeholder,
                      set_value, shape, size, variable, zeros, zeros_like)
