"""The three commands' work: build a model from a dataset, write sampled / interpolated virtual datasets,
and measure the model (held-out reconstruction error, slerp vs lerp)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingInputError, OutputError, ParticipantError, UsageError
from .data import Template, discover, load_template, participant_on_template
from .model import (
    HEMIS,
    ShapeModel,
    cortex_mask,
    fit_pca,
    interpolate_codes,
    mean_thickness_law,
    sample_codes,
    save_model,
)
from .virtual import decode_participant, finish_dataset, start_dataset, write_participant

LOGGER = logging.getLogger("cor2vox_bids.shape")
MIN_TRAINING = 3


def load_training(
    bids_dir: Path,
    fs_subjects_dir: Path | None,
    smriprep: Path | None,
    labels: list[str] | None,
    template: Template,
    log: Callable[[str], None] = print,
) -> tuple[list, list[tuple[str, str]]]:
    """Every selected participant on the template (progress through ``log``); failures are returned."""
    found, failed = discover(bids_dir, fs_subjects_dir, smriprep, labels)
    for key, why in failed:
        log(f"{key}: left out: {why}")
    loaded = []
    for i, (key, hemis) in enumerate(found, 1):
        try:
            p = participant_on_template(key, hemis, template)
        except ParticipantError as exc:
            log(f"[{i}/{len(found)}] {key}: left out: {exc}")
            failed.append((key, str(exc)))
            continue
        how = "resampled through sphere.reg" if p.resampled else "already on the template mesh"
        log(
            f"[{i}/{len(found)}] {key}: {how}; pose removed (rotation {p.rotation_deg:.2f} deg, shift "
            f"{p.translation_mm:.1f} mm; RMS to template {p.rms_before_mm:.2f} -> {p.rms_after_mm:.2f} mm)"
        )
        loaded.append(p)
    return loaded, failed


def fit_model(loaded: list, template: Template, n_components: int | None) -> ShapeModel:
    """Per-hemisphere PCA of the participants on the template."""
    cortex = {h: cortex_mask(template.annot[h][0], template.annot[h][2]) for h in HEMIS}
    hemis = {h: fit_pca(np.stack([p.features(h) for p in loaded]), n_components) for h in HEMIS}
    info = {
        "Pose": {
            p.key: {
                "rotation_deg": round(p.rotation_deg, 4),
                "shift_mm": round(p.translation_mm, 4),
                "rms_to_template_mm": round(p.rms_after_mm, 4),
                "resampled": p.resampled,
            }
            for p in loaded
        },
        "TrainingMeanThickness": {
            p.key: round(float(np.mean(np.concatenate([p.thickness[h][cortex[h]] for h in HEMIS]))), 4) for p in loaded
        },
    }
    return ShapeModel(
        hemis,
        template.describe(),
        dict(template.faces),
        dict(template.sphere),
        dict(template.annot),
        [p.key for p in loaded],
        info,
    )


def build(
    bids_dir: Path,
    model_dir: Path,
    fs_subjects_dir: Path | None = None,
    smriprep: Path | None = None,
    labels: list[str] | None = None,
    n_components: int | None = None,
    template: str = "fsaverage5",
    log: Callable[[str], None] = print,
) -> tuple[ShapeModel, list[tuple[str, str]]]:
    """``cor2vox-shape build``: returns the model and the participants left out."""
    tpl = load_template(template)
    log(f"template {tpl.name}: {len(tpl.sphere['L'])} vertices per hemisphere")
    loaded, failed = load_training(bids_dir, fs_subjects_dir, smriprep, labels, tpl, log)
    if len(loaded) < MIN_TRAINING:
        raise MissingInputError(
            f"a shape model needs at least {MIN_TRAINING} participants with usable surfaces; "
            f"{len(loaded)} found ({len(failed)} left out)",
            bids_dir,
        )
    if n_components is not None and n_components > len(loaded) - 1:
        log(
            f"--components {n_components} is more than the {len(loaded) - 1} that {len(loaded)} participants "
            f"support; keeping {len(loaded) - 1}"
        )
    model = fit_model(loaded, tpl, n_components)
    try:
        files = save_model(model, model_dir)
    except OSError as exc:
        raise OutputError(f"cannot write the shape model ({exc})", model_dir) from None
    for h in HEMIS:
        p = model.hemis[h]
        ratio = np.cumsum(p.variance) / p.total_variance
        log(
            f"hemi-{h}: {p.n_components} components, cumulative explained variance "
            + ", ".join(f"{k}: {ratio[k - 1]:.1%}" for k in sorted({1, 2, 5, p.n_components}) if k <= p.n_components)
        )
    log("wrote " + ", ".join(str(f) for f in files))
    return model, failed


def prepare_output(out: Path) -> None:
    """The virtual dataset goes into a new or empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError("the output folder exists and is not empty; give a new folder", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder ({exc})", out) from None


def write_virtual(
    out: Path,
    model: ShapeModel,
    model_dir: Path,
    items: list[tuple[dict, dict]],
    how: str,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Reconstruct, check and write each (row, codes) item; returns per-participant QC."""
    prepare_output(out)
    try:
        start_dataset(out, model, model_dir, how)
        rows, qc = [], {}
        for i, (row, codes) in enumerate(items, 1):
            label = row["participant_id"][4:]
            surfaces = decode_participant(model, codes)
            q = write_participant(out, label, model, surfaces)
            selfx = sum(q[h]["white_self_intersections"] + q[h]["pial_self_intersections"] for h in HEMIS)
            reduced = sum(q[h]["vertices_thickness_reduced"] for h in HEMIS)
            row.update({f"latent_norm_{h}": float(np.linalg.norm(codes[h])) for h in HEMIS})
            row.update(
                {
                    "mean_thickness": q["mean_thickness"],
                    "self_intersections": selfx,
                    "thickness_reduced_vertices": reduced,
                }
            )
            rows.append(row)
            qc[row["participant_id"]] = q
            cross = sum(q[h]["white_pial_crossings"] for h in HEMIS)
            outside = sum(q[h]["white_vertices_outside_pial"] for h in HEMIS)
            log(
                f"[{i}/{len(items)}] {row['participant_id']}: mean thickness {q['mean_thickness']:.2f} mm; "
                f"self-intersections {selfx}, white/pial crossings {cross}, white outside pial {outside}, "
                f"L/R pial crossings {q['L']['left_right_pial_crossings_before']} -> "
                f"{q['L']['left_right_pial_crossings']} (shift {q['L']['left_right_shift_mm']:.1f} mm); "
                f"thickness reduced at {reduced} vertices"
            )
        finish_dataset(out, rows, qc)
    except OSError as exc:
        raise OutputError(f"cannot write the virtual dataset ({exc})", out) from None
    return qc


def sample(
    model: ShapeModel,
    model_dir: Path,
    out: Path,
    n: int,
    seed: int,
    scale: float = 1.0,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """``cor2vox-shape sample``: ``n`` participants from ``z ~ N(0, I) * scale``."""
    codes = sample_codes(model, n, seed, scale)
    items = [
        ({"participant_id": f"sub-v{i + 1:03d}", "method": "sample", "seed": seed, "scale": float(scale)}, c)
        for i, c in enumerate(codes)
    ]
    law = mean_thickness_law(model, scale)
    expect = (
        f"Model-predicted mean thickness N({law['mean']:.3f}, {law['sd']:.3f}^2) mm; probability that one sample "
        f"falls outside the training range {law['training_min']:.3f}-{law['training_max']:.3f} mm "
        f"({law['n_training']} participants): {law['p_outside_training_range']:.3f}."
    )
    log(expect)
    how = f"Sampled: {n} latent codes z ~ N(0, I) x {scale:g}, seed {seed}. {expect}"
    return write_virtual(out, model, model_dir, items, how, log)


def interpolate(
    model: ShapeModel,
    model_dir: Path,
    out: Path,
    src: str,
    dst: str,
    steps: int,
    mode: str,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """``cor2vox-shape interpolate``: ``steps`` participants from ``src`` to ``dst`` (training participants)."""
    keys = [k if k.startswith("sub-") else f"sub-{k}" for k in (src, dst)]
    unknown = [k for k in keys if k not in model.training]
    if unknown:
        raise UsageError(
            f"{', '.join(unknown)} not in the model's training set; choose from {', '.join(model.training)}"
        )
    codes = interpolate_codes(model, keys[0], keys[1], steps, mode)
    items = [
        ({"participant_id": f"sub-v{i + 1:03d}", "method": mode, "source": keys[0], "target": keys[1], "t": t}, c)
        for i, (t, c) in enumerate(codes)
    ]
    how = f"Interpolated ({mode}) in latent space from {keys[0]} to {keys[1]} in {steps} steps."
    return write_virtual(out, model, model_dir, items, how, log)


def holdout_errors(loaded: list, ks: list[int]) -> dict[str, Any]:
    """Leave-one-out: fit on all but one participant, reconstruct the held-out one with k components.

    Returns per k the RMS vertex error of the mid-thickness surface (mm) and the RMS thickness error (mm),
    averaged over held-out participants and hemispheres; k = 0 is the training mean.
    """
    errors = {k: {"mid_rms_mm": [], "thickness_rms_mm": []} for k in ks}
    for i in range(len(loaded)):
        train = [p for j, p in enumerate(loaded) if j != i]
        for h in HEMIS:
            pca = fit_pca(np.stack([p.features(h) for p in train]))
            x = loaded[i].features(h)
            code = pca.encode(x)[0]
            for k in ks:
                kk = min(k, pca.n_components)
                rec = pca.mean if kk == 0 else pca.truncated(kk).decode(code[:kk])[0]
                d = (rec - x).reshape(-1, 4)
                errors[k]["mid_rms_mm"].append(float(np.sqrt(np.mean(np.sum(d[:, :3] ** 2, axis=1)))))
                errors[k]["thickness_rms_mm"].append(float(np.sqrt(np.mean(d[:, 3] ** 2))))
    return {k: {m: float(np.mean(v)) for m, v in e.items()} for k, e in errors.items()}


def interpolation_stats(model: ShapeModel, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Midpoints of slerp and lerp for training pairs, and the two ends: latent norm (both hemispheres'
    whitened codes together), thickness spread over vertices (std) and thickness deviation from the model's
    mean thickness map (RMS over vertices, mm): how much individual variation a shape keeps."""
    mean_t = np.concatenate([model.hemis[h].mean.reshape(-1, 4)[:, 3] for h in HEMIS])

    def describe(codes: dict[str, np.ndarray]) -> tuple[float, float, float]:
        thick = np.concatenate([model.hemis[h].decode(codes[h])[0].reshape(-1, 4)[:, 3] for h in HEMIS])
        norm = float(np.sqrt(sum(np.sum(codes[h] ** 2) for h in HEMIS)))
        return norm, float(thick.std()), float(np.sqrt(np.mean((thick - mean_t) ** 2)))

    rows = []
    for a, b in pairs:
        row: dict[str, Any] = {"from": a, "to": b}
        for mode in ("slerp", "lerp"):
            ((_, codes),) = interpolate_codes(model, a, b, 1, mode)
            row[f"{mode}_norm"], row[f"{mode}_thickness_std"], row[f"{mode}_thickness_dev"] = describe(codes)
        for tag, key in (("from", a), ("to", b)):
            i = model.training.index(key)
            codes = {h: model.hemis[h].train_codes[i] for h in HEMIS}
            row[f"{tag}_norm"], row[f"{tag}_thickness_std"], row[f"{tag}_thickness_dev"] = describe(codes)
        rows.append(row)
    return rows
