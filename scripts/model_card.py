#!/usr/bin/env python
"""Measure a trained model on held-out participants with the QC code and write its model card.

    python scripts/model_card.py MODEL_DIR BIDS_DIR --participant-label 15 16 [--work WORK] [--verify]

For each held-out participant: synthesize one image (seed 0) with the sampling steps the BIDS App uses for the model
(``sampling.steps`` in its config.json, else 10),
run the same QC (``interfaces.qc.run_qc``) with the participant's real T1w, and compare with a trivial baseline: the
undeformed template T1 (fsaverage5, placed in the participant's scanner frame) against the same real image.
Writes ``model_card.json`` and ``model_card.md`` into MODEL_DIR. Every number of the card is computed here: the
held-out table from this run, the training lines from the model's ``config.json`` and ``train_log.tsv``. With
``--verify`` nothing is written: the held-out numbers are recomputed and compared with the stored
``model_card.json`` (exit 1 when one differs by more than 1e-6 relative, or is missing).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from cor2vox_bids import __version__
from cor2vox_bids.bids.inputs import collect_inputs
from cor2vox_bids.diffusion.checkpoint import file_sha256, verify_model
from cor2vox_bids.execution.model import model_sampling_steps
from cor2vox_bids.geometry.surfaces import load_hemispheres, save_hemispheres
from cor2vox_bids.interfaces.qc import run_qc
from cor2vox_bids.interfaces.surfaces import load_and_validate, with_mesh_thickness
from cor2vox_bids.interfaces.synthesis import make_conditioning, read_maps, real_on_grid, synthesize_sample
from cor2vox_bids.qc.layout import QC_FOLDER
from cor2vox_bids.settings import Settings


def region_tissue_order(image: np.ndarray, affine: np.ndarray, hemis: list, depth_mm: float) -> dict:
    """Per DK region: mean intensity just inside white (WM), mid-cortex (GM), just outside pial (CSF)."""
    from scipy import ndimage

    inv = np.linalg.inv(affine)
    out = {"regions": 0, "ordered": 0, "violations": []}
    for h in hemis:
        hemi = h.hemi
        w, p = h.white.vertices, h.pial.vertices
        d = p - w
        n = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
        pts = {"wm": w - depth_mm * n, "gm": 0.5 * (w + p), "csf": p + depth_mm * n}
        vals = {k: ndimage.map_coordinates(image, (v @ inv[:3, :3].T + inv[:3, 3]).T, order=1) for k, v in pts.items()}
        names = [str(x) for x in h.names]
        for idx, name in enumerate(names):
            if name in ("unknown", "corpuscallosum"):
                continue
            sel = h.labels == idx
            if not sel.any():
                continue
            m = {k: float(v[sel].mean()) for k, v in vals.items()}
            out["regions"] += 1
            if m["wm"] > m["gm"] > m["csf"]:
                out["ordered"] += 1
            else:
                out["violations"].append(f"{hemi}:{name}")
    return out


def template_baseline(orig_mgz: Path, maps_npz: Path, out: Path) -> Path:
    """The undeformed template T1 placed in the participant's scanner frame, on the model grid, in [0, 1]."""
    from cor2vox_bids.demodata import fsaverage5_dir

    tpl = nib.load(str(fsaverage5_dir() / "mri" / "T1.mgz"))
    orig = nib.load(str(orig_mgz))
    c_ras_shift = orig.header.get_vox2ras() @ np.linalg.inv(orig.header.get_vox2ras_tkr())
    placed = nib.Nifti1Image(np.asarray(tpl.dataobj, dtype=np.float32), c_ras_shift @ tpl.header.get_vox2ras_tkr())
    tmp = out.with_name("template_in_scanner.nii.gz")
    nib.save(placed, str(tmp))
    return real_on_grid(tmp, maps_npz, out)


def evaluate(model: Path, bids: Path, labels: list[str], work: Path) -> list[dict]:
    from cor2vox_bids.qc.similarity import head_mask_from_intensity, similarity

    settings = Settings(bids_dir=bids, output_dir=work / "unused", analysis_level="participant",
                        participant_label=labels, skip_bids_validation=True)
    ready, failed, _ = collect_inputs(settings)
    if failed:
        raise SystemExit(f"inputs missing: {[f.message for f in failed]}")
    cfg = verify_model(model)
    results = []
    for p in ready:
        d = work / p.key
        d.mkdir(parents=True, exist_ok=True)
        hemis, _ = load_and_validate(p.hemis, p.source, p.orig, p.t1w)
        save_hemispheres(d / "hemispheres.npz", with_mesh_thickness(hemis))
        make_conditioning(d / "hemispheres.npz", cfg["grid"]["shape"], cfg["grid"]["spacing_mm"], d / "maps.npz")
        t0 = time.perf_counter()
        synth = synthesize_sample(d / "maps.npz", model, 0, model_sampling_steps(cfg), 1.0, "cpu", d / "synth.nii.gz")
        seconds = time.perf_counter() - t0
        real = real_on_grid(p.t1w, d / "maps.npz", d / "real.nii.gz")
        qc_dir = run_qc(d / "hemispheres.npz", d / "maps.npz", [synth], real, d / "qc", real_native=p.t1w)
        summary = json.loads(QC_FOLDER.path(qc_dir, "summary").read_text())
        maps, affine = read_maps(d / "maps.npz")
        base = template_baseline(p.orig, d / "maps.npz", d / "template.nii.gz")
        real_img = np.asarray(nib.load(str(real)).dataobj, dtype=np.float32)
        baseline = similarity(np.asarray(nib.load(str(base)).dataobj, dtype=np.float32), real_img,
                              maps["sdf_pial"] < 0, head_mask_from_intensity(real_img))
        stored = load_hemispheres(d / "hemispheres.npz")
        depth = float(cfg["grid"]["spacing_mm"])
        synth_img = np.asarray(nib.load(str(synth)).dataobj, dtype=np.float32)
        order_syn = region_tissue_order(synth_img, affine, stored, depth)
        order_real = region_tissue_order(real_img, affine, stored, depth)
        results.append({"participant": p.key, "seconds_synthesis": seconds, **summary,
                        "baseline_ssim_brain": baseline["ssim_brain"], "baseline_psnr_brain": baseline["psnr_brain"],
                        "dk_regions_ordered_synthetic": f"{order_syn['ordered']}/{order_syn['regions']}",
                        "dk_order_violations_synthetic": order_syn["violations"],
                        "dk_regions_ordered_real": f"{order_real['ordered']}/{order_real['regions']}"})
    condition_swap(results, work)
    return results


def condition_swap(results: list[dict], work: Path) -> None:
    """Feed one participant's surfaces, compare with another's image: the image must follow the cortex.

    For each held-out participant b and every other held-out participant a, the synthetic image made from a's
    surfaces is compared with b's real image (each on its own model grid: RAS-aligned, same shape and spacing, centred
    on the pial surfaces, so the arrays overlay up to anatomy), inside b's brain. ``swap_ssim_brain`` is the mean over
    a; ``swap_ssim_drop`` = b's own ``ssim_brain`` minus it.
    """
    from cor2vox_bids.qc.similarity import head_mask_from_intensity, similarity

    if len(results) < 2:
        return
    images = {}
    for r in results:
        d = work / r["participant"]
        maps, _ = read_maps(d / "maps.npz")
        real = np.asarray(nib.load(str(d / "real.nii.gz")).dataobj, dtype=np.float32)
        images[r["participant"]] = (np.asarray(nib.load(str(d / "synth.nii.gz")).dataobj, dtype=np.float32), real,
                                    maps["sdf_pial"] < 0)
    for r in results:
        _, real_b, brain_b = images[r["participant"]]
        swaps = [similarity(synth_a, real_b, brain_b, head_mask_from_intensity(real_b))["ssim_brain"]
                 for a, (synth_a, _, _) in images.items() if a != r["participant"]]
        r["swap_ssim_brain"] = float(np.mean(swaps))
        r["swap_ssim_drop"] = float(r["ssim_brain"] - r["swap_ssim_brain"])


def fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


IMAGE_KINDS = (("synthetic", "synthetic (model grid)"), ("real", "real T1w on the model grid"),
               ("real_native", "real T1w at its own resolution"))


def thickness_table(results: list[dict]) -> list[str]:
    """One row per participant and image: coverage first, then the agreement the coverage allows."""
    head = ["participant", "image", "slab model", "coverage", "region r", "vertex r", "median image − surface (mm)",
            "median |image − surface| (mm)", "region MAD (mm)", "blur σ (mm)", "misfit", "unresolved"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for kind, label in IMAGE_KINDS:
            if f"coverage_{kind}" not in r:
                continue
            region_r = fmt(r.get(f"pearson_r_{kind}"))
            if r.get(f"pearson_r_note_{kind}"):
                region_r = f"n/a ({r[f'pearson_r_note_{kind}']})"
            cells = [r["participant"], label, r.get(f"slab_model_{kind}", "n/a"), fmt(r.get(f"coverage_{kind}")),
                     region_r, fmt(r.get(f"pearson_r_vertex_{kind}")), fmt(r.get(f"median_diff_mm_{kind}")),
                     fmt(r.get(f"median_abs_diff_mm_vertex_{kind}")), fmt(r.get(f"mean_abs_diff_mm_{kind}")),
                     fmt(r.get(f"blur_sigma_mm_{kind}")), fmt(r.get(f"fraction_misfit_{kind}")),
                     fmt(r.get(f"fraction_unresolved_{kind}"))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def verify(model: Path, results: list[dict]) -> int:
    """Compare recomputed held-out numbers with the stored card; print every difference; 0 when all agree."""
    stored = {r["participant"]: r for r in json.loads((model / "model_card.json").read_text())["held_out"]}
    bad = 0
    for r in results:
        old = stored.get(r["participant"])
        if old is None:
            print(f"{r['participant']}: not in the stored card")
            bad += 1
            continue
        for key, value in r.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or key == "seconds_synthesis":
                continue
            ref = old.get(key)
            same = (isinstance(ref, (int, float)) and (math.isclose(value, ref, rel_tol=1e-6, abs_tol=1e-9)
                                                       or (math.isnan(value) and math.isnan(ref))))
            if ref is None and isinstance(value, float) and not math.isfinite(value):
                same = True
            if not same:
                print(f"{r['participant']} {key}: card {ref}, rerun {value}")
                bad += 1
    print("every held-out number of the card reproduced" if not bad else f"{bad} numbers differ")
    return 1 if bad else 0


def write_card(model: Path, results: list[dict]) -> None:
    cfg = json.loads((model / "config.json").read_text())
    log = model / "train_log.tsv"
    run = json.loads((model / "training_run.json").read_text()) if (model / "training_run.json").is_file() else {}
    rows = [ln.split("\t") for ln in log.read_text().splitlines()] if log.is_file() else []
    train_seconds = float(rows[-1][rows[0].index("seconds")]) if len(rows) > 1 else float("nan")
    card = {"name": cfg["name"], "demo": cfg["demo"], "code_version": __version__,
            "weights_sha256": file_sha256(model / "model.safetensors"), "architecture": cfg["architecture"],
            "grid": cfg["grid"], "training": cfg.get("training", {}), "training_run": run.get("settings", {}),
            "training_wall_seconds": train_seconds,
            "held_out": results}
    (model / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    cols = ["participant", "ssim_brain", "baseline_ssim_brain", "swap_ssim_brain", "swap_ssim_drop", "psnr_brain",
            "mae_brain", "ssim_head",
            "ribbon_dice_synthetic", "ribbon_dice_real", "ribbon_soft_dice_synthetic", "ribbon_soft_dice_real",
            "dk_regions_ordered_synthetic", "dk_regions_ordered_real",
            "seconds_synthesis"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(fmt(r.get(c, "n/a")) for c in cols) + " |" for r in results]
    thick = thickness_table(results)
    tr = cfg.get("training", {})
    head = rows[0] if rows else []
    recs = [dict(zip(head, r)) for r in rows[1:]]
    s_per_step = [1.0 / float(r["steps_per_s"]) for r in recs if r.get("steps_per_s")]
    median_step = float(np.median(s_per_step)) if s_per_step else float("nan")
    val = ["| step | training s | val SSIM (EMA) | val SSIM (raw weights) |", "|---|---|---|---|"]
    val += [f"| {r['step']} | {float(r['seconds']):.0f} | {r['val_ssim']} | {r.get('val_ssim_raw') or 'n/a'} |"
            for r in recs if r.get("val_ssim")]
    if any(r.get("val_ssim") and not r.get("val_ssim_raw") for r in recs):
        val.append("\nRows without a raw-weights value were logged by an earlier part of this run (same seed, same "
                   "raw weights) under other EMA settings; the training was resumed from its state with the current "
                   "ones, whose EMA copies the raw weights until `ema_start`, so the shipped weights are by "
                   "construction those of a from-scratch run (not re-run to check; docs/training.md).")
    init = tr.get("init_from") or {}
    init_line = (f"- Initialised from `{init.get('name')}` (weights sha256 `{init.get('weights_sha256')}`, "
                 f"{init.get('steps')} steps) with `cor2vox-train --init-from`: fine-tuned, not trained from scratch\n"
                 if init else "")
    text = f"""# Model card: {cfg['name']} — DEMO MODEL

**This is a demonstration model.** It was trained by `cor2vox-train` on pseudo-participants made from one template
brain (FreeSurfer 7.3.2 `fsaverage5`, modified; FreeSurfer licence, see `LICENSE.FreeSurfer.txt` beside this card):
each has a smooth random regional thickness change, a T1w rendered from its own surfaces and fsaverage's `aseg`,
and a smooth random deformation (`cor2vox-demo-data`). It shows that the pipeline works end to end on a laptop; it
has never seen a real individual brain and must not be used for research conclusions. Train your own model
(`docs/training.md`).

- Code version: {__version__}; weights sha256 `{card['weights_sha256']}`
- Architecture: {json.dumps(cfg['architecture'])}
- Grid: {cfg['grid']['shape']} at {cfg['grid']['spacing_mm']} mm ({cfg['grid']['placement']})
- Training data: {len(tr.get('participants_train', []))} pseudo-participants
  ({', '.join(tr.get('participants_train', []))}); held out: {', '.join(tr.get('participants_validation', []))}
- Optimisation: {tr.get('steps')} steps, batch {tr.get('batch_size')}, lr {tr.get('lr')}, EMA decay
  {tr.get('ema_decay')} every {tr.get('ema_every')} steps from step {tr.get('ema_start')}, seed {tr.get('seed')},
  precision {tr.get('precision')}; cumulative training wall time {fmt(train_seconds)} s on 2 CPU cores (median
  {fmt(median_step)} s per step; the cores were partly shared with other work)
{init_line}- Loss curve: `loss_curve.png`; training log: `train_log.tsv`

## Validation during training

Whole-volume SSIM (both images in [0, 1]) of a 10-step sample (seed {tr.get('seed')}) vs the real image, mean of the
held-out participants, from the EMA weights (shipped) and from the raw training weights:

{chr(10).join(val)}

## Held-out participants (measured by `scripts/model_card.py` with the QC code)

Each synthesized with seed 0 and {model_sampling_steps(cfg)} sampling steps (the model's default, `sampling.steps` in
config.json), as the BIDS App does.

SSIM/PSNR/MAE: synthetic vs the participant's real T1w on the model grid, inside the pial surfaces (brain) or the
head. Baseline: the undeformed template T1 placed in the participant's scanner frame vs the same real image.
Condition swap: the image synthesized from another held-out participant's surfaces vs this participant's real image
(inside this participant's brain); the drop from `ssim_brain` shows that the image follows the cortex it is given.
Ribbon Dice: grey-matter class of a 3-class mixture fitted inside the pial surface + 3 mm vs the surfaces' ribbon
(hard labels: at {cfg['grid']['spacing_mm']} mm most ribbon voxels are partly WM or CSF, which bounds it well below 1
even for an image rendered from the surfaces). Soft Dice: the same comparison with partial volumes — the ribbon's
voxel fractions from the SDFs against the image's grey-matter fractions from a partial-volume mixture (CSF, GM, WM
and their adjacent mixtures, with a smooth bias field), fuzzy Dice over the voxels within 3 mm of the ribbon
(docs/qc.md).
DK ordered: regions whose mean intensity is WM > GM > CSF (sampled {cfg['grid']['spacing_mm']} mm inside white,
mid-cortex, {cfg['grid']['spacing_mm']} mm outside pial).

{chr(10).join(table)}

### Cortical thickness measured in the images (docs/qc.md)

Thickness with FreeSurfer's definition measured in each image by fitting a blurred grey-matter slab along both of
FreeSurfer's lines per vertex (blur σ: the value whose slab fits explain the image's profiles best), compared with
the surfaces' thickness. Coverage: fraction of cortex vertices the
measure resolves (the slab model fits and the thickness has a standard error ≤ 0.5 mm); region r (68 DK regions,
regions covered ≥ 50 %) is reported only when at least half of the cortex was measured, otherwise n/a with the
coverage. "slab model" says whether the image shows a cortical slab at all (else nothing is measured and the reason
is given). The real T1w rows show what the data allow: the coverage and agreement the measure reaches on the
participant's own image, on the model grid and at its own resolution.

{chr(10).join(thick)}

Reproduce: `bash scripts/train_demo_model.sh` (fine-tunes the model it was initialised from, named above — it is in
this repository's history; `INIT=` trains from scratch; same weights for the same seed on the same CPU kind).
"""
    (model / "model_card.md").write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("bids", type=Path)
    ap.add_argument("--participant-label", nargs="+", required=True)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--verify", action="store_true", help="recompute and compare with the stored card; write nothing")
    args = ap.parse_args()
    work = args.work or args.model.parent / "model_card_work"
    results = evaluate(args.model, args.bids, args.participant_label, work)
    if args.verify:
        raise SystemExit(verify(args.model, results))
    write_card(args.model, results)
    print((args.model / "model_card.md").read_text())


if __name__ == "__main__":
    main()
