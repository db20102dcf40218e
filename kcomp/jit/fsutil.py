"""Small filesystem helpers with the guarantees the cache relies on."""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile


class CacheError(RuntimeError):
    pass


def private_dir(path: str) -> str:
    """Create (0700) or check a directory that only this user may write to."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise CacheError(f"kcomp cache directory {path} belongs to another user (uid {st.st_uid}); "
                         f"set KCOMP_CACHE_DIR to a directory of your own")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(f"kcomp cache directory {path} is writable by other users "
                         f"(mode {oct(st.st_mode & 0o777)}): compiled code loaded from it could "
                         f"be replaced. Run chmod 700 {path}, or set KCOMP_CACHE_DIR")
    return path


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def file_sha256(path: str) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
