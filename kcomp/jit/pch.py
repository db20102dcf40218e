"""kcomp's precompiled header: csrc/include/kcomp/prelude.h, which every generated C++ source
includes first, compiled once per toolchain into the cache. Parsing those headers (immintrin.h
above all) was half of a small function's build; GCC loads the precompiled form in a fraction
of that. GCC only (it finds prelude.h.gch beside an include path's prelude.h by itself).

A build that finds none starts one in the background once it is done (so that the two do not
compete for the cores); later builds put its directory first on the include path. GCC parses
the header itself where the file does not match the flags, but fails on a truncated one: it is
written under a temporary name and renamed, and a build that fails reading it drops it and
builds again without (ninja_build.build). A toolchain that cannot precompile it leaves a
`.failed` marker and is not asked again. KCOMP_PCH=0 turns it off."""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from typing import Optional

from .. import config
from .toolchain import Toolchain

HEADER = "kcomp/prelude.h"
STALE_SECONDS = 300  # a marker this old belongs to a build that died
KEEP = 3  # precompiled headers kept (about 30 MB each): other toolchains', older kcomp headers
_running: list = []  # builds this process started (polled, so that none is left a zombie)


def _root(cache_root: str) -> str:
    return os.path.join(cache_root, "pch")


def _dir(tc: Toolchain) -> str:
    """The toolchain's include directory for the precompiled header: <cache>/pch/<id>."""
    from .cache import default_cache
    ident = hashlib.sha256(json.dumps(tc.identity(), sort_keys=True).encode()).hexdigest()
    return os.path.join(_root(default_cache().root), ident[:32])


def _path(tc: Toolchain) -> str:
    return os.path.join(_dir(tc), HEADER + ".gch")


def building(cache_root: str) -> bool:
    """Whether a precompiled header for the cache at cache_root is being built right now."""
    return bool(glob.glob(os.path.join(_root(cache_root), "*", HEADER + ".gch.building")))


def _wanted(tc: Toolchain) -> bool:
    return config.pch() and tc.compiler.startswith("GNU")


def include_dir(tc: Toolchain) -> Optional[str]:
    """The directory to put first on the include path where the precompiled header is ready,
    else None."""
    return _dir(tc) if _wanted(tc) and os.path.exists(_path(tc)) else None


def prepare(tc: Toolchain) -> None:
    """Start building the precompiled header in the background unless it exists or another
    process is building it."""
    gch = _path(tc) if _wanted(tc) else None
    if gch and not os.path.exists(gch) and not os.path.exists(gch + ".failed"):
        _start(tc, gch)


def discard(tc: Toolchain) -> None:
    """Remove the precompiled header (GCC could not read it)."""
    try:
        os.unlink(_path(tc))
    except OSError:
        pass


def _prune(keep: str) -> None:
    """Remove all but the KEEP - 1 most recently built precompiled headers besides `keep` (a
    toolchain's directory)."""
    def built(d: str) -> float:
        try:
            return os.stat(d).st_mtime
        except OSError:  # (another process removed it)
            return 0.0
    root = os.path.dirname(keep)
    dirs = [os.path.join(root, d) for d in os.listdir(root)]
    dirs = [d for d in dirs if os.path.isdir(d) and d != keep]
    for d in sorted(dirs, key=built, reverse=True)[KEEP - 1:]:
        shutil.rmtree(d, ignore_errors=True)


def _start(tc: Toolchain, gch: str) -> None:
    os.makedirs(os.path.dirname(gch), mode=0o700, exist_ok=True)
    marker = gch + ".building"
    try:  # one build at a time across processes
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            if time.time() - os.stat(marker).st_mtime < STALE_SECONDS:
                return
            os.unlink(marker)
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            return
    os.close(fd)
    _prune(keep=_dir(tc))
    tmp = f"{gch}.tmp-{os.getpid()}"
    compile_cmd = [tc.cxx, *tc.flags, f"-I{tc.include_dir}", "-x", "c++-header",
                   os.path.join(tc.include_dir, HEADER), "-o", tmp]
    q = shlex.quote
    script = (f"if {' '.join(map(q, compile_cmd))}; then mv -f {q(tmp)} {q(gch)}; "
              f"else touch {q(gch + '.failed')}; fi; rm -f {q(tmp)} {q(marker)}")
    _running[:] = [p for p in _running if p.poll() is None]
    try:  # (its own session: it finishes even if this process exits first)
        _running.append(subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True))
    except OSError:
        os.unlink(marker)
