"""Benchmark: one demo participant end to end (the participant level), cold and warm, time per Nipype node.

Runs ``cor2vox-bids BIDS OUT participant --participant-label L`` in a fresh process with a fresh work folder:

* ``cold``: an empty kernel cache (a new ``NUMBA_CACHE_DIR``: every numba kernel compiles in the process that
  first needs it);
* ``installed``: a new kernel cache filled beforehand by ``python -m cor2vox_bids.geometry.warmup`` (the last
  step of ``make install``; not timed): the first run after an install;
* ``warm``: the same again, with the kernel cache that the previous run filled (a fresh work folder, so Nipype
  reruns every node).

For each run it prints the wall time of the command, the start-up (process start to the first node's start:
imports, BIDS indexing, input validation, graph building), each node's interface time (Nipype's
``runtime.duration``, from the node's result file) and start offset, the time when no node was running between
the first start and the last end (Nipype's per-node overhead: hashing, pickling, dispatching and polling) and the
tail (last node's end to the process exit: summary, clean-up), and the CPU seconds of the whole process tree
(steadier than wall time on a busy machine). The demo data are built first (one participant,
``--first 21``) unless ``--data`` names an existing demo data folder.

Usage: ``python benchmarks/bench_participant.py [--data DIR] [--label 21] [--nprocs 2] [--runs cold,warm,warm]
[--keep DIR] [--json FILE]`` (``--keep``: keep the work and output folders there, e.g. for ``bench_qc.py node``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def node_times(work: Path) -> list[tuple[str, float, float]]:
    """(node, start epoch seconds, interface seconds) of every node that ran, from its result file."""
    from nipype.utils.filemanip import loadpkl

    out = []
    for result_file in work.rglob("result_*.pklz"):
        result = loadpkl(result_file)
        runtime = getattr(result, "runtime", None)
        if runtime is None or not getattr(runtime, "startTime", None):
            continue
        start = dt.datetime.fromisoformat(runtime.startTime).timestamp()
        out.append((result_file.parent.name, start, float(runtime.duration)))
    return sorted(out, key=lambda row: row[1])


def idle(spans: list[tuple[float, float]]) -> float:
    """Seconds between the first start and the last end during which no span is running."""
    spans = sorted(spans)
    gap, reach = 0.0, spans[0][0]
    for start, end in spans:
        if start > reach:
            gap += start - reach
        reach = max(reach, end)
    return gap


def run_once(bids: Path, label: str, nprocs: int, cache: Path, tmp: Path, name: str) -> dict:
    work, out = tmp / f"work-{name}", tmp / f"out-{name}"
    for folder in (work, out):  # a kept folder from an earlier run would let Nipype skip the nodes
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    cmd = [str(BIN / "cor2vox-bids"), str(bids), str(out), "participant", "--participant-label", label,
           "-w", str(work), "--nprocs", str(nprocs), "--random-seed", "0"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t1 = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: cor2vox-bids exited {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    nodes = node_times(work)
    spans = [(s, s + d) for _, s, d in nodes]
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return {"wall": t1 - t0, "cpu": cpu, "startup": first - t0, "tail": t1 - last, "idle": idle(spans), "nodes": nodes,
            "t0": t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="an existing cor2vox-demo-data folder (holding bids/)")
    ap.add_argument("--label", default="21")
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--runs", default="cold,warm,warm")
    ap.add_argument("--keep", type=Path, help="keep the runs' work and output folders in this folder")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep.resolve()
        data = args.data
        if data is None:
            data = tmp / "data"
            t0 = time.time()
            subprocess.run([str(BIN / "cor2vox-demo-data"), str(data), "--participants", "1", "--first", args.label,
                            "--no-site2"], check=True, capture_output=True)
            print(f"demo data (1 participant) built in {time.time() - t0:.1f} s")
        cache = tmp / "kernel-cache"
        cache.mkdir()
        rows = {}
        for i, kind in enumerate(args.runs.split(",")):
            if kind in ("cold", "installed"):
                cache = tmp / f"kernel-cache-{i}"
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir()
            if kind == "installed":
                subprocess.run([str(BIN / "python"), "-m", "cor2vox_bids.geometry.warmup"], check=True,
                               capture_output=True, env={**os.environ, "NUMBA_CACHE_DIR": str(cache)})
            elif kind not in ("cold", "warm"):
                raise SystemExit(f"unknown run kind {kind}: cold, installed or warm")
            name = f"{kind}{i}"
            rows[name] = run_once(data / "bids", args.label, args.nprocs, cache, tmp, name)
            r = rows[name]
            print(f"\n{name}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s cpu (sub-{args.label}, --nprocs {args.nprocs}); "
                  f"start-up "
                  f"{r['startup']:.1f} s, no node running {r['idle']:.1f} s, tail {r['tail']:.1f} s")
            for node, start, seconds in r["nodes"]:
                print(f"  {node:<16} starts at {start - r['t0']:6.1f} s, runs {seconds:6.2f} s")
        names = list(rows)
        for key in ("wall", "cpu"):
            warm = [rows[n][key] for n in names if n.startswith("warm")]
            for first in ("cold", "installed"):
                vals = [rows[n][key] for n in names if n.startswith(first)]
                if warm and vals:
                    print(f"{first} / warm ({key}): {min(vals):.1f} s / {min(warm):.1f} s = "
                          f"{min(vals) / min(warm):.2f}")
        if args.json:
            out = {n: {"wall_s": r["wall"], "cpu_s": r["cpu"], "startup_s": r["startup"], "idle_s": r["idle"],
                       "tail_s": r["tail"], "nodes": [{"node": nd, "start_s": st - r["t0"], "seconds": sec}
                                                      for nd, st, sec in r["nodes"]]}
                   for n, r in rows.items()}
            args.json.write_text(json.dumps({"label": args.label, "nprocs": args.nprocs, "runs": out}, indent=2)
                                 + "\n")


if __name__ == "__main__":
    main()
