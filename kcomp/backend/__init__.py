"""kcomp as a Keras 2 backend: `KERAS_BACKEND=kcomp.backend`.

Every function here only records nodes of kcomp's IR; `function` compiles a graph to native
code. The surface follows Keras 2.3.1 (kcomp/backend/api.py); one module per family, each
listing its names in __all__. Names not implemented yet raise NotImplementedError
(kcomp/backend/pending.py); `kcomp check-backend kcomp.backend` lists them.
"""
from . import compat  # noqa: F401  (Keras 2.3.1 on Python 3.11 / numpy 2; see compat.py)
from .array_ops import *  # noqa: F401,F403
from .config import *  # noqa: F401,F403
from .control import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .ctc import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .gradients import *  # noqa: F401,F403
from .layout import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .nn_ops import *  # noqa: F401,F403
from .random import *  # noqa: F401,F403
from .reductions import *  # noqa: F401,F403
from .state import *  # noqa: F401,F403
from .tensors import *  # noqa: F401,F403
from .pending import fill as _fill_pending

PENDING = _fill_pending(globals())
del _fill_pending
