"""Data-parallel training on the CPU (gloo, tiny UNet, a few steps): equivalence with one process, resume with
another world size, rank-0-only outputs, a failing rank ending the job, caches built once."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from cor2vox_bids.diffusion.distributed import build_once, rank_indices, stream_index
from cor2vox_bids.diffusion.training import _resume_differences

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _torchrun(nproc: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(WORKER), *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _single(out: Path, steps: int, batch: int) -> None:
    """The single-process run, in this process (no process group): the same settings as the workers'."""
    sys.path.insert(0, str(WORKER.parent))
    from ddp_worker import run_train

    run_train(str(out), steps, batch)


def _ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-4000:]


def _weights(run: Path, prefix: str) -> torch.Tensor:
    state = load_file(run / "state" / "state.safetensors")
    return torch.cat([state[k].flatten().double() for k in sorted(state) if k.startswith(prefix)])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _losses(run: Path) -> list[float]:
    rows = (run / "train_log.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[1]) for r in rows]


def test_stream_does_not_depend_on_the_split():
    """Rank r's slice of every global batch is the same samples, whatever the split of the global batch."""
    for start in (0, 4, 10):
        whole = rank_indices(3, 5, start, 0, 4)
        halves = rank_indices(3, 5, start, 0, 2) + rank_indices(3, 5, start, 1, 2)
        quarters = sum((rank_indices(3, 5, start, r, 1) for r in range(4)), [])
        assert whole == halves == quarters
    epoch = [stream_index(3, 5, p) for p in range(5)]
    assert sorted(epoch) == list(range(5)) and epoch != [stream_index(3, 5, p) for p in range(5, 10)]


def test_two_processes_equal_one_with_the_global_batch(tmp_path):
    """2 processes × batch 1 == 1 process × batch 2 (same seed, 5 steps, plateau scheduler and EMA active):
    weights, EMA and logged losses agree within 1e-4 relative."""
    _single(tmp_path / "one", 5, 2)
    two = _torchrun(2, "train", str(tmp_path / "two"), "5", "1")
    _ok(two)
    for prefix in ("model.", "ema."):
        rel = _rel(_weights(tmp_path / "two", prefix), _weights(tmp_path / "one", prefix))
        assert rel < 1e-4, (prefix, rel)
    la, lb = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(la) == len(lb) == 5  # one row per step: only rank 0 logged
    assert max(abs(a - b) / abs(b) for a, b in zip(la, lb)) < 1e-4
    state = json.loads((tmp_path / "two" / "state" / "state.json").read_text())
    assert state["args"]["world_size"] == 2 and state["args"]["batch_size"] == 2
    # the weights moved (the comparison is not between two untouched initialisations)
    assert _rel(_weights(tmp_path / "one", "model."), _weights(tmp_path / "one", "ema.")) > 1e-4


def test_resume_with_another_world_size(tmp_path):
    """A run started with 2 processes × batch 1 and resumed by 1 process × batch 2 ends where an uninterrupted
    single-process run ends (the rules that refuse other samples per step: test_resume_rules)."""
    _single(tmp_path / "full", 6, 2)
    _ok(_torchrun(2, "train", str(tmp_path / "part"), "3", "1"))
    _single(tmp_path / "part", 6, 2)
    for prefix in ("model.", "ema."):
        rel = _rel(_weights(tmp_path / "part", prefix), _weights(tmp_path / "full", prefix))
        assert rel < 1e-4, (prefix, rel)
    assert json.loads((tmp_path / "part" / "state" / "state.json").read_text())["step"] == 6


def test_diverging_ranks_are_caught(tmp_path):
    """The cross-rank fingerprint check before each checkpoint can fail: rank 1 given another learning rate."""
    proc = _torchrun(2, "train", str(tmp_path / "bad"), "3", "1", "lr_rank1=0.01")
    assert proc.returncode != 0 and "ranks diverged at step 3" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "bad" / "state").exists()


def test_resume_rules():
    saved = {"architecture": {"image_size": 8}, "seed": 1, "batch_size": 2, "accumulation": 2, "n_train": 3,
             "schedule": {}, "precision": "fp32"}  # a state written before world_size/upsample_mode existed
    from cor2vox_bids.diffusion.unet import UNetConfig

    now = {**saved, "architecture": UNetConfig(image_size=8).to_dict(), "batch_size": 4, "accumulation": 1,
           "world_size": 4, "batch_per_process": 1}
    assert _resume_differences(saved, now) == []
    assert _resume_differences(saved, {**now, "batch_size": 2}) != []
    assert _resume_differences(saved, {**now, "seed": 2}) != []
    assert _resume_differences(saved, {**now, "architecture": UNetConfig(image_size=8,
                                                                         upsample_mode="trilinear").to_dict()})


def _cli_args(tmp_path: Path, out: str, *extra: str) -> list[str]:
    return ["cli", str(tmp_path / "bids"), str(tmp_path / out), "-w", str(tmp_path / f"{out}_work"),
            "--architecture", "demo", "--base-channels", "4", "--grid-shape", "8", "8", "8", "--lr", "1e-3",
            "--device", "cpu", "--precision", "fp32", "--nthreads", "1", *extra]


def test_cli_under_torchrun_rank0_writes(tmp_path):
    """cor2vox-train under torchrun: ranks other than 0 raise on any write (see ddp_worker), so a clean exit
    means rank 0 alone wrote the model, log, figures and state; the log states the global batch."""
    proc = _torchrun(2, *_cli_args(tmp_path, "model", "--steps", "4", "--val-every", "2", "--batch-size", "2"))
    _ok(proc)
    assert "2 processes (gloo) × batch 2 = global batch 4" in proc.stderr
    assert "[rank 0/2]" in proc.stderr and "[rank 1/2] cor2vox_bids.train INFO: training on" not in proc.stderr
    out = tmp_path / "model"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2 and cfg["training"]["batch_size"] == 4
    assert len(_losses(tmp_path / "model_work" / "train")) == 4
    assert (tmp_path / "model_work" / "train" / "val" / "step-000002.png").is_file()
    assert json.loads((out / "training_run.json").read_text())["world_size"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failing_rank_ends_the_job(tmp_path):
    """Two processes started without torchrun's agent (as srun would); rank 1 is killed (SIGKILL, as by the
    OOM killer) during training: rank 0 stops within seconds with a clear message and exit 75, not a hang."""
    port = _free_port()
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    args = _cli_args(tmp_path, "model", "--steps", "100000", "--val-every", "100000", "--dist-timeout", "30")
    procs = []
    for rank in (0, 1):
        env = {**ENV, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "DDP_PID_DIR": str(pid_dir)}
        procs.append(subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        log = tmp_path / "model_work" / "train" / "train_log.tsv"
        deadline = time.time() + 180
        while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) > 3):
            assert procs[0].poll() is None, procs[0].communicate()[1][-3000:]
            time.sleep(0.2)
        assert log.is_file(), "training did not start"
        os.kill(int((pid_dir / "rank-1.pid").read_text()), signal.SIGKILL)
        t_kill = time.time()
        _, err = procs[0].communicate(timeout=60)
        waited = time.time() - t_kill
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == 75, err[-3000:]
    assert "lost contact with the other processes" in err and "Traceback" not in err
    assert waited < 45, waited


def _build_worker(targets: list[str], rank: int, world: int, counter: str) -> None:
    def make(path: Path) -> None:
        with open(counter, "a") as f:
            f.write(f"{path.name}\n")
        time.sleep(0.05)
        tmp = path.with_suffix(".part")
        tmp.write_text("x")
        tmp.replace(path)

    build_once([(Path(t), make) for t in targets], rank, world)


def test_caches_are_built_once_across_processes(tmp_path):
    """Three processes share eight cache files: each file is built exactly once and all exist afterwards."""
    targets = [str(tmp_path / f"sub-{i}.npz") for i in range(8)]
    counter = str(tmp_path / "built.txt")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_build_worker, args=(targets, r, 3, counter)) for r in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    built = Path(counter).read_text().split()
    assert sorted(built) == sorted(Path(t).name for t in targets)
    assert all(Path(t).is_file() for t in targets)
