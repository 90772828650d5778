"""cor2vox-train on a live (one-node) SLURM cluster: 2 srun tasks, each a torchrun agent (as on two nodes),
rendezvous over c10d, gloo on the CPU — launched by the launch lines of ``examples/train_slurm.sbatch``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slurm_helpers import timed

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900, func_only=True)]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_slurm.sbatch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_script(folder: Path) -> Path:
    """The example with its resource lines replaced by what the one-node CPU test cluster has."""
    lines = [line for line in EXAMPLE.read_text().splitlines() if not line.startswith("#SBATCH")]
    head = ["#!/bin/bash", "#SBATCH --job-name=c2v-train-test", "#SBATCH --nodes=1", "#SBATCH --ntasks=2",
            "#SBATCH --cpus-per-task=1", "#SBATCH --time=10", f"#SBATCH --output={folder}/job-%j.out"]
    script = folder / "train.sbatch"
    script.write_text("\n".join(head + lines[1:]) + "\n")
    return script


def _wait(job: str, timeout: float = 600) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        res = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
        if not res.stdout.strip():
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", job], timeout=30)
        pytest.fail(f"training job {job} did not finish within {timeout} s")
    res = subprocess.run(["sacct", "-c", "-n", "-P", "-j", job, "-o", "JobID,State,ExitCode"], capture_output=True,
                         text=True, timeout=30)
    return res.stdout


def test_srun_torchrun_two_tasks_train_a_tiny_model(slurm_cluster, slurm_demo, tiny_model, tmp_path):
    script = _job_script(tmp_path)
    model, work = tmp_path / "model", tmp_path / "work"
    env_args = [f"--export=ALL,PYTHON={sys.executable},NPROC_PER_NODE=1,RDZV_PORT={_free_port()},OMP_NUM_THREADS=1"]
    with timed("srun torchrun training (2 tasks)"):
        sub = subprocess.run(["sbatch", "--parsable", *env_args, str(script), str(slurm_demo["bids"]), str(model),
                              str(work), "--init-from", str(tiny_model), "--steps", "3", "--device", "cpu",
                              "--precision", "fp32", "--dist-timeout", "300", "--nthreads", "1"],
                             capture_output=True, text=True, timeout=60)
        assert sub.returncode == 0, sub.stderr
        job = sub.stdout.strip().split(";")[0]
        acct = _wait(job)
    out = (tmp_path / f"job-{job}.out").read_text()
    assert re.search(rf"^{job}\|COMPLETED\|0:0", acct, re.M), acct + out[-4000:]
    assert "2 processes (gloo) × batch 1 = global batch 2" in out, out[-4000:]
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2 and cfg["training"]["steps"] == 3
    assert cfg["training"]["init_from"]["name"] == "tiny-test"
    rows = (work / "train" / "train_log.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["1", "2", "3"]  # rank 0 alone logged
    # each participant's conditioning cache was built once, by one of the two ranks
    cached = re.findall(r"cached (sub-\w+)", out)
    assert sorted(cached) == sorted(set(cached)) and len(cached) == 2, out[-4000:]
