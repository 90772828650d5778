"""Helpers of ``benchmarks/run_all.sh``: time a command, and print the issue-21 table from the results.

    python benchmarks/issue21_table.py timed OUT.json -- CMD ARGS...   # run CMD, write its wall and CPU seconds
    python benchmarks/issue21_table.py table RESULTS_DIR               # the table from the JSON files there

``timed`` measures the whole process tree of the command (children's user + system time, threads summed) and
passes its output and exit status through. ``table`` reads what the benchmarks wrote (``first_call.json``,
``sdf.json``, ``thickness.json``, ``participant.json``, ``qc.json``, ``demo*.time.json``): every target of issue 21
with the wall time, the CPU seconds beside it (steadier when other jobs load the machine) and, where there is a
peer, the ratio against it from the same run. "met" judges the wall time, as the targets do.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def timed(out: Path, cmd: list[str]) -> int:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.write_text(json.dumps({"cmd": cmd, "wall_s": wall, "cpu_s": cpu, "exit": rc}, indent=2) + "\n")
    return rc


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def _met(ok: bool | None) -> str:
    return "–" if ok is None else "yes" if ok else "**no**"


def table(folder: Path) -> str:
    rows: list[tuple[str, str, str, str, str]] = []  # target, wall, cpu, ratio, met

    def add(target, wall="–", cpu="–", ratio="–", met=None):
        rows.append((target, wall, cpu, ratio, _met(met)))

    fc = _load(folder, "first_call.json")
    if fc and "pip-warm" in fc:
        w = fc["pip-warm"]
        for case, label, target in (
            ("pip-installed", "first process after `make install` (kernels warmed at install)", True),
            ("ro-prebuilt", "first process, read-only image with the build-time kernel cache", True),
            ("ro-prebuilt-again", "second process, read-only image", False),
            ("pip-empty", "first process, empty kernel cache (no warm-up: the compile tax)", False),
        ):
            if case in fc:
                c = fc[case]
                rw, rc = c["wall_s"] / w["wall_s"], c["cpu_s"] / w["cpu_s"]
                add(f"geometry of one participant, {label}" + (": ≤ 1.25 × warm" if target else " (information)"),
                    f"{_s(c['wall_s'])} (warm {_s(w['wall_s'])})", f"{c['cpu_s']:.2f} (warm {w['cpu_s']:.2f})",
                    f"{rw:.2f} × warm (CPU {rc:.2f} ×)", rw <= 1.25 if target else None)
    else:
        add("first call (compile tax)", "not run")

    part = _load(folder, "participant.json")
    runs = (part or {}).get("runs", {})
    warm = [r for n, r in runs.items() if n.startswith("warm")]
    if warm:
        wr = min(warm, key=lambda r: r["wall_s"])
        for kind, label, target in (("installed", "first run after `make install`", True),
                                    ("cold", "first run, empty kernel cache", False)):
            got = [r for n, r in runs.items() if n.startswith(kind)]
            if got:
                r = got[0]
                rw, rc = r["wall_s"] / wr["wall_s"], r["cpu_s"] / wr["cpu_s"]
                add(f"one demo participant, {label}" + (": ≤ 1.25 × warm" if target else " (information)"),
                    _s(r["wall_s"]), f"{r['cpu_s']:.1f}", f"{rw:.2f} × warm (CPU {rc:.2f} ×)",
                    rw <= 1.25 if target else None)
        add("one demo participant end to end, warm: ≤ 20 s", _s(wr["wall_s"]), f"{wr['cpu_s']:.1f}",
            met=wr["wall_s"] <= 20.0)
    else:
        add("one demo participant end to end", "not run")

    qc = _load(folder, "qc.json")
    if qc:
        f, b = qc["first"], qc["best"]
        more = f"best of {qc['repeat']} more: {_s(b['wall_s'])} / {b['cpu_s']:.2f} CPU-s" if qc["repeat"] else "–"
        add("QC node of one participant (first call in a worker): ≤ 5 s", _s(f["wall_s"]), f"{f['cpu_s']:.2f}",
            more, f["wall_s"] <= 5.0)
    if warm:
        qc_node = [n["seconds"] for n in wr["nodes"] if n["node"] == "qc"]
        if qc_node:
            add("QC node inside the warm participant run (Nipype interface time): ≤ 5 s", _s(qc_node[0]),
                met=qc_node[0] <= 5.0)

    sdf = _load(folder, "sdf.json")
    if sdf and sdf.get("cases"):
        case = sdf["cases"][-1]
        m = case["methods"]
        o = m.get("ours")
        if o and "pysdf" in m:
            p = m["pysdf"]
            rw = p["wall_s"] / o["wall_s"]
            rc = p["cpu_s"] / o["cpu_s"] if p.get("cpu_s") and o.get("cpu_s") else float("nan")
            add(f"{case['size']}³ SDF of {sdf['mesh']} ({sdf['vertices']} vertices): ≥ 15 × pysdf",
                f"{_s(o['wall_s'])} (pysdf {_s(p['wall_s'])})", f"{o['cpu_s']:.2f} (pysdf {p['cpu_s']:.2f})",
                f"{rw:.1f} × (CPU {rc:.1f} ×)", rw >= 15.0)
        elif o:
            add(f"{case['size']}³ SDF: ≥ 15 × pysdf", _s(o["wall_s"]), f"{o['cpu_s']:.2f}", "pysdf missing")
        if o:
            add(f"band error vs libigl's exact distance ({case['band_voxels_checked']} band voxels): ≤ 1e-4 mm",
                f"{o['max_err_band_mm']:.1e} mm", ratio=f"sign errors {o['sign_errors']} of "
                f"{case['sign_voxels_checked']}", met=o["max_err_band_mm"] <= 1e-4 and o["sign_errors"] == 0)
    else:
        add("SDF vs pysdf", "not run (or failed: see sdf.log)")

    th = _load(folder, "thickness.json")
    if th:
        o, p = th["ours"], th["libigl"]
        rw, rc = p["wall_s"] / o["wall_s"], p["cpu_s"] / o["cpu_s"]
        add(f"thickness, fsaverage lh ({th['vertices']} vertices, best of {th['repeat']}): ≥ 3 × libigl",
            f"{_s(o['wall_s'])} (libigl {_s(p['wall_s'])})", f"{o['cpu_s']:.2f} (libigl {p['cpu_s']:.2f})",
            f"{rw:.2f} × (CPU {rc:.2f} ×)" + (f"; median of rounds {th['median_round_ratio']:.2f} ×"
                                               if "median_round_ratio" in th else ""), rw >= 3.0)
    else:
        add("thickness vs libigl", "not run (or failed: see thickness.log)")

    demo = _load(folder, "demo.time.json")
    if demo:
        ok = demo["exit"] == 0
        add("`make demo` after install, fresh folder (2 participants + group): ≤ 2 min",
            _s(demo["wall_s"]) + ("" if ok else " (failed)"), f"{demo['cpu_s']:.1f}", met=ok and demo["wall_s"] <= 120)
        again = _load(folder, "demo_again.time.json")
        if again:
            log = folder / "demo_again.log"
            reused = log.exists() and "reusing" in log.read_text(errors="replace")
            add("`make demo` again: reuses the demo data", _s(again["wall_s"]), f"{again['cpu_s']:.1f}",
                "data reused" if reused else "data rebuilt", reused)

    lines = ["| target | wall | CPU-s | ratio | met |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if runs:
        lines += ["", "Participant level per run (seconds; nodes: Nipype interface time):", ""]
        names = list(runs)
        node_names: list[str] = []
        for r in runs.values():
            for n in r["nodes"]:
                if n["node"] not in node_names:
                    node_names.append(n["node"])
        lines.append("| | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        lines.append("| wall (CPU) | " + " | ".join(f"{runs[n]['wall_s']:.1f} ({runs[n]['cpu_s']:.1f})"
                                                    for n in names) + " |")
        for key, label in (("startup_s", "start-up (imports, BIDS, graph)"),):
            lines.append(f"| {label} | " + " | ".join(f"{runs[n][key]:.1f}" for n in names) + " |")
        for node in node_names:
            vals = []
            for n in names:
                got = [x["seconds"] for x in runs[n]["nodes"] if x["node"] == node]
                vals.append(" + ".join(f"{v:.1f}" for v in got) or "–")
            lines.append(f"| {node} | " + " | ".join(vals) + " |")
        for key, label in (("idle_s", "no node running (Nipype overhead)"), ("tail_s", "tail (after the last node)")):
            lines.append(f"| {label} | " + " | ".join(f"{runs[n][key]:.1f}" for n in names) + " |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) >= 4 and sys.argv[1] == "timed" and sys.argv[3] == "--":
        return timed(Path(sys.argv[2]), sys.argv[4:])
    if len(sys.argv) == 3 and sys.argv[1] == "table":
        print(table(Path(sys.argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
