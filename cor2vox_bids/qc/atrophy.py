"""QC of an atrophy series and of seed variability: prescribed vs measured thinning, seed standard deviation.

Prescribed vs measured, per step, hemisphere and region (every DK region plus the spec's label-file regions):

* ``prescribed_mm`` — mean over the region's vertices of the per-vertex prescription at that step (the spec's value
  for a region in the spec; what the falloff spills into for the others);
* ``surface_mm`` — mean over the region's vertices of baseline minus thinned FreeSurfer thickness
  (:func:`cor2vox_bids.geometry.cortical_thickness` on the baseline and on the thinned pial surface);
* ``image_mm`` — mean over the region's vertices of the thickness measured in the baseline image minus the
  thickness measured in the step image (:func:`cor2vox_bids.qc.thickness.image_thickness`), both along the
  **baseline** white→pial lines, so the measurement does not see the prescription; vertices where either
  measurement fails are left out (``image_coverage`` says how many remain).

Seed variability: :func:`seed_std` is the voxel-wise sample standard deviation (ddof = 1) across the samples
synthesised from one anatomy with different seeds; :func:`seed_std_summary` compares its mean inside the cortical
ribbon with the rest of the brain (inside the pial surfaces, outside the ribbon) and with everything outside the
pial surfaces.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .thickness import image_thickness

__all__ = [
    "ATROPHY_COLUMNS",
    "ATROPHY_TSV_DICTIONARY",
    "atrophy_rows",
    "atrophy_targets",
    "dk_region_masks",
    "image_thinning",
    "measured_image_thickness",
    "plot_atrophy_series",
    "plot_prescribed_vs_measured",
    "read_atrophy_tsv",
    "seed_std",
    "seed_std_summary",
    "surface_thinning",
    "write_atrophy_tsv",
]

Row = dict[str, Any]

#: column order of ``sub-<label>_desc-atrophy_qc.tsv``
ATROPHY_COLUMNS = (
    "step", "hemi", "region", "in_spec", "prescribed_mm", "surface_mm", "image_mm", "n_vertices", "image_coverage",
)

#: BIDS-style data dictionary (the TSV's JSON sidecar)
ATROPHY_TSV_DICTIONARY: dict[str, dict[str, Any]] = {
    "step": {"LongName": "Atrophy step", "Description": "Step k of the series (1..N); the baseline is step 0.",
             "Units": "index"},
    "hemi": {"LongName": "Hemisphere", "Description": "L (left) or R (right).",
             "Levels": {"L": "left hemisphere", "R": "right hemisphere"}},
    "region": {"LongName": "Cortical region",
               "Description": "Desikan-Killiany region name, or the name of a FreeSurfer .label file of the spec."},
    "in_spec": {"LongName": "Prescribed by the spec",
                "Description": "true when the atrophy spec prescribes thinning for this region; false for regions "
                               "that only receive the falloff (or nothing).",
                "Levels": {"true": "named in the spec", "false": "not named in the spec"}},
    "prescribed_mm": {"LongName": "Prescribed thinning",
                      "Description": "Mean over the region's vertices of the prescribed decrease of cortical "
                                     "thickness at this step (falloff included).", "Units": "mm"},
    "surface_mm": {"LongName": "Surface-measured thinning",
                   "Description": "Mean over the region's vertices of baseline minus thinned cortical thickness "
                                  "(FreeSurfer definition, from the white and pial surfaces).", "Units": "mm"},
    "image_mm": {"LongName": "Image-measured thinning",
                 "Description": "Mean over the region's vertices of the thickness measured in the baseline image "
                                "minus the thickness measured in the step image, both along the baseline "
                                "white-to-pial lines; vertices where either measurement failed are left out; n/a "
                                "when none remains.", "Units": "mm"},
    "n_vertices": {"LongName": "Number of vertices", "Description": "Vertices in the region.", "Units": "count"},
    "image_coverage": {"LongName": "Image measurement coverage",
                       "Description": "Fraction of the region's vertices measured in both images.",
                       "Units": "fraction"},
}


# --------------------------------------------------------------------------------------------------------------
# measurements


def surface_thinning(
    white_vertices: NDArray,
    white_faces: NDArray,
    pial_vertices: NDArray,
    thinned_vertices: NDArray,
    pial_faces: NDArray,
    baseline_thickness: NDArray | None = None,
) -> NDArray[np.float64]:
    """Per-vertex baseline minus thinned cortical thickness (mm), FreeSurfer definition."""
    from cor2vox_bids.geometry import cortical_thickness

    base = (cortical_thickness(white_vertices, white_faces, pial_vertices, pial_faces)
            if baseline_thickness is None else baseline_thickness)
    thinned = cortical_thickness(white_vertices, white_faces, thinned_vertices, pial_faces)
    return np.asarray(base, dtype=np.float64) - np.asarray(thinned, dtype=np.float64)


def measured_image_thickness(
    image: NDArray, affine: NDArray, white_vertices: NDArray, white_faces: NDArray, pial_vertices: NDArray,
    pial_faces: NDArray,
) -> NDArray[np.float64]:
    """Per-vertex thickness measured in ``image`` along the given white→pial lines (NaN where it fails)."""
    out = image_thickness(image, affine, white_vertices, white_faces, pial_vertices, pial_faces)
    out = getattr(out, "thickness", out)  # tolerate a result object carrying per-vertex thickness
    return np.asarray(out, dtype=np.float64)


def image_thinning(
    baseline_image: NDArray,
    step_image: NDArray,
    affine: NDArray,
    white_vertices: NDArray,
    white_faces: NDArray,
    pial_vertices: NDArray,
    pial_faces: NDArray,
    baseline_image_thickness: NDArray | None = None,
) -> NDArray[np.float64]:
    """Per-vertex thickness in the baseline image minus thickness in the step image (mm), both measured along
    the **baseline** surfaces' white→pial lines; NaN where either measurement fails."""
    base = (measured_image_thickness(baseline_image, affine, white_vertices, white_faces, pial_vertices, pial_faces)
            if baseline_image_thickness is None else np.asarray(baseline_image_thickness, dtype=np.float64))
    step = measured_image_thickness(step_image, affine, white_vertices, white_faces, pial_vertices, pial_faces)
    return base - step


def dk_region_masks(labels: NDArray | None, names: Sequence[str] | None) -> dict[str, NDArray[np.bool_]]:
    """Vertex masks of the 34 DK regions present in an annotation (regions without vertices left out)."""
    from cor2vox_bids.geometry import DK_REGIONS

    if labels is None or names is None:
        return {}
    decoded = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    lab = np.asarray(labels)
    out = {}
    for region in DK_REGIONS:
        if region in decoded:
            mask = lab == decoded.index(region)
            if mask.any():
                out[region] = mask
    return out


def _mean(values: NDArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def atrophy_rows(
    step: int,
    hemi: str,
    regions: Mapping[str, NDArray[np.bool_]],
    in_spec: Iterable[str],
    prescribed_mm: NDArray,
    surface_mm: NDArray,
    image_mm: NDArray | None,
) -> list[Row]:
    """One row per region (in ``regions`` order) from per-vertex prescription, surface and image thinning."""
    spec_names = set(in_spec)
    pres = np.asarray(prescribed_mm, dtype=np.float64)
    surf = np.asarray(surface_mm, dtype=np.float64)
    img = None if image_mm is None else np.asarray(image_mm, dtype=np.float64)
    rows = []
    for name, mask in regions.items():
        m = np.asarray(mask, dtype=bool)
        n = int(m.sum())
        measured = 0 if img is None else int(np.isfinite(img[m]).sum())
        rows.append({
            "step": int(step),
            "hemi": hemi,
            "region": name,
            "in_spec": name in spec_names,
            "prescribed_mm": float(pres[m].mean()) if n else float("nan"),
            "surface_mm": _mean(surf[m]),
            "image_mm": float("nan") if img is None else _mean(img[m]),
            "n_vertices": n,
            "image_coverage": float(measured / n) if (n and img is not None) else float("nan"),
        })
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def write_atrophy_tsv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write the prescribed-vs-measured rows as a BIDS TSV (``n/a`` for missing values)."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        fh.write("\t".join(ATROPHY_COLUMNS) + "\n")
        for row in rows:
            fh.write("\t".join(_fmt(row[c]) for c in ATROPHY_COLUMNS) + "\n")
    return path


def read_atrophy_tsv(path: str | Path) -> list[Row]:
    """Read a TSV written by :func:`write_atrophy_tsv` back into typed rows."""
    rows = []
    with Path(path).open(newline="") as fh:
        for raw in csv.DictReader(fh, delimiter="\t"):
            row: Row = {}
            for key, value in raw.items():
                if key in ("step", "n_vertices"):
                    row[key] = int(value)
                elif key == "in_spec":
                    row[key] = value == "true"
                elif key in ("hemi", "region"):
                    row[key] = value
                else:
                    row[key] = float("nan") if value == "n/a" else float(value)
            rows.append(row)
    return rows


def atrophy_targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's targets from the rows of the **last** step: relative error of surface and image thinning in
    the prescribed regions, and the largest |image change| among regions not in the spec."""
    if not rows:
        return {}
    last = max(int(r["step"]) for r in rows)
    final = [r for r in rows if int(r["step"]) == last]
    spec_rows = [r for r in final if r["in_spec"] and r["prescribed_mm"] > 0]

    def rel(key: str) -> list[dict[str, Any]]:
        return [{"hemi": r["hemi"], "region": r["region"], "prescribed_mm": r["prescribed_mm"],
                 "measured_mm": r[key], "relative_error": (r[key] - r["prescribed_mm"]) / r["prescribed_mm"]}
                for r in spec_rows]

    others = [abs(r["image_mm"]) for r in final if not r["in_spec"] and np.isfinite(r["image_mm"])]
    others_surface = [abs(r["surface_mm"]) for r in final if not r["in_spec"] and np.isfinite(r["surface_mm"])]
    return {
        "step": last,
        "surface": rel("surface_mm"),
        "image": rel("image_mm"),
        "max_abs_image_mm_not_prescribed": max(others) if others else float("nan"),
        "median_abs_image_mm_not_prescribed": float(np.median(others)) if others else float("nan"),
        "max_abs_surface_mm_not_prescribed": max(others_surface) if others_surface else float("nan"),
    }


# --------------------------------------------------------------------------------------------------------------
# seed variability


def seed_std(samples: Sequence[NDArray]) -> NDArray[np.float32]:
    """Voxel-wise sample standard deviation (ddof = 1) across ≥ 2 images of one shape (float32)."""
    if len(samples) < 2:
        raise ValueError(f"seed std needs at least 2 samples, got {len(samples)}")
    shape = np.shape(samples[0])
    if any(np.shape(s) != shape for s in samples):
        raise ValueError(f"samples differ in shape: {[np.shape(s) for s in samples]}")
    mean = np.zeros(shape, dtype=np.float64)
    m2 = np.zeros(shape, dtype=np.float64)
    for i, s in enumerate(samples, 1):  # Welford: one pass, no stacked copy
        x = np.asarray(s, dtype=np.float64)
        delta = x - mean
        mean += delta / i
        m2 += delta * (x - mean)
    return np.sqrt(m2 / (len(samples) - 1)).astype(np.float32)


def seed_std_summary(std_map: NDArray, ribbon: NDArray, brain: NDArray) -> dict[str, float | int]:
    """Where samples disagree: mean (and median) seed std inside the ribbon, in the rest of the brain
    (``brain`` and not ribbon), and outside the brain; ``ribbon_to_brain_ratio`` = ribbon mean / rest-of-brain
    mean (the target is ≤ 0.5: the cortex agrees across seeds)."""
    std = np.asarray(std_map, dtype=np.float64)
    rib = np.asarray(ribbon) > 0.5
    brain_m = np.asarray(brain) > 0.5
    if std.shape != rib.shape or std.shape != brain_m.shape:
        raise ValueError(f"std map {std.shape}, ribbon {rib.shape} and brain {brain_m.shape} differ in shape")
    parts = {"ribbon": rib, "brain_other": brain_m & ~rib, "outside_brain": ~brain_m & ~rib}
    out: dict[str, float | int] = {}
    for name, mask in parts.items():
        values = std[mask]
        out[f"{name}_voxels"] = int(mask.sum())
        out[f"{name}_mean_std"] = float(values.mean()) if values.size else float("nan")
        out[f"{name}_median_std"] = float(np.median(values)) if values.size else float("nan")
    denom = out["brain_other_mean_std"]
    out["ribbon_to_brain_ratio"] = (float(out["ribbon_mean_std"] / denom)
                                    if isinstance(denom, float) and denom > 0 else float("nan"))
    return out


# --------------------------------------------------------------------------------------------------------------
# figures


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    meta = {"Date": None} if path.suffix.lower() == ".svg" else None
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=meta)
    return path


def plot_prescribed_vs_measured(rows: Sequence[Mapping[str, Any]], path: str | Path, *,
                                title: str | None = None) -> Path:
    """Prescribed vs surface- and image-measured thinning, one point per step × region in the spec (filled) and
    the largest regions not in the spec (hollow), with the identity line and the ±20 % band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4, 5))
    ax = fig.add_subplot(1, 1, 1)
    pres = np.array([r["prescribed_mm"] for r in rows], dtype=float)
    top = max(0.1, float(np.nanmax(pres)) if pres.size else 0.1) * 1.25
    xs = np.linspace(0, top, 2)
    ax.fill_between(xs, 0.8 * xs, 1.2 * xs, color="0.9", label="±20 %")
    ax.plot(xs, xs, color="0.4", lw=1, label="identity")
    for key, colour, marker, label in (("surface_mm", "tab:blue", "s", "surface"),
                                       ("image_mm", "tab:orange", "o", "image")):
        for in_spec in (True, False):
            sel = [r for r in rows if bool(r["in_spec"]) == in_spec]
            if not sel:
                continue
            x = np.array([r["prescribed_mm"] for r in sel], dtype=float)
            y = np.array([r[key] for r in sel], dtype=float)
            ax.scatter(x, y, s=26 if in_spec else 12, marker=marker,
                       facecolors=colour if in_spec else "none", edgecolors=colour,
                       label=f"{label} ({'in spec' if in_spec else 'other regions'})")
    ax.set_xlabel("prescribed thinning (mm)")
    ax.set_ylabel("measured thinning (mm)")
    ax.set_xlim(-0.05 * top, top)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or "Atrophy: prescribed vs measured")
    return _save(fig, path)


def plot_atrophy_series(
    images: Sequence[NDArray],
    affine: NDArray,
    point_mm: NDArray,
    path: str | Path,
    *,
    labels: Sequence[str] | None = None,
    difference: bool = True,
) -> Path:
    """Coronal slices through ``point_mm`` (world) of baseline and steps (top) and step − baseline (bottom)."""
    from matplotlib.figure import Figure

    from .thickness import world_to_voxel

    vox = np.rint(world_to_voxel(np.asarray(point_mm, dtype=float)[None], affine)[0]).astype(int)
    j = int(np.clip(vox[1], 0, images[0].shape[1] - 1))
    n = len(images)
    rows = 2 if difference and n > 1 else 1
    fig = Figure(figsize=(2.6 * n, 2.8 * rows))
    base = np.take(images[0], j, axis=1).T
    vmax = float(np.percentile(images[0], 99.5)) or 1.0
    dlim = 0.0
    if rows == 2:
        dlim = max(float(np.abs(np.take(im, j, axis=1) - np.take(images[0], j, axis=1)).max()) for im in images[1:])
        dlim = dlim or 1e-3
    for k, im in enumerate(images):
        sl = np.take(im, j, axis=1).T
        ax = fig.add_subplot(rows, n, k + 1)
        ax.imshow(sl, origin="lower", cmap="gray", vmin=0, vmax=vmax)
        ax.plot([vox[0]], [vox[2]], marker="+", color="red", ms=10)
        ax.set_title(labels[k] if labels else ("baseline" if k == 0 else f"step {k}"), fontsize=8)
        ax.axis("off")
        if rows == 2 and k > 0:
            ax = fig.add_subplot(rows, n, n + k + 1)
            ax.imshow(sl - base, origin="lower", cmap="RdBu_r", vmin=-dlim, vmax=dlim)
            ax.set_title(f"step {k} − baseline", fontsize=8)
            ax.axis("off")
    return _save(fig, path)
