"""print_tensor: the value, unchanged, printed with a message when the function runs."""
from __future__ import annotations

import numpy as np

from ..autodiff import defgrad
from ..registry import register

register("print_tensor", "other", lambda types, attrs: [types[0]],
         lambda values, attrs, out_types: [np.array(values[0])],
         doc="attrs: message. Prints (message, value) through the runtime's print hook "
             "when the compiled function runs; the reference interpreter stays silent")
# the gradient passes through unprinted, as TensorFlow's Print op's does
defgrad("print_tensor")(lambda node, grads: [grads[0]])
