"""A minimal tensor file format, for programs that feed an artifact from disk (examples/).

    "KCT1", uint32 count, then per tensor: int32 dtype (kc_dtype), int32 rank,
    int64 dims[rank], the raw row-major data. All little-endian.
"""
from __future__ import annotations

import struct
from typing import List

import numpy as np

from ..ir.dtypes import BY_NAME, as_dtype

_BY_CODE = {d.code: d for d in BY_NAME.values()}


def save(path: str, arrays) -> None:
    with open(path, "wb") as f:
        f.write(b"KCT1" + struct.pack("<I", len(arrays)))
        for a in arrays:
            a = np.ascontiguousarray(a)
            f.write(struct.pack("<ii", as_dtype(a.dtype).code, a.ndim))
            f.write(struct.pack(f"<{a.ndim}q", *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def load(path: str) -> List[np.ndarray]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"KCT1":
        raise ValueError(f"{path} is not a kcomp tensor file")
    (count,), pos = struct.unpack_from("<I", data, 4), 8
    out = []
    for _ in range(count):
        code, rank = struct.unpack_from("<ii", data, pos)
        pos += 8
        dims = struct.unpack_from(f"<{rank}q", data, pos)
        pos += 8 * rank
        dt = _BY_CODE[code].np.newbyteorder("<")
        n = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        out.append(np.frombuffer(data, dt, count=n // dt.itemsize, offset=pos).reshape(dims)
                   .astype(dt.newbyteorder("=")))
        pos += n
    return out
