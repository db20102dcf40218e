"""Every op of the IR, each defined once: attributes, shape/dtype inference and numpy reference.

Importing this package registers them all in kcomp.ir.registry."""
from . import elementwise, leaf, linalg, nn, reduce, shape  # noqa: F401  (registers them)
