#!/usr/bin/env python
"""QC measure v2: what it resolves on phantoms, and its time on a demo participant (v1 in the same run).

    python benchmarks/bench_qc.py resolution [--seeds 3]
    python benchmarks/bench_qc.py demo WORK_DIR T1W     # WORK_DIR: hemispheres.npz, maps.npz, synth/real .nii.gz
    python benchmarks/bench_qc.py node NIPYPE_WORK_DIR [--repeat 3] [--json FILE]

``resolution``: the bumpy phantom of tests/qc (thickness 1.9–3.6 mm, voxel-integrated partial volume, PSF σ 1 mm,
±10 % bias field, SNR 20) at 1, 1.5 and 2 mm over several noise seeds: coverage, median and mean |error|, vertex r,
region r (12 sectors), median reported standard error; the v1 measure (white→pial vertex line, half-way levels
with blur correction) beside it. ``demo``: CPU and wall seconds of the thickness QC of one participant, v1
(synthetic + real on the grid, as before) and v2 (synthetic, real on the grid, real at its own resolution).
``node``: the whole QC node of one participant (``interfaces.qc.run_qc``: every thickness measure, similarity,
ribbon Dice, tissue means, the tables) on the inputs the QC node of a finished participant run got (its
``qc/_inputs.pklz`` under the Nipype work folder, e.g. kept by ``bench_participant.py --keep``), in this process
after importing the interface module (as a Nipype worker has it): the first call and the best of ``--repeat``
further calls, wall and CPU seconds (threads summed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "qc"))


def resolution(seeds: int) -> None:
    from cor2vox_bids.geometry.thickness import cortical_thickness
    from cor2vox_bids.qc.measure import calibrate_lines, measure_thickness, prepare_hemisphere
    from cor2vox_bids.qc.thickness import image_thickness
    from qc_phantoms import bumpy_phantom, bumpy_surfaces, sector_labels

    white, pial, f = bumpy_surfaces()
    fs = cortical_thickness(white, f, pial, f).astype(np.float64)
    labels, _ = sector_labels(white)
    hemi = prepare_hemisphere("L", white, f, pial, f)
    print("| voxel | measure | coverage | median error (mm) | vertex MAE (mm) | vertex r | region r | median se (mm) |")
    print("|---|---|---|---|---|---|---|---|")
    for spacing in (1.0, 1.5, 2.0):
        acc: dict[str, list] = {"v2": [], "v1": []}
        for seed in range(seeds):
            img, aff = bumpy_phantom(spacing=spacing, supersample=2 if spacing == 1.0 else 3, seed=seed)
            res = measure_thickness(img, aff, hemi, calibrate_lines(img, aff, [hemi]))
            v1 = image_thickness(img, aff, white, f, pial, f)
            for key, th, se in (("v2", res.thickness, res.se), ("v1", v1, None)):
                ok = np.isfinite(th)
                reg_i = [np.nanmean(np.where(ok, th, np.nan)[labels == i]) for i in range(12)]
                reg_s = [fs[(labels == i) & ok].mean() for i in range(12)]
                acc[key].append([ok.mean(), np.median(th[ok] - fs[ok]), np.mean(np.abs(th[ok] - fs[ok])),
                                 np.corrcoef(th[ok], fs[ok])[0, 1], np.corrcoef(reg_i, reg_s)[0, 1],
                                 np.median(se[ok]) if se is not None else np.nan])
        for key, vals in acc.items():
            m = np.array(vals)
            lo, hi = m.min(0), m.max(0)
            cells = [f"{a:.3f}–{b:.3f}" if abs(b - a) >= 5e-4 else f"{a:.3f}" for a, b in zip(lo, hi)]
            print(f"| {spacing:g} mm | {key} | " + " | ".join(cells) + " |")


def demo(work: Path, t1w: Path) -> None:
    import nibabel as nib

    from cor2vox_bids.geometry.surfaces import load_hemispheres
    from cor2vox_bids.qc.participant import measure_participant, thickness_summary
    from cor2vox_bids.qc.thickness import image_thickness

    hemis = load_hemispheres(work / "hemispheres.npz")
    with np.load(work / "maps.npz") as d:
        aff = d["affine"]
    load = lambda p: np.asarray(nib.load(str(p)).dataobj, dtype=np.float32)  # noqa: E731
    grid = {"synthetic": load(work / "synth.nii.gz"), "real": load(work / "real.nii.gz")}
    nat = nib.load(str(t1w))
    c0, w0 = time.process_time(), time.perf_counter()
    for img in grid.values():
        for h in hemis:
            image_thickness(img, aff, h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces)
    c1, w1 = time.process_time(), time.perf_counter()
    images = {k: (v, aff) for k, v in grid.items()}
    images["real_native"] = (np.asarray(nat.dataobj, dtype=np.float32), nat.affine)
    summary = thickness_summary(measure_participant(hemis, images))
    c2, w2 = time.process_time(), time.perf_counter()
    print(f"v1 thickness (2 images on the grid): {c1 - c0:.2f} CPU-s, {w1 - w0:.2f} s wall")
    print(f"v2 thickness (2 on the grid + real at native resolution): {c2 - c1:.2f} CPU-s, {w2 - w1:.2f} s wall")
    for kind in ("synthetic", "real", "real_native"):
        keys = ("pearson_r", "pearson_r_vertex", "coverage", "median_diff_mm", "slab_model")
        print(kind, {k: summary.get(f"{k}_{kind}") for k in keys})


def node(work: Path, repeat: int, json_path: Path | None) -> None:
    from nipype.utils.filemanip import loadpkl

    from cor2vox_bids.interfaces.qc import run_qc

    found = sorted(work.rglob("qc/_inputs.pklz"))
    if not found:
        raise SystemExit(f"no QC node inputs (qc/_inputs.pklz) under {work}")
    inp = loadpkl(found[0])

    def optional(key: str) -> Path | None:
        value = inp.get(key)
        return Path(value) if isinstance(value, str) else None

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1 + repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            run_qc(Path(inp["hemispheres"]), Path(inp["maps"]), [Path(p) for p in inp["synthetic"]],
                   optional("real"), Path(tmp) / f"qc{i}", real_native=optional("real_native"))
            times.append((time.perf_counter() - w0, time.process_time() - c0))
    first, rest = times[0], times[1:]
    best = (min(w for w, _ in rest), min(c for _, c in rest)) if rest else first
    print(f"QC node ({found[0].parent.parent.name}): first call {first[0]:.2f} s wall, {first[1]:.2f} CPU-s"
          + (f"; best of {len(rest)} more {best[0]:.2f} s wall, {best[1]:.2f} CPU-s" if rest else ""))
    if json_path is not None:
        json_path.write_text(json.dumps({"first": {"wall_s": first[0], "cpu_s": first[1]},
                                         "best": {"wall_s": best[0], "cpu_s": best[1]}, "repeat": len(rest)},
                                        indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("resolution")
    r.add_argument("--seeds", type=int, default=3)
    d = sub.add_parser("demo")
    d.add_argument("work", type=Path)
    d.add_argument("t1w", type=Path)
    n = sub.add_parser("node")
    n.add_argument("work", type=Path, help="a Nipype work folder holding a finished QC node")
    n.add_argument("--repeat", type=int, default=3)
    n.add_argument("--json", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    if args.what == "resolution":
        resolution(args.seeds)
    elif args.what == "node":
        node(args.work, args.repeat, args.json)
    else:
        demo(args.work, args.t1w)


if __name__ == "__main__":
    main()
