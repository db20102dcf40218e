"""Template hygiene: generated kernels name buffer pointers r<slot> and w<slot>
(lowering/rules/common.py: Pointers), renamed r_<i> and w_<i> where kernels share a definition
(lowering/render.py: _share), so a template's own locals must never take such a name; a
reduction's `float r16[16]` shadowed buffer 16's pointer and summed garbage whenever the
reduced buffer was slot 16 (found by the fuzzer, tests/graph_fuzz.py, seed 10786)."""
import os
import re

import numpy as np
import pytest

import kcomp
import kcomp.backend as K

TEMPLATES = os.path.join(os.path.dirname(kcomp.__file__), "templates")
FILES = sorted(os.path.join(d, f) for d, _, fs in os.walk(TEMPLATES) for f in fs
               if f.endswith(".j2"))


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, TEMPLATES) for f in FILES])
def test_no_template_local_looks_like_a_buffer_pointer(path):
    text = open(path).read()
    code = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", text, flags=re.S)  # C++ only
    code = re.sub(r"//[^\n]*", " ", code)
    clashes = sorted(set(re.findall(r"\b[rw]_?\d+\b", code)))
    assert not clashes, f"{path}: {clashes} look like buffer pointers r<slot>/w<slot>"


def test_a_reduction_of_buffer_16():
    """The shadowing case itself: the softmax's result is buffer 16 (15 inputs, one output),
    reduced over rows of 16 by the 16-rows-at-a-time path."""
    xs = [K.placeholder((32, 16)) for _ in range(15)]
    f = K.function(xs, [K.max(K.softmax(xs[0]), axis=1)])
    assert "reads p16" in f.explain().split("-- kernel plan --")[1].split("[reduce]")[1]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((32, 16)).astype(np.float32)
    e = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(f([a] * 15)[0], (e / e.sum(1, keepdims=True)).max(1), rtol=1e-5)
