#!/usr/bin/env python
"""Measure the atrophy-series targets of issue 17 on (held-out) demo participants with a given model.

For each participant it runs ``cor2vox-bids`` three times (each in its own output and work folder):

1. plain: one sample, no atrophy — its wall time, and the duration of its synthesis node (one synthesis);
2. atrophy: the same with ``--atrophy SPEC`` in a fresh work dir — the time the series adds (2 minus 1);
3. seeds: run 2 again with ``--num-samples N`` on the same work dir (finished nodes are reused) — the seed std map.

Then it reads the published outputs (names from ``bids.naming``) and prints one table of target | reached:
surface-measured thinning within ±5 % (every step, every region in the spec), image-measured thinning within ±20 %
for the regions prescribed 0.5 and 1.0 mm (last step), |image change| of the regions not in the spec < 0.1 mm, no new
self-intersections, seed std in the ribbon ≤ ½ of the rest of the brain, and the added run time ≤ 3 × one synthesis.
The image rows give the measure after the intensity normalisation of the step images (the default) and the raw one
beside it; two rows marked "(not a target)" add |image − surface| of the regions not in the spec and the gain range.
A JSON with every number goes to WORK/atrophy_check.json.

    .venv/bin/python scripts/atrophy_check.py work/demo_model/data/bids /tmp/atrophy-check \\
        --participant-label 21 22 --spec examples/atrophy_spec.json
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cor2vox_bids.bids import naming
from cor2vox_bids.qc.atrophy import read_atrophy_tsv

ROOT = Path(__file__).resolve().parents[1]


def run_app(args: list[str]) -> float:
    """Run cor2vox-bids (same interpreter); returns the wall time; stops on a non-zero exit."""
    cmd = [sys.executable, "-m", "cor2vox_bids.cli.run", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"cor2vox-bids exited {proc.returncode}: {' '.join(cmd)}")
    return wall


def synthesis_seconds(work: Path) -> float:
    """Duration of the baseline synthesis node of a finished run (Nipype's recorded runtime)."""
    from nipype.utils.filemanip import loadpkl

    found = sorted(glob.glob(str(work / "**" / "_synthesis0" / "result__synthesis0.pklz"), recursive=True))
    if not found:
        raise SystemExit(f"no synthesis result under {work}")
    return float(loadpkl(found[0]).runtime.duration)


def node_seconds(work: Path, prefix: str) -> dict[str, float]:
    """Recorded durations (s) of the nodes whose name starts with ``prefix`` (MapNode sub-nodes summed)."""
    from nipype.utils.filemanip import loadpkl

    out: dict[str, float] = {}
    for path in glob.glob(str(work / "**" / "result_*.pklz"), recursive=True):
        name = Path(path).name[len("result_"):-len(".pklz")].lstrip("_")
        if not name.startswith(prefix):
            continue
        name = name.rstrip("0123456789") if Path(path).parent.name.startswith("_") else name
        result = loadpkl(path)
        duration = getattr(getattr(result, "runtime", None), "duration", None)
        if isinstance(duration, (int, float)):
            out[name] = out.get(name, 0.0) + float(duration)
    return out


def check_participant(a: argparse.Namespace, label: str) -> dict:
    base = Path(a.work) / f"sub-{label}"
    common = [str(a.bids_dir), None, "participant", "--participant-label", label, "--skip-bids-validation",
              "--random-seed", str(a.random_seed), "--steps", str(a.steps), "--device", a.device,
              "--nprocs", str(a.nprocs), "--omp-nthreads", str(a.omp_nthreads)]
    if a.model:
        common += ["--model", str(a.model)]

    def args(out: Path, work: Path, *extra: str) -> list[str]:
        c = list(common)
        c[1] = str(out)
        return c + ["-w", str(work), *extra]

    plain_out, plain_w = base / "plain" / "out", base / "plain" / "work"
    atro_out, atro_w = base / "atrophy" / "out", base / "atrophy" / "work"
    t_plain = run_app(args(plain_out, plain_w))
    t_synth = synthesis_seconds(plain_w)
    t_atrophy = run_app(args(atro_out, atro_w, "--atrophy", str(a.spec)))
    series_nodes = node_seconds(atro_w, "atrophy_")
    t_synth_same_run = synthesis_seconds(atro_w)  # the load on a shared machine changes between runs
    rows = read_atrophy_tsv(atro_out / naming.atrophy_qc_path(label, None))
    summary = json.loads((atro_out / naming.atrophy_summary_path(label, None)).read_text())
    seeds_out = base / "seeds" / "out"
    run_app(args(seeds_out, atro_w, "--atrophy", str(a.spec), "--num-samples", str(a.num_samples)))
    std_sidecar = json.loads((seeds_out / naming.seedstd_path(label, None, ".json")).read_text())
    return {"label": label, "rows": rows, "summary": summary, "seedstd": std_sidecar["SeedStdSummary"],
            "seconds": {"plain_run": t_plain, "one_synthesis": t_synth, "atrophy_run": t_atrophy,
                        "added_by_series": t_atrophy - t_plain, "series_nodes": series_nodes,
                        "one_synthesis_same_run": t_synth_same_run,
                        "series_node_total": sum(series_nodes.values())}}


def evaluate(result: dict) -> list[tuple[str, str, bool | None]]:
    """(target, reached, met) for one participant; met is None for the rows that only inform."""
    rows = result["rows"]
    spec_rows = [r for r in rows if r["in_spec"] and r["prescribed_mm"] > 0]
    last = max(r["step"] for r in rows)
    out = []
    rel = [abs(r["surface_mm"] - r["prescribed_mm"]) / r["prescribed_mm"] for r in spec_rows]
    out.append(("surface thinning within ±5 % (all steps, spec regions)",
                f"max error {100 * max(rel):.1f} %", max(rel) <= 0.05))
    normalised = bool(result["summary"].get("image_intensity_normalisation", {}).get("applied", False))
    tag = "normalised" if normalised else "not normalised"
    for mm in (0.5, 1.0):
        sel = [r for r in spec_rows if r["step"] == last and abs(r["prescribed_mm"] - mm) < 1e-6]
        for r in sel:
            err = (r["image_mm"] - mm) / mm
            raw = r.get("image_raw_mm", float("nan"))
            out.append((f"image thinning {mm} mm within ±20 % ({r['hemi']} {r['region']})",
                        f"{r['image_mm']:.3f} mm ({100 * err:+.0f} %, {tag}; raw {raw:.3f} mm, "
                        f"{100 * (raw - mm) / mm:+.0f} %; coverage {100 * r['image_coverage']:.0f} %)",
                        bool(np.isfinite(err) and abs(err) <= 0.2)))
    final_others = [r for r in rows if r["step"] == last and not r["in_spec"] and np.isfinite(r["image_mm"])]
    if final_others:
        def worst_of(key: str) -> tuple[float, str]:
            r = max(final_others, key=lambda r: abs(r[key]) if np.isfinite(r[key]) else -1.0)
            return abs(r[key]), f"{r['hemi']} {r['region']}"

        others = [abs(r["image_mm"]) for r in final_others]
        worst, where = worst_of("image_mm")
        reached = (f"max {worst:.3f} mm ({where}, {tag}), median {np.median(others):.3f} mm, "
                   f"{sum(o >= 0.1 for o in others)}/{len(others)} regions ≥ 0.1")
        if "image_raw_mm" in final_others[0]:
            raw_worst, raw_where = worst_of("image_raw_mm")
            raw = [abs(r["image_raw_mm"]) for r in final_others if np.isfinite(r["image_raw_mm"])]
            reached += (f"; raw max {raw_worst:.3f} mm ({raw_where}), median {np.median(raw):.3f} mm, "
                        f"{sum(o >= 0.1 for o in raw)}/{len(raw)} ≥ 0.1")
        out.append(("regions not prescribed change < 0.1 mm in the image", reached, worst < 0.1))
        for r in final_others:
            r["image_minus_surface_mm"] = r["image_mm"] - r["surface_mm"]
            r["image_raw_minus_surface_mm"] = r.get("image_raw_mm", float("nan")) - r["surface_mm"]
        dev, dev_where = worst_of("image_minus_surface_mm")
        line = (f"max {dev:.3f} mm ({dev_where}), median "
                f"{np.median([abs(r['image_minus_surface_mm']) for r in final_others]):.3f} mm ({tag})")
        if "image_raw_mm" in final_others[0]:
            raw_dev, raw_dev_where = worst_of("image_raw_minus_surface_mm")
            line += f"; raw max {raw_dev:.3f} mm ({raw_dev_where})"
        out.append(("(not a target) largest abs(image − surface) among the regions not prescribed (the falloff "
                    "thins them)", line, None))
    norm = result["summary"].get("image_intensity_normalisation", {})
    if norm.get("applied"):
        g = norm["gain_where_lines_reach"][-1]
        out.append(("(not a target) intensity normalisation of the last step: gain where the lines reach",
                    f"σ {norm['sigma_mm']:g} mm, reference ≥ {norm['reference']['min_depth_mm']:.1f} mm deep "
                    f"({g['reference_voxels']} voxels, step/baseline {g['reference_ratio']:.4f}); gain "
                    f"{g['min']:.4f}–{g['max']:.4f} (1–99 %: {g['p01']:.4f}–{g['p99']:.4f})", None))
    checks = [c for info in result["summary"]["surface_checks"].values() for c in info["checks"]]
    new = sum(c["new_self_intersections"] + c["new_white_crossings"] + c["new_flipped_faces"] for c in checks)
    backed = sum(c["backed_off_vertices"] for c in checks)
    out.append(("no new self-intersections", f"{new} new (after back-off of {backed} vertex moves)", new == 0))
    sd = result["seedstd"]
    ratio = sd["ribbon_to_brain_ratio"]
    zones = ", ".join(f"{z.replace('_', ' ')} {sd[f'{z}_mean_std']:.4f}" for z in
                      ("white_near", "white_deep", "outside_near", "outside_far") if f"{z}_mean_std" in sd)
    out.append(("seed std in ribbon ≤ ½ std elsewhere in the brain (rest = inside the white surfaces)",
                f"ratio {ratio:.2f} (ribbon {sd['ribbon_mean_std']:.4f}, inside white {sd['brain_other_mean_std']:.4f}"
                + (f"; {zones}" if zones else "") + ")", ratio <= 0.5))
    s = result["seconds"]
    out.append(("series adds ≤ 3 × one synthesis (wall time of the runs)",
                f"+{s['added_by_series']:.0f} s vs one synthesis {s['one_synthesis']:.0f} s "
                f"({s['added_by_series'] / s['one_synthesis']:.1f}×)", s["added_by_series"] <= 3 * s["one_synthesis"]))
    nodes = ", ".join(f"{k} {v:.0f} s" for k, v in sorted(s["series_nodes"].items()))
    ref = s["one_synthesis_same_run"]
    out.append(("series adds ≤ 3 × one synthesis (node durations, baseline synthesis of the same run)",
                f"{s['series_node_total']:.0f} s = {s['series_node_total'] / ref:.1f}× {ref:.0f} s ({nodes})",
                s["series_node_total"] <= 3 * ref))
    return out


def compact_table(table: list[dict]) -> str:
    """One markdown row per target: target | reached (per participant) | met (all participants)."""
    by_target: dict[str, list[dict]] = {}
    for t in table:
        by_target.setdefault(t["target"], []).append(t)
    lines = ["| target | reached | met |", "|---|---|---|"]
    for target, items in by_target.items():
        reached = "; ".join(f"sub-{t['participant']}: {t['reached']}" for t in items)
        met = ("—" if any(t["met"] is None for t in items) else "yes" if all(t["met"] for t in items) else "NO")
        lines.append(f"| {target} | {reached} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bids_dir", type=Path)
    p.add_argument("work", type=Path, help="folder for the runs and atrophy_check.json")
    p.add_argument("--participant-label", nargs="+", default=["21", "22"], help="held-out participants")
    p.add_argument("--model", type=Path, help="model folder (default: the installed demo model)")
    p.add_argument("--spec", type=Path, default=ROOT / "examples" / "atrophy_spec.json")
    p.add_argument("--num-samples", type=int, default=3)
    p.add_argument("--random-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=10, help="sampling steps")
    p.add_argument("--device", default="auto")
    p.add_argument("--nprocs", type=int, default=2)
    p.add_argument("--omp-nthreads", type=int, default=2)
    a = p.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    a.spec = a.spec.resolve()
    results = [check_participant(a, label.removeprefix("sub-")) for label in a.participant_label]
    table = []
    for r in results:
        for target, reached, met in evaluate(r):
            table.append({"participant": r["label"], "target": target, "reached": reached, "met": met})
    model_dir = a.model or ROOT / "cor2vox_bids" / "data" / "demo_model"
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    print(f"model {model_dir} ({config.get('name', '?')}, weights sha256 {config.get('weights_sha256', '?')[:12]}, "
          f"{config.get('training', {}).get('steps', '?')} training steps)")
    print(compact_table(table))
    (a.work / "atrophy_check.json").write_text(json.dumps({"table": table, "results": results}, indent=2,
                                                          default=float) + "\n")
    return 0 if all(t["met"] is not False for t in table) else 1


if __name__ == "__main__":
    sys.exit(main())
