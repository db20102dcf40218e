"""The CUDA implicit-GEMM convolution's patch reads (csrc/cuda/conv_patches.cuh), checked on the
host: tests/native/conv_patches.cpp fills every A tile as the kernel's threads do, for x holding
each element's offset + 1, and the result must be numpy's im2col of that x, with zeros in the
tiles past m and k, for 1-3 spatial dims, channels a multiple of 4 and not, strides, dilations,
padding, and pixel counts that leave partial tiles. (The kernel itself runs in the CUDA tests,
on a GPU.)"""
import os
import shutil
import subprocess

import numpy as np
import pytest

from kcomp import _paths

HERE = os.path.dirname(os.path.abspath(__file__))
CXX = os.environ.get("KCOMP_CXX") or shutil.which("c++") or shutil.which("g++")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    if not CXX:
        pytest.skip("no C++ compiler")
    exe = str(tmp_path_factory.mktemp("conv_patches") / "conv_patches")
    subprocess.run([CXX, "-std=c++17", "-O1", "-I", _paths.cuda_source_dir(),
                    os.path.join(HERE, "native", "conv_patches.cpp"), "-o", exe], check=True)
    return exe


def im2col(shape, ks, strides, pads, dil, outs):
    """A (m, k) for x[i] = i + 1 of `shape` (b, d, h, w, c): 0 in the padding."""
    b, d, h, w, c = shape
    x = np.arange(1, b * d * h * w * c + 1, dtype=np.float64).reshape(shape)
    xp = np.pad(x, [(0, 0)] + [(p, o * s + (k - 1) * dl)  # enough zeros after, too
                               for p, o, s, k, dl in zip(pads, outs, strides, ks, dil)] + [(0, 0)])
    od, oh, ow = outs
    cols = []
    for kd in range(ks[0]):
        for kh in range(ks[1]):
            for kw in range(ks[2]):
                i, j, l = kd * dil[0], kh * dil[1], kw * dil[2]
                sd, sh, sw = strides
                cols.append(xp[:, i:i + od * sd:sd, j:j + oh * sh:sh, l:l + ow * sw:sw, :])
    return np.stack(cols, axis=4).reshape(b * od * oh * ow, -1)


# (b, (d, h, w), c, taps, strides, leading pads, dilations, outputs)
CASES = [
    (1, (1, 1, 1), 1, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), (1, 1, 1)),
    (2, (1, 7, 9), 3, (1, 3, 3), (1, 1, 1), (0, 1, 1), (1, 1, 1), (1, 7, 9)),
    (3, (1, 11, 10), 8, (1, 3, 2), (1, 2, 3), (0, 0, 0), (1, 1, 1), (1, 5, 3)),
    (2, (1, 12, 13), 4, (1, 3, 3), (1, 1, 1), (0, 2, 3), (1, 2, 3), (1, 12, 13)),
    (1, (1, 1, 50), 6, (1, 1, 5), (1, 1, 1), (0, 0, 8), (1, 1, 2), (1, 1, 50)),
    (2, (5, 6, 7), 4, (2, 3, 2), (1, 2, 1), (0, 1, 0), (1, 1, 1), (5, 3, 7)),
    (3, (1, 9, 9), 5, (1, 4, 4), (1, 2, 2), (0, 1, 2), (1, 1, 1), (1, 4, 4)),
    (2, (1, 17, 19), 12, (1, 5, 5), (1, 1, 1), (0, 2, 2), (1, 1, 1), (1, 17, 19)),
    # k not a whole number of tiles, where the taps past k would land inside the input
    (2, (4, 5, 6), 3, (2, 3, 2), (1, 1, 2), (1, 0, 1), (1, 1, 1), (4, 3, 3)),
    (1, (3, 4, 5), 4, (1, 1, 3), (1, 1, 1), (0, 0, 1), (1, 1, 1), (3, 4, 5)),
]


@pytest.mark.parametrize("tile", [0, 1], ids=["128x16", "64x8"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, (c[0],) + c[1] + (c[2],))))
def test_patch_tiles_are_im2col(harness, tile, case):
    b, spatial, c, ks, strides, pads, dil, outs = case
    geo = [b, *spatial, c, *outs, *ks, *strides, *pads, *dil]
    p = subprocess.run([harness, str(tile)] + [str(v) for v in geo], stdout=subprocess.PIPE)
    assert p.returncode != 2, "tile elements not written exactly once"
    assert p.returncode != 3, "tile elements past m or k not zero"
    assert p.returncode == 0
    want = im2col((b, *spatial, c), ks, strides, pads, dil, outs)
    got = np.frombuffer(p.stdout, np.float32).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
