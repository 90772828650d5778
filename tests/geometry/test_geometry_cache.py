"""Where the compiled kernels are cached: a folder per kernel-source hash, a writable place chosen automatically,
a read-only prebuilt cache (a container image's) copied once and then loaded instead of compiling."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cor2vox_bids.geometry import _cache
from cor2vox_bids.geometry.warmup import warm_up


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _read_only(monkeypatch, *roots):
    """Make ``_writable`` answer False below ``roots`` (tests run as root, where permission bits do not hold)."""
    real = _cache._writable

    def writable(path):
        return not any(Path(path).is_relative_to(r) for r in roots) and real(path)

    monkeypatch.setattr(_cache, "_writable", writable)


def test_key_follows_every_kernel_source(monkeypatch, tmp_path):
    for name in _cache.KERNEL_SOURCES:
        shutil.copy(Path(_cache.__file__).parent / name, tmp_path / name)
    monkeypatch.setattr(_cache, "_HERE", tmp_path)
    key = _cache.kernel_key()
    assert key == _cache.kernel_key() and len(key) == 16
    for name in _cache.KERNEL_SOURCES:  # an edit of a called kernel's file alone must change the folder too
        path = tmp_path / name
        path.write_text(path.read_text() + "\n# edited\n")
        assert _cache.kernel_key() != key
        key = _cache.kernel_key()


def test_writable_numba_cache_dir_is_used(no_env, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(no_env / "mine"))
    assert _cache.choose() == no_env / "mine" / f"numba-{_cache.kernel_key()}"


def test_read_only_package_falls_back_to_the_user_cache(no_env, monkeypatch):
    _read_only(monkeypatch, Path(_cache.__file__).parent)
    assert _cache.choose() == no_env / "xdg" / "cor2vox-bids" / f"numba-{_cache.kernel_key()}"
    _read_only(monkeypatch, Path(_cache.__file__).parent, no_env / "xdg")
    assert _cache.choose().parent.name.startswith("cor2vox-bids-")  # then the temporary folder


def test_read_only_prebuilt_cache_is_copied_once(no_env, monkeypatch):
    folder = f"numba-{_cache.kernel_key()}"
    prebuilt = no_env / "image-cache"
    (prebuilt / folder / "geometry_x").mkdir(parents=True)
    (prebuilt / folder / "geometry_x" / "_regions.band_sqdist-1.py311.nbi").write_bytes(b"index")
    (prebuilt / folder / "geometry_x" / "_regions.band_sqdist-1.py311.1.nbc").write_bytes(b"code")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(prebuilt))
    _read_only(monkeypatch, Path(_cache.__file__).parent, prebuilt)
    cache = _cache.choose()
    assert cache == no_env / "xdg" / "cor2vox-bids" / folder
    assert (cache / "geometry_x" / "_regions.band_sqdist-1.py311.1.nbc").read_bytes() == b"code"
    assert not list(cache.rglob(".seed-*"))
    # a newer file in the user cache (compiled there later) is kept; a missing one is copied again
    index = cache / "geometry_x" / "_regions.band_sqdist-1.py311.nbi"
    index.write_bytes(b"newer")
    os.utime(index, (index.stat().st_atime, index.stat().st_mtime + 100))
    (cache / "geometry_x" / "_regions.band_sqdist-1.py311.1.nbc").unlink()
    assert _cache.seed(prebuilt / folder, cache) == 1
    assert index.read_bytes() == b"newer"


PROBE = """
import json
from cor2vox_bids.geometry import _cache, _kernels, _regions
from cor2vox_bids.geometry.warmup import warm_up
warm_up()
kernels = [_regions.band_sqdist, _kernels.winding_crossings, _kernels.query_sqdist, _kernels.build_cells]
print(json.dumps({"cache": str(_cache.CACHE_DIR),
                  "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
                  "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels)}))
"""


def test_a_fresh_process_loads_the_copied_cache_instead_of_compiling(tmp_path):
    warm_up()  # this process's cache holds every kernel
    if _cache.CACHE_DIR is None:
        pytest.skip("no writable kernel cache here")
    target = tmp_path / "copied"
    assert _cache.seed(_cache.CACHE_DIR, target / _cache.CACHE_DIR.name) > 0
    env = {**os.environ, "NUMBA_CACHE_DIR": str(target)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["cache"] == str(target / _cache.CACHE_DIR.name)
    assert info["hits"] >= 4 and info["misses"] == 0
