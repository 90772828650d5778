"""One process of a data-parallel test run (started by torchrun or by the test with RANK/WORLD_SIZE set).

    python ddp_worker.py train OUT STEPS BATCH [key=value ...]   train() on three tiny synthetic pairs
    python ddp_worker.py cli ARGS...                             cor2vox-train's main() on synthetic pairs

On ranks other than 0 every function that writes an output raises, so a run that succeeds proves that only
rank 0 wrote. Each process writes its pid to ``$DDP_PID_DIR/rank-R.pid`` when that variable is set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from diffusion_helpers import sphere_pair, tiny_config  # noqa: E402

torch.set_num_threads(1)


def pairs(size: int = 8):
    a = sphere_pair(size)
    return [a, tuple(np.flip(x, axis=-1).copy() for x in a), tuple(0.5 * x for x in a),
            tuple(np.flip(x, axis=-2).copy() for x in a)]


def forbid_writes() -> None:
    """Make every writer of the training code raise on this rank."""
    from cor2vox_bids.cli import train as cli_train
    from cor2vox_bids.diffusion import training

    def refuse(name):
        def f(*a, **k):
            raise AssertionError(f"rank {os.environ.get('RANK')} called {name}")
        return f

    for name in ("save_model", "save_training_state", "_plot_val", "_plot_loss", "_Log"):
        setattr(training, name, refuse(name))
    cli_train.shutil.copyfile = refuse("shutil.copyfile")


def run_train(out: str, steps: int, batch: int, device: str = "cpu", **extra):
    """train() on the tiny pairs with the settings every data-parallel test shares."""
    from cor2vox_bids.diffusion.training import train

    args = dict(accumulation=1, lr=1e-3, plateau_patience=1, plateau_factor=0.5, min_lr=1e-4, loss_smoothing=0.0,
                ema_every=1, ema_start=1, ema_decay=0.5, val_every=3, val_samples=1, val_steps=2, seed=3,
                device=device, precision="fp32", progress=False, log=lambda s: None)
    args.update(extra)
    data = pairs()
    return train(tiny_config(8), data, data[:1], out, steps=steps, batch_size=batch, **args)


def main() -> int:
    rank = int(os.environ.get("RANK", "0"))
    if os.environ.get("DDP_PID_DIR"):
        Path(os.environ["DDP_PID_DIR"], f"rank-{rank}.pid").write_text(str(os.getpid()))
    if rank:
        forbid_writes()
    mode = sys.argv[1]
    if mode == "train":
        from cor2vox_bids.diffusion.distributed import init_distributed, shutdown_distributed

        out, steps, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        extra = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[5:])}
        if "lr_rank1" in extra:  # a deliberately broken run: rank 1 steps with another learning rate
            lr1 = extra.pop("lr_rank1")
            if rank == 1:
                extra["lr"] = lr1
        _, device = init_distributed("cpu", timeout_s=60)
        try:
            run_train(out, steps, batch, device=device, **extra)
        finally:
            shutdown_distributed()
        return 0
    from cor2vox_bids.cli import train as cli_train

    def prepare(settings, config, cache):
        size = config["grid"]["shape"][0]
        return {(f"0{i + 1}", None): p for i, p in enumerate(pairs(size))}

    cli_train.prepare_pairs = prepare
    return cli_train.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
