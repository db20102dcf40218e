"""kcomp's CUDA target, reached only when a CUDA device is asked for (kcomp.set_device('cuda'),
KCOMP_DEVICE=cuda or keras.json's "kcomp_device"); importing it needs no GPU and no toolkit.

    toolkit.py     nvcc, its version, the GPU's architecture (KCOMP_CUDA_ARCH overrides)
    runtime.py     the CUDA kernel library (built on demand), device memory, DeviceArray
    dlpack.py      zero-copy import of DLPack GPU arrays
    jit.py         nvcc builds of generated CUDA functions, loading them
    executable.py  calling a generated CUDA function; variables' device copies
"""
from .runtime import DeviceArray, available  # noqa: F401
from .toolkit import CudaUnavailableError  # noqa: F401
