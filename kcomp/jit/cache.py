"""The compile cache: content-addressed, built privately, published atomically, verified on load.

Layout under the root ($KCOMP_CACHE_DIR, else $XDG_CACHE_HOME/kcomp, else ~/.cache/kcomp):

    v1/<key[:2]>/<key>/   lib.so, source.cpp, build.ninja, build.log, meta.json (written last)
    v1/locks/<key>.lock   one flock per key, released by the kernel if its holder dies
    v1/tmp/               private build directories, renamed into place when complete
    v1/quarantine/        entries that failed verification, moved aside
    failed/<key>/         sources and logs of failed builds, for the error message
    toolchains/           probed toolchains

Readers never lock: an entry directory exists only once it is complete, and it is never
modified afterwards. A writer checks, locks, checks again, builds in v1/tmp, and renames.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from .. import config
from .fsutil import CacheError, file_sha256, fsync_dir, private_dir

FORMAT = "kcomp-cache-v1"
LIB = "lib.so"


@dataclass(frozen=True)
class Entry:
    key: str
    path: str
    meta: dict

    @property
    def lib(self) -> str:
        return os.path.join(self.path, LIB)

    @property
    def source(self) -> str:
        return os.path.join(self.path, "source.cpp")


class Cache:
    def __init__(self, root: str):
        self.root = private_dir(os.path.abspath(root))
        self.base = private_dir(os.path.join(self.root, "v1"))
        self.verified: Dict[str, Entry] = {}  # entries verified by this process

    def entry_dir(self, key: str) -> str:
        if len(key) < 16 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"malformed cache key {key!r}")
        return os.path.join(self.base, key[:2], key)

    # ---- reading ---------------------------------------------------------------------------
    def lookup(self, key: str) -> Optional[Entry]:
        """The verified entry for key, or None. A corrupt entry is moved aside."""
        hit = self.verified.get(key)
        if hit is not None:
            return hit
        path = self.entry_dir(key)
        try:
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            self.quarantine(key, "unreadable meta.json")
            return None
        problem = self._verify(path, key, meta)
        if problem:
            self.quarantine(key, problem)
            return None
        entry = Entry(key, path, meta)
        self.verified[key] = entry
        return entry

    @staticmethod
    def _verify(path: str, key: str, meta: dict) -> Optional[str]:
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
            return "meta.json does not describe this key"
        lib = os.path.join(path, LIB)
        try:
            if os.path.getsize(lib) != meta.get("lib_size"):
                return "library size differs from meta.json"
            if file_sha256(lib) != meta.get("lib_sha256"):
                return "library hash differs from meta.json"
        except OSError as e:
            return f"library unreadable: {e}"
        return None

    def quarantine(self, key: str, why: str) -> None:
        """Move a bad entry out of the way (atomically); the next lookup rebuilds it."""
        self.verified.pop(key, None)
        q = private_dir(os.path.join(self.base, "quarantine"))
        dst = os.path.join(q, f"{key}.{os.getpid()}.{time.time_ns()}")
        try:
            os.rename(self.entry_dir(key), dst)
            with open(os.path.join(dst, "WHY"), "w") as f:
                f.write(why + "\n")
        except OSError:
            pass  # someone else moved it first

    # ---- writing ---------------------------------------------------------------------------
    def get_or_build(self, key: str, build: Callable[[str], dict]) -> Entry:
        """The entry for key, building it with build(tmpdir) -> meta fields if missing.
        build() must leave LIB in tmpdir; it runs at most once across processes per key."""
        entry = self.lookup(key)
        if entry is not None:
            return entry
        with self.lock(key):
            entry = self.lookup(key)
            if entry is not None:
                return entry
            tmp_root = private_dir(os.path.join(self.base, "tmp"))
            # holding the lock, any build directory of this key is left by a dead builder
            for stale in os.listdir(tmp_root):
                if stale.startswith(key[:16] + "."):
                    shutil.rmtree(os.path.join(tmp_root, stale), ignore_errors=True)
            work = tempfile.mkdtemp(prefix=f"{key[:16]}.{os.getpid()}.", dir=tmp_root)
            try:
                extra = build(work)
                lib = os.path.join(work, LIB)
                meta = {"format": FORMAT, "key": key, "lib_size": os.path.getsize(lib),
                        "lib_sha256": file_sha256(lib), "created": time.time(), **extra}
                for name in os.listdir(work):
                    with open(os.path.join(work, name), "rb") as f:
                        os.fsync(f.fileno())
                with open(os.path.join(work, "meta.json"), "w") as f:
                    json.dump(meta, f, indent=1, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(work, 0o700)
                final = self.entry_dir(key)
                os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
                try:
                    os.rename(work, final)
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    # a stale complete entry is in the way: the lock says nobody builds it now
                    self.quarantine(key, "replaced by a fresh build")
                    os.rename(work, final)
                fsync_dir(os.path.dirname(final))
            finally:
                if os.path.isdir(work):
                    shutil.rmtree(work, ignore_errors=True)
        entry = self.lookup(key)
        if entry is None:
            raise CacheError(f"cache entry {key} failed verification right after it was built")
        return entry

    def lock(self, key: str) -> "_FileLock":
        locks = private_dir(os.path.join(self.base, "locks"))
        return _FileLock(os.path.join(locks, key + ".lock"), config.lock_timeout())

    # ---- maintenance -----------------------------------------------------------------------
    def entries(self) -> List[Entry]:
        out = []
        for shard in sorted(os.listdir(self.base)):
            d = os.path.join(self.base, shard)
            if len(shard) != 2 or not os.path.isdir(d):
                continue
            for key in sorted(os.listdir(d)):
                try:
                    with open(os.path.join(d, key, "meta.json")) as f:
                        out.append(Entry(key, os.path.join(d, key), json.load(f)))
                except (OSError, ValueError):
                    continue
        return out

    def size_bytes(self) -> int:
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_size
                except OSError:
                    pass
        return total

    def clear(self) -> int:
        """Remove every entry (processes that loaded one keep their mapping). Returns count."""
        n = 0
        for name in os.listdir(self.root):
            p = os.path.join(self.root, name)
            if name == "v1":
                for sub in os.listdir(p):
                    if sub != "locks":  # lock files may be held right now; they are tiny
                        if len(sub) == 2:
                            n += len(os.listdir(os.path.join(p, sub)))
                        shutil.rmtree(os.path.join(p, sub), ignore_errors=True)
            elif os.path.isdir(p):
                shutil.rmtree(p, ignore_errors=True)
        self.verified.clear()
        return n


class _FileLock:
    """An exclusive flock with a timeout; the kernel releases it if the holder dies."""

    def __init__(self, path: str, timeout: float):
        self.path, self.timeout, self.fd = path, timeout, None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise CacheError(f"timed out after {self.timeout:.0f}s waiting for {self.path}"
                                     f": another process is building this function (raise "
                                     f"KCOMP_LOCK_TIMEOUT to wait longer)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


_default: Optional[Cache] = None
_default_lock = threading.Lock()


def default_cache() -> Cache:
    global _default
    root = config.cache_dir()
    with _default_lock:
        if _default is None or _default.root != os.path.abspath(root):
            _default = Cache(root)
        return _default
