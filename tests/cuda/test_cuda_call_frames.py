"""The host side of a GPU function's call (kcomp/cuda/executable.py): call tables (_Frame) built
once per thread and rewritten only where a pointer or shape changed, and CUDA torch tensors read
through their own accessors. These tests need no GPU: a fake kernel library hands out addresses,
a fake generated module records what each call passed, and fake tensors stand in for torch's."""
import itertools
import threading

import numpy as np
import pytest

from kcomp.cuda import executable as ex
from kcomp.cuda import runtime as rt

F32 = 11  # KC_FLOAT32


class FakeLib:
    def __init__(self):
        self.addresses = itertools.count(4096, 4096)

    def kc_cuda_malloc(self, nbytes):
        return next(self.addresses)

    def kc_cuda_free(self, ptr):
        pass


class FakeModule:
    """y = f(x, v) with y of shape (rows of x, 3); records each call's tables; `inner` (if set)
    is called from inside run, as a print_tensor hook might."""

    def __init__(self):
        self.seen = []
        self.inner = None

    def shapes(self, ref):
        c = ref._obj
        out = c.outputs[0]
        out.dtype, out.rank = F32, 2
        out.shape[0], out.shape[1] = c.inputs[0].shape[0], 3
        return 0

    def run(self, ref):
        c = ref._obj

        def entry(t):
            return t.data, tuple(t.shape[:t.rank]), tuple(t.strides[:t.rank])
        if self.inner is not None:
            inner, self.inner = self.inner, None
            inner()
        self.seen.append({"x": entry(c.inputs[0]), "v": entry(c.variables[0]),
                          "y": entry(c.outputs[0])})
        return 0


class FakeType:
    class dtype:
        code = F32


class FakeVariable:
    type = FakeType

    def __init__(self):
        self._value = np.zeros(3, np.float32)
        self._device = rt.DeviceArray((3,), np.float32)


class FakeCompiled:
    def __init__(self):
        self.module = FakeModule()


@pytest.fixture
def exe(monkeypatch):
    monkeypatch.setattr(rt, "_lib", FakeLib())
    e = ex.CudaExecutable.__new__(ex.CudaExecutable)  # (__init__ uploads constants)
    e.lib, e.kernels, e.api = FakeCompiled(), rt._lib, 1
    e.specs = [("x", F32, [-1, 4], np.dtype(np.float32))]
    e.output_codes = [F32]
    e.consts, e.const_table = [], (rt.Tensor * 1)()
    e.variables, e.updated = [FakeVariable()], []
    e.name, e.device_outputs, e.copies = "f", True, False
    e._local = threading.local()
    return e


def test_tables_follow_pointers_and_shapes(exe):
    seen = exe.lib.module.seen
    a, b = rt.DeviceArray((5, 4), np.float32), rt.DeviceArray((7, 4), np.float32)
    for x in (a, a, b, a):
        y = exe.run([x])[0]
        last = seen[-1]
        assert last["x"] == (x.ptr, x.shape, (4, 1))
        assert last["y"] == (y.ptr, (x.shape[0], 3), (3, 1))
        assert y.shape == (x.shape[0], 3)
    assert len({s["y"][0] for s in seen}) == 4  # a new output block each call
    var = exe.variables[0]
    old = var._device.ptr
    var._device = rt.DeviceArray((3,), np.float32)  # set_value: a new device copy
    exe.run([a])
    assert seen[-2]["v"][0] == old and seen[-1]["v"] == (var._device.ptr, (3,), (1,))


def test_a_call_made_during_a_call_gets_its_own_tables(exe):
    a, b = rt.DeviceArray((5, 4), np.float32), rt.DeviceArray((2, 4), np.float32)
    module = exe.lib.module
    inner_out = []
    module.inner = lambda: inner_out.append(exe.run([b])[0])
    y = exe.run([a])[0]
    inner, outer = module.seen
    assert inner["x"] == (b.ptr, (2, 4), (4, 1)) and inner["y"][0] == inner_out[0].ptr
    assert outer["x"] == (a.ptr, (5, 4), (4, 1)) and outer["y"] == (y.ptr, (5, 3), (3, 1))


def test_each_thread_has_its_own_tables(exe):
    frames = []

    def work():
        frames.append(exe._frame())
    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert frames[0] is not frames[1] and exe._frame() not in frames


class FakeDtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class FakeTorchTensor:
    """What kcomp reads of a CUDA torch.Tensor (its class's module is "torch")."""
    is_cuda = True

    def __init__(self, shape, dtype="float32", strides=None):
        self.shape, self.dtype = shape, FakeDtype(dtype)
        self._strides = strides

    def is_contiguous(self):
        return self._strides is None

    def stride(self):
        return self._strides

    def data_ptr(self):
        return 8192

    @property
    def __cuda_array_interface__(self):  # (torch's costs microseconds: must not be read)
        raise AssertionError("read through __cuda_array_interface__")


FakeTorchTensor.__module__ = "torch"


def test_torch_tensors_are_read_through_their_accessors(exe):
    t = FakeTorchTensor((6, 4))
    y = exe.run([t])[0]
    assert exe.lib.module.seen[-1]["x"] == (8192, (6, 4), (4, 1)) and y.shape == (6, 3)
    a = rt.gpu_array(t)
    assert (a.ptr, a.shape, a.dtype, a._owner) == (8192, (6, 4), np.dtype(np.float32), t)
    with pytest.raises(ValueError, match=r"input 'x' \(#0\): a GPU array given to kcomp must be "
                                         r"C-contiguous"):
        exe.run([FakeTorchTensor((6, 4), strides=(1, 6))])
    exe.run([FakeTorchTensor((6, 4), strides=(4, 1))])  # contiguous in all but torch's flag
    with pytest.raises(ValueError, match=r"input 'x' \(#0\): a GPU tensor of dtype "
                                         r"torch.bfloat16, which numpy"):
        exe.run([FakeTorchTensor((6, 4), "bfloat16")])
    with pytest.raises(ValueError, match="dtype float64; this function takes float32"):
        exe.run([FakeTorchTensor((6, 4), "float64")])
