"""Training steps per second: N processes (torchrun, gloo/NCCL, batch 1 each) vs 1 process (batch N, N threads).

Both sides train the same global batch, so on the CPU this asks whether splitting a step over processes beats
torch's intra-op threads. On GPUs (``--device cuda``) it compares 1 GPU with batch N against N GPUs with batch 1.

    python benchmarks/bench_ddp.py --nproc 2 --grid 64 --steps 12          # CPU
    python benchmarks/bench_ddp.py --nproc 4 --grid 128 --arch paper --device cuda --steps 20

Reported: the median of the per-step rate over the steps after the first two (warm-up), from train_log.tsv.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from cor2vox_bids.diffusion.checkpoint import make_model_config
    from cor2vox_bids.diffusion.distributed import init_distributed, shutdown_distributed
    from cor2vox_bids.diffusion.training import train
    from cor2vox_bids.diffusion.unet import demo_config, paper_config

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (args.grid,) * 3
    arch = paper_config() if args.arch == "paper" else demo_config(image_size=args.grid, base_channels=16)
    cfg = make_model_config(arch, shape, 2.0, name="bench", demo=True)
    rng = np.random.default_rng(0)
    pairs = [(rng.uniform(-1, 1, (5, *shape)).astype(np.float32), rng.uniform(-1, 1, (1, *shape)).astype(np.float32))
             for _ in range(4)]
    _, device = init_distributed(args.device, 600)
    try:
        train(cfg, pairs, [], args.worker, steps=args.steps, batch_size=args.batch, lr=1e-4, seed=0,
              device=device, precision=args.precision, grad_checkpointing=args.grad_checkpointing,
              val_every=10**9, checkpoint_every=10**9, progress=False, log=lambda s: None)
        if device.startswith("cuda"):
            print(f"  rank {os.environ.get('RANK', 0)} ({device}, batch {args.batch}): peak GPU memory "
                  f"{torch.cuda.max_memory_allocated(device) / 1024**3:.1f} GB", flush=True)
    finally:
        shutdown_distributed()


def rate(run: Path) -> float:
    with open(run / "train_log.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return statistics.median(float(r["steps_per_s"]) for r in rows[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--arch", choices=("demo", "paper"), default="demo")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    here = Path(__file__).resolve()
    common = ["--grid", str(args.grid), "--arch", args.arch, "--steps", str(args.steps), "--device", args.device,
              "--precision", args.precision] + (["--grad-checkpointing"] if args.grad_checkpointing else [])
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp, "one"), Path(tmp, "many")
        env1 = {**os.environ, "OMP_NUM_THREADS": str(args.nproc)}
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            env1.pop(k, None)
        subprocess.run([sys.executable, str(here), "--worker", str(one), "--batch", str(args.nproc),
                        "--threads", "0" if args.device != "cpu" else str(args.nproc), *common],
                       env=env1, check=True)
        env_n = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                        str(args.nproc), str(here), "--worker", str(many), "--batch", "1",
                        "--threads", "0" if args.device != "cpu" else "1", *common], env=env_n, check=True)
        r1, rn = rate(one), rate(many)
    what = "thread(s)" if args.device == "cpu" else "device"
    print(f"grid {args.grid}³, {args.arch} UNet, global batch {args.nproc}, {args.device}, precision {args.precision}")
    print(f"  1 process × batch {args.nproc} ({args.nproc} {what}):  {r1:.3f} steps/s")
    print(f"  {args.nproc} processes × batch 1 (DDP):     {rn:.3f} steps/s   ratio {rn / r1:.2f}")


if __name__ == "__main__":
    main()
