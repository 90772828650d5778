"""Benchmark: the first geometry call of a fresh process, with an empty, a warm and a prebuilt kernel cache.

Each case runs one participant's geometry in a new Python process (imports included): the conditioning maps of
fsaverage5's two hemispheres on a demo-sized grid (80 x 96 x 80 @ 2 mm) and both hemispheres' thickness. Cases:

* ``pip-empty`` / ``pip-warm``: a writable install whose kernel cache is empty, then the same cache again (the
  cache folder is a fresh ``NUMBA_CACHE_DIR``: the same code path as the package's ``__pycache__``);
* ``pip-installed``: a fresh empty cache filled by ``python -m cor2vox_bids.geometry.warmup`` (the last step of
  ``make install``; not timed), then the first process;
* ``ro-prebuilt`` / ``ro-prebuilt-again``: the package folder read-only (a copy on a read-only bind mount, as in a
  container), ``NUMBA_CACHE_DIR`` a read-only cache compiled beforehand by ``python -m
  cor2vox_bids.geometry.warmup`` (what the Dockerfile and Singularity.def do), an empty ``XDG_CACHE_HOME``;
  the first process copies the cache there, the second finds it;
* ``ro-none``: the package folder read-only, no prebuilt cache (compiles into ``XDG_CACHE_HOME``).

Read-only folders are made with ``mount --bind`` + ``remount,ro`` when run as root, else with ``chmod -R a-w``.
Prints wall and CPU seconds (the child process, threads summed: steadier on a busy machine) per case and the
ratios to ``pip-warm``. Usage: ``python benchmarks/bench_first_call.py
[--cases pip-empty,pip-warm,pip-installed,ro-prebuilt,ro-prebuilt-again,ro-none] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORK = r"""
import time
t0 = time.perf_counter()
import numpy as np
from cor2vox_bids.demodata import fsaverage5_dir
from cor2vox_bids.geometry import ModelGrid, conditioning_maps, cortical_thickness, load_freesurfer_hemisphere
hemis = [load_freesurfer_hemisphere(fsaverage5_dir(), h) for h in "LR"]
grid = ModelGrid.around(np.concatenate([h.pial.vertices for h in hemis]), (80, 96, 80), 2.0)
conditioning_maps(hemis, grid)
for h in hemis:
    cortical_thickness(h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces)
import cor2vox_bids.geometry._cache as c
print("inside", round(time.perf_counter() - t0, 2), c.CACHE_DIR)
"""


@contextmanager
def read_only(path: Path):
    """``path`` read-only for the duration (bind mount as root, else permission bits)."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)


def run(env: dict, pythonpath: Path | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the child process, its last line)."""
    e = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    e.update(env)
    if pythonpath is not None:
        e["PYTHONPATH"] = str(pythonpath)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WORK], env=e, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="pip-empty,pip-warm,pip-installed,ro-prebuilt,ro-prebuilt-again,ro-none")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    cases = args.cases.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pip_cache = tmp / "pip-cache"
        pip_cache.mkdir()
        # a copy of the package on its own (read-only) folder, first on the path
        pkg = tmp / "pkg"
        shutil.copytree(ROOT / "cor2vox_bids", pkg / "cor2vox_bids",
                        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        prebuilt = tmp / "prebuilt"
        prebuilt.mkdir()
        for case in cases:
            if case in ("pip-empty", "pip-warm"):
                wall, cpu, info = run({"NUMBA_CACHE_DIR": str(pip_cache)}, pkg)
            elif case == "pip-installed":
                installed = tmp / "installed-cache"
                installed.mkdir()
                subprocess.run([sys.executable, "-m", "cor2vox_bids.geometry.warmup"], check=True, capture_output=True,
                               env={**os.environ, "NUMBA_CACHE_DIR": str(installed), "PYTHONPATH": str(pkg)}, cwd=tmp)
                wall, cpu, info = run({"NUMBA_CACHE_DIR": str(installed)}, pkg)
            elif case in ("ro-prebuilt", "ro-prebuilt-again"):
                if not any(prebuilt.iterdir()):  # the image build step
                    subprocess.run([sys.executable, "-m", "cor2vox_bids.geometry.warmup"], check=True,
                                   env={**os.environ, "NUMBA_CACHE_DIR": str(prebuilt), "PYTHONPATH": str(pkg)},
                                   cwd=tmp)
                xdg = tmp / "xdg-prebuilt"
                xdg.mkdir(exist_ok=True)
                with read_only(pkg), read_only(prebuilt):
                    wall, cpu, info = run({"NUMBA_CACHE_DIR": str(prebuilt), "XDG_CACHE_HOME": str(xdg)}, pkg)
            elif case == "ro-none":
                xdg = tmp / "xdg-none"
                xdg.mkdir()
                with read_only(pkg):
                    wall, cpu, info = run({"XDG_CACHE_HOME": str(xdg), "HOME": str(xdg)}, pkg)
            else:
                raise SystemExit(f"unknown case {case}")
            results[case] = (wall, cpu)
            print(f"{case:<18} {wall:7.1f} s wall {cpu:7.1f} s cpu   ({info.replace(str(tmp), '<tmp>')})", flush=True)
    if "pip-warm" in results:
        w, c = results["pip-warm"]
        print("\nratio to pip-warm (wall / cpu): "
              + ", ".join(f"{k} {v[0] / w:.2f} / {v[1] / c:.2f}" for k, v in results.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in results.items()},
                                              indent=2) + "\n")


if __name__ == "__main__":
    main()
