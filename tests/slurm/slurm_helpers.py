"""Helpers of the SLURM tests: run cor2vox-bids, compare images, count jobs, time blocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

TIMINGS: dict[str, float] = {}


def cor2vox(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cor2vox-bids`` in a child process (as users do); output captured."""
    cmd = [sys.executable, "-m", "cor2vox_bids.cli.run", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy())


def common_args(model: Path) -> list[str]:
    # One process and one thread everywhere: the same arithmetic in every run, so images compare bytewise.
    return ["--skip-bids-validation", "--model", str(model), "--nprocs", "1", "--omp-nthreads", "1",
            "--random-seed", "7", "--steps", "3"]


def synth_arrays(out: Path) -> dict[str, bytes]:
    """{relative path: raw voxel bytes} of every synthetic image under ``out``."""
    found = {}
    for path in sorted(out.glob("sub-*/anat/*desc-synth*_T1w.nii.gz")):
        img = nib.load(str(path))
        found[str(path.relative_to(out))] = np.ascontiguousarray(np.asarray(img.dataobj)).tobytes() + \
            np.asarray(img.affine).tobytes()
    return found


def completed_jobs() -> list[tuple[str, str, str]]:
    """(job id, name, state) of every finished job the cluster logged (``sacct -c``: no accounting daemon)."""
    res = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobID,JobName,State"], capture_output=True,
                         text=True, timeout=30)
    rows = []
    for line in res.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 3:
            rows.append((parts[0], parts[1], parts[2]))
    return rows


def timed(label: str):
    """Context manager recording the wall time of a block in TIMINGS (printed at the end of the session)."""
    class _T:
        def __enter__(self):
            self.t = time.monotonic()

        def __exit__(self, *exc):
            TIMINGS[label] = time.monotonic() - self.t
            return False

    return _T()
