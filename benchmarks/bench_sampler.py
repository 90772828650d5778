"""Benchmarks of the diffusion engine on the CPU (each case runs in its own process for a clean peak RSS).

Usage::

    python benchmarks/bench_sampler.py                 # everything (< 10 min on 2 cores)
    python benchmarks/bench_sampler.py --only tradeoff # just table (d)
    python benchmarks/bench_sampler.py --only overhead,demo,paper
    python benchmarks/bench_sampler.py --only tradeoff_cpu  # (d) in 1-thread CPU seconds, robust to other load

(a) sampler overhead: total sampling time minus the time spent inside the UNet forward, in %;
(b) demo config, 10 steps, one sample: seconds and peak RSS;
(c) paper config: one forward at 128³ (seconds, peak RSS);
(d) demo-model trade-off: grid × base channels → params, s/train-step, s/10-step sample.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cor2vox_bids.diffusion.precision import autocast, resolve_precision  # noqa: E402
from cor2vox_bids.diffusion.schedule import BridgeSchedule, l1_loss  # noqa: E402
from cor2vox_bids.diffusion.unet import UNet3D, count_parameters, demo_config, paper_config  # noqa: E402


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _model(base: int, size: int, nrb: int, paper: bool = False) -> UNet3D:
    cfg = paper_config() if paper else replace(demo_config(size, base), num_res_blocks=nrb)
    torch.manual_seed(0)
    return UNet3D(cfg)


def _prep(model: UNet3D, precision: str) -> tuple[UNet3D, str]:
    prec = resolve_precision(precision, torch.device("cpu"))
    if prec != "fp32":
        model = model.to(memory_format=torch.channels_last_3d)
    return model, prec


def _input(size: int, prec: str) -> torch.Tensor:
    x = torch.randn(1, 6, size, size, size)
    return x.contiguous(memory_format=torch.channels_last_3d) if prec != "fp32" else x


def case_train(base: int, size: int, nrb: int, precision: str, n: int = 3, threads: int = 0) -> dict:
    """Seconds per training step (forward + backward + Adam), batch 1: min over ``n`` after a warm-up.

    Reports wall seconds and process CPU seconds (the latter barely depends on other load with 1 thread).
    """
    if threads:
        torch.set_num_threads(threads)
    model, prec = _prep(_model(base, size, nrb), precision)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = BridgeSchedule()
    x0 = torch.rand(1, 1, size, size, size) * 2 - 1
    cond = _input(size, prec)[:, 1:]
    times, cpu = [], []
    for i in range(n + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        t = torch.randint(0, 1000, (1,))
        xt = sched.q_sample(x0, cond[:, :1], t, torch.randn_like(x0))
        with autocast(prec, torch.device("cpu")):
            out = model(torch.cat([xt, cond], 1), t)
        loss = l1_loss(out, cond[:, :1] - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"params_M": count_parameters(model) / 1e6, "s_per_step": min(times), "cpu_s_per_step": min(cpu),
            "precision": prec,
            "peak_rss_GB": _peak_rss_gb()}


def case_sample(base: int, size: int, nrb: int, precision: str, paper: bool = False, threads: int = 0) -> dict:
    """One 10-step synthesis through the real inference path; reports sampler overhead too."""
    if threads:
        torch.set_num_threads(threads)
    model = _model(base, size, nrb, paper)
    cond = torch.rand(1, 5, size, size, size) * 2 - 1
    from cor2vox_bids.diffusion.checkpoint import make_model_config
    from cor2vox_bids.diffusion.inference import synthesize

    cfg = make_model_config(model.config, grid_shape=(size,) * 3, spacing_mm=1.5, name="bench", demo=True)
    fwd_time = [0.0]
    orig = model.forward

    def timed(x, t):
        t0 = time.perf_counter()
        out = orig(x, t)
        fwd_time[0] += time.perf_counter() - t0
        return out

    model.forward = timed  # type: ignore[method-assign]
    synthesize(model, cfg, cond, seeds=[0], steps=1, precision=precision)  # warm-up (kernel creation)
    fwd_time[0] = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    synthesize(model, cfg, cond, seeds=[1], steps=10, precision=precision)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"params_M": count_parameters(model) / 1e6, "s_per_sample": total, "cpu_s_per_sample": cpu,
            "overhead_pct": 100.0 * (total - fwd_time[0]) / total, "peak_rss_GB": _peak_rss_gb()}


def case_paper_forward(precision: str) -> dict:
    """One forward of the paper network at 128³ (no grad)."""
    model, prec = _prep(_model(64, 128, 2, paper=True), precision)
    model.eval()
    x = _input(128, prec)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad(), autocast(prec, torch.device("cpu")):
        model(x, torch.tensor([500]))
    return {"params_M": count_parameters(model) / 1e6, "s_forward": time.perf_counter() - t0,
            "cpu_s_forward": time.process_time() - c0,
            "precision": prec, "peak_rss_GB": _peak_rss_gb()}


CASES = {"train": case_train, "sample": case_sample, "paper_forward": case_paper_forward}


def run_case(name: str, **kw) -> dict:
    """Run one case in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, __file__, "--case", name, "--kw", json.dumps(kw)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_overhead() -> None:
    # one thread: with two threads on a loaded machine every small op may wait for a descheduled
    # OpenMP worker, which inflates the (tiny) sampler share; one thread measures the work itself
    for threads in (1, 2):
        r = run_case("sample", base=24, size=64, nrb=1, precision="auto", threads=threads)
        print(f"(a) sampler overhead (demo 24ch/64³, 10 steps, {threads} thread(s)): {r['overhead_pct']:.2f} % of "
              f"{r['s_per_sample']:.2f} s (target ≤ 2 %)", flush=True)


def section_demo() -> None:
    for prec in ("auto", "fp32"):
        r = run_case("sample", base=24, size=64, nrb=1, precision=prec, threads=1)
        print(f"(b) demo 24ch nrb1 64³ {prec:4s} 1 thread: 10-step sample {r['s_per_sample']:.2f} s wall, "
              f"{r['cpu_s_per_sample']:.2f} CPU-s (≈ {r['cpu_s_per_sample'] / 2:.1f} s on 2 idle cores), "
              f"peak RSS {r['peak_rss_GB']:.2f} GB (targets ≤ 20 s, ≤ 3 GB)", flush=True)


def section_paper() -> None:
    r = run_case("paper_forward", precision="auto")
    print(f"(c) paper {r['params_M']:.1f} M params, 128³, {r['precision']}, 2 threads: one forward "
          f"{r['s_forward']:.1f} s wall, {r['cpu_s_forward']:.1f} CPU-s, peak RSS {r['peak_rss_GB']:.2f} GB "
          f"(10-step sample ≈ {10 * r['cpu_s_forward'] / 2 / 60:.1f} min on 2 idle cores)", flush=True)


def section_tradeoff(out: Path | None = None) -> None:
    rows = []
    hdr = f"{'grid':>14} {'base':>4} {'nrb':>3} {'params':>7} {'train bf16+CL':>14} {'train fp32':>10} " \
          f"{'sample10 bf16':>13} {'RSS GB':>6}"
    print("(d) demo-model trade-off (batch 1, 2 cores, s/train-step = fwd+bwd+Adam):")
    print(hdr)
    grids = [(64, "3 mm"), (80, "2 mm"), (96, "2 mm")]
    for size, sp in grids:
        for base, nrb in ((16, 2), (24, 1)):
            tr = run_case("train", base=base, size=size, nrb=nrb, precision="auto")
            fp = run_case("train", base=base, size=size, nrb=nrb, precision="fp32", n=2) \
                if size == 64 and base == 24 and nrb == 1 else None
            sm = run_case("sample", base=base, size=size, nrb=nrb, precision="auto")
            fp_s = f"{fp['s_per_step']:.2f}s" if fp else "-"
            line = (f"{size:>3}³ @ {sp:>4} {'':>3} {base:>4} {nrb:>3} {tr['params_M']:>6.2f}M "
                    f"{tr['s_per_step']:>13.2f}s {fp_s:>10} "
                    f"{sm['s_per_sample']:>12.2f}s {max(tr['peak_rss_GB'], sm['peak_rss_GB']):>6.2f}")
            print(line, flush=True)
            rows.append(line)
            if out is not None:
                out.write_text("\n".join([hdr, *rows]) + "\n")


def section_tradeoff_cpu(out: Path | None = None) -> None:
    """Table (d) in process CPU seconds with one thread: robust against other load on a shared machine."""
    hdr = (f"{'grid':>14} {'base':>4} {'nrb':>3} {'params':>7} {'train bf16+CL':>13} {'train fp32':>10} "
           f"{'sample10 bf16':>13} {'RSS GB':>6}")
    print("(d') same trade-off, 1 thread, process CPU seconds (≈ 2-core wall × 2 when the machine is idle):")
    print(hdr)
    rows = []
    for size, sp in ((64, "3 mm"), (80, "2 mm"), (96, "2 mm")):
        for base, nrb in ((16, 2), (24, 1)):
            tr = run_case("train", base=base, size=size, nrb=nrb, precision="auto", n=2, threads=1)
            fp = run_case("train", base=base, size=size, nrb=nrb, precision="fp32", n=1, threads=1) \
                if size == 64 and base == 24 else None
            sm = run_case("sample", base=base, size=size, nrb=nrb, precision="auto", threads=1)
            fp_s = f"{fp['cpu_s_per_step']:.2f}s" if fp else "-"
            line = (f"{size:>3}³ @ {sp:>4} {'':>3} {base:>4} {nrb:>3} {tr['params_M']:>6.2f}M "
                    f"{tr['cpu_s_per_step']:>12.2f}s {fp_s:>10} {sm['cpu_s_per_sample']:>12.2f}s "
                    f"{max(tr['peak_rss_GB'], sm['peak_rss_GB']):>6.2f}")
            print(line, flush=True)
            rows.append(line)
            if out is not None:
                out.write_text("\n".join([hdr, *rows]) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="overhead,demo,paper,tradeoff")
    ap.add_argument("--tradeoff-out", type=Path, default=None, help="also write table (d) to this file")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--kw", default="{}", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        print(json.dumps(CASES[a.case](**json.loads(a.kw))))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"auto precision on CPU: {resolve_precision('auto', torch.device('cpu'))}")
    t0 = time.perf_counter()
    sections = {"overhead": section_overhead, "demo": section_demo, "paper": section_paper,
                "tradeoff": lambda: section_tradeoff(a.tradeoff_out),
                "tradeoff_cpu": lambda: section_tradeoff_cpu(a.tradeoff_out)}
    for name in a.only.split(","):
        sections[name]()
    print(f"total bench time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
