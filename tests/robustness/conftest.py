"""Fixtures of the matrix of bad inputs (helpers in robustness_helpers.py).

``matrix_run`` builds one dataset under a non-ASCII folder name with a healthy participant (``sub-01``) and one
participant per broken input (each a symlinked copy of a demo participant with one file damaged), runs the
participant level once as a subprocess (the real console) with ``--steps 1``, and returns the exit code, the
console text and the folders. The per-case tests read that one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `import robustness_helpers`

from robustness_helpers import CASES, add_participant, damage, new_dataset, run_cli  # noqa: E402


@pytest.fixture(scope="session")
def matrix_run(demo_data, tmp_path_factory) -> dict:
    """One participant-level run over a healthy participant and every broken one (see the module docstring)."""
    root = tmp_path_factory.mktemp("matrix") / "dätä ü"  # non-ASCII and a space in every path
    bids = new_dataset(root, demo_data)
    add_participant(bids, demo_data, "01")
    expected = {}
    for label, kind in CASES.items():
        p = add_participant(bids, demo_data, label, fs_from="02" if kind == "swap" else "01")
        path, phrase = damage(kind, p, demo_data)
        expected[label] = (path, phrase)
    out = root / "out"
    code, console = run_cli([str(bids), str(out), "participant", "--skip-bids-validation", "--steps", "1",
                             "-w", str(root / "work"), "--nprocs", "2", "--omp-nthreads", "1"])
    return {"code": code, "console": console, "bids": bids, "out": out, "expected": expected, "root": root}


@pytest.fixture(scope="session")
def small_dataset(demo_data, tmp_path_factory) -> Path:
    """Two healthy participants (symlinks): the dataset of the whole-run cases, which stop before any work."""
    bids = new_dataset(tmp_path_factory.mktemp("small"), demo_data)
    add_participant(bids, demo_data, "01")
    add_participant(bids, demo_data, "02", t1_from="02", fs_from="02")
    return bids
