"""Atrophy series synthesis: N step images one by one (batch 1, as a MapNode of syntheses would) against one batched
``synthesize_series`` call, on the CPU, in interleaved A/B repeats (a shared machine's load changes between
repeats, so each pair runs back to back and the order alternates).

Usage::

    python benchmarks/bench_series.py MODEL_DIR STEP_MAPS.npz [STEP_MAPS.npz ...] [--repeats 4] [--threads 2]
        [--json out.json]

STEP_MAPS are conditioning maps on the model grid (``atrophy_conditioning``'s ``maps.npz`` of a participant run
with ``--atrophy``). Prints per repeat the process CPU seconds and wall seconds of both ways, their medians and
ratio (batched / one by one), and how far the batched images are from the one-by-one ones (they share the seed
and the noise; only batched-kernel rounding differs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cor2vox_bids.diffusion.checkpoint import load_model  # noqa: E402
from cor2vox_bids.diffusion.conditioning import prepare_condition  # noqa: E402
from cor2vox_bids.diffusion.inference import synthesize, synthesize_series  # noqa: E402
from cor2vox_bids.interfaces.synthesis import read_maps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("maps", type=Path, nargs="+")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=10, help="sampling steps")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, config = load_model(a.model, "cpu")
    conditions = [prepare_condition(read_maps(m)[0], config) for m in a.maps]
    runs = {
        "one_by_one": lambda: [synthesize(model, config, c, [a.seed], steps=a.steps)[0] for c in conditions],
        "batched": lambda: synthesize_series(model, config, conditions, a.seed, steps=a.steps),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    images: dict[str, list[np.ndarray]] = {}
    for rep in range(a.repeats):
        for name in (("one_by_one", "batched") if rep % 2 == 0 else ("batched", "one_by_one")):
            c0, w0 = time.process_time(), time.perf_counter()
            images[name] = runs[name]()
            times[name].append((time.process_time() - c0, time.perf_counter() - w0))
            print(f"repeat {rep + 1} {name:10s} CPU {times[name][-1][0]:6.1f} s  wall {times[name][-1][1]:6.1f} s",
                  flush=True)
    med = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in times.items()}
    diff = [float(np.abs(b - o).max()) for b, o in zip(images["batched"], images["one_by_one"])]
    mean_diff = [float(np.abs(b - o).mean()) for b, o in zip(images["batched"], images["one_by_one"])]
    summary = {"images": len(conditions), "threads": a.threads, "repeats": a.repeats, "seconds": times,
               "median_cpu_s": {k: v[0] for k, v in med.items()}, "median_wall_s": {k: v[1] for k, v in med.items()},
               "cpu_ratio": med["batched"][0] / med["one_by_one"][0],
               "wall_ratio": med["batched"][1] / med["one_by_one"][1],
               "max_abs_difference": diff, "mean_abs_difference": mean_diff}
    print(f"median CPU: one by one {med['one_by_one'][0]:.1f} s, batched {med['batched'][0]:.1f} s "
          f"(ratio {summary['cpu_ratio']:.2f}); median wall: {med['one_by_one'][1]:.1f} s, {med['batched'][1]:.1f} s "
          f"(ratio {summary['wall_ratio']:.2f})")
    print("batched − one by one, per image: max |Δ| " + ", ".join(f"{d:.5f}" for d in diff)
          + "; mean |Δ| " + ", ".join(f"{d:.6f}" for d in mean_diff))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
