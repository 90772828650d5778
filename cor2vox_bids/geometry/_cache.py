"""Where the compiled (numba) kernels are cached; set up once, before any kernel is defined (internal).

numba checks a cached kernel against the source file that defines it, not against the files of the kernels it
calls, so an edit of ``_kernels.py`` alone would leave a stale ``_regions.py`` kernel in a cache. The kernels are
therefore cached in a folder named after a hash of every kernel source file (``numba-<hash>``) under a base
folder, the first of:

1. ``$NUMBA_CACHE_DIR`` when it is set and writable;
2. the package's own ``__pycache__`` when it is writable (a normal pip or editable install);
3. ``$XDG_CACHE_HOME/cor2vox-bids`` (default ``~/.cache/cor2vox-bids``), then ``<tmp>/cor2vox-bids-<uid>``.

numba ignores a cache folder it cannot write to, so a read-only ``$NUMBA_CACHE_DIR`` (a container image that
compiled its kernels at build time, ``python -m cor2vox_bids.geometry.warmup``) is copied once into the first
writable folder of 2-3; a process then loads the kernels instead of compiling them (about 25 s).
The setting applies to this package's kernels only (``kernel_cache``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numba

KERNEL_SOURCES = ("_kernels.py", "_regions.py")
_HERE = Path(__file__).resolve().parent


def kernel_key() -> str:
    """Hash of the kernel sources and the numba version (names the cache folder)."""
    h = hashlib.sha256(numba.__version__.encode())
    for name in KERNEL_SOURCES:
        h.update((_HERE / name).read_bytes())
    return h.hexdigest()[:16]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _user_bases() -> list[Path]:
    xdg = os.environ.get("XDG_CACHE_HOME")
    home = Path(xdg) if xdg else Path.home() / ".cache"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return [home / "cor2vox-bids", Path(tempfile.gettempdir()) / f"cor2vox-bids-{uid}"]


def seed(source: Path, target: Path) -> int:
    """Copy the cache files of ``source`` that ``target`` lacks or has older (each written under a temporary
    name and renamed, so concurrent processes never read half a file); returns how many were copied."""
    copied = 0
    for src in source.rglob("*"):
        if not src.is_file():
            continue
        dst = target / src.relative_to(source)
        try:
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".seed-")
            os.close(fd)
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
            copied += 1
        except OSError:
            continue
    return copied


def choose() -> Path | None:
    """The cache folder ``<base>/numba-<kernel_key()>`` (see the module docstring), seeded from a read-only
    ``$NUMBA_CACHE_DIR``; None when nothing is writable (the kernels are then compiled in every process)."""
    folder = f"numba-{kernel_key()}"
    requested = os.environ.get("NUMBA_CACHE_DIR")
    prebuilt = None
    bases = [_HERE / "__pycache__"] + _user_bases()
    if requested:
        if _writable(Path(requested)):
            bases = [Path(requested)]
        else:
            prebuilt = Path(requested) / folder
    for base in bases:
        if _writable(base / folder):
            cache = base / folder
            break
    else:
        return None
    if prebuilt is not None and prebuilt.is_dir():
        seed(prebuilt, cache)
    return cache


@contextmanager
def kernel_cache():
    """Decorate the kernels inside this block: numba fixes a function's cache folder when it is decorated, so
    the setting is restored afterwards and other numba users in the process keep their own."""
    global CACHE_DIR
    CACHE_DIR = choose()
    before = numba.config.CACHE_DIR
    if CACHE_DIR is not None:
        numba.config.CACHE_DIR = str(CACHE_DIR)
    try:
        yield CACHE_DIR
    finally:
        numba.config.CACHE_DIR = before


CACHE_DIR: Path | None = None  # where the kernels are cached (set by kernel_cache)
