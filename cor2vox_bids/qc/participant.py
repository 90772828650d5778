"""Thickness QC of one participant: every image measured along the same FreeSurfer lines, regions, summary.

:func:`measure_participant` prepares each hemisphere once (one KD-tree per surface, FreeSurfer's two lines per
vertex), calibrates each image once over both hemispheres and measures it (``qc.measure``); DK labels come from
the hemisphere when it carries them, else from :mod:`cor2vox_bids.geometry.dk_labels`. :func:`thickness_summary`
condenses the result: coverage, vertex-level and region-level r (region r only where enough of the cortex was
measured), the signed median difference, and what the image-level model calibration found.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .measure import (
    DEFINITION,
    HemisphereLines,
    ThicknessResult,
    calibrate_lines,
    measure_thickness,
    prepare_hemisphere,
)
from .profiles import STATUS_MISFIT, STATUS_OUTSIDE, STATUS_UNRESOLVED
from .regions import IMAGE_KINDS, MIN_COVERAGE_FOR_R, Row, region_rows, summarize_rows

__all__ = ["ParticipantThickness", "measure_participant", "thickness_summary", "hemisphere_regions"]


@dataclass
class ParticipantThickness:
    """Per hemisphere: surface thickness, per-image results, region labels; plus the region rows."""

    surface: dict[str, NDArray]
    results: dict[str, dict[str, ThicknessResult]]  # kind -> hemi -> result
    rows: list[Row]
    region_source: dict[str, str]
    cortex: dict[str, NDArray] = field(default_factory=dict)  # hemi -> cortex vertices (cortex_mask)
    extra: dict[str, Any] = field(default_factory=dict)

    def per_vertex(self) -> dict[str, NDArray]:
        """Arrays for ``vertex.npz``: ``<hemi>_surface``, ``<hemi>_<kind>`` (NaN = not measured),
        ``<hemi>_<kind>_se`` and ``<hemi>_<kind>_status`` (``profiles.STATUS_*``)."""
        out = {f"{h}_surface": v for h, v in self.surface.items()}
        for kind, by_hemi in self.results.items():
            for h, r in by_hemi.items():
                out[f"{h}_{kind}"] = r.thickness
                out[f"{h}_{kind}_se"] = r.se
                out[f"{h}_{kind}_status"] = r.status
        return out


def hemisphere_regions(hemi: Any) -> tuple[NDArray | None, list[str] | None, str]:
    """DK labels, names and source of a hemisphere object: its own ``labels`` (from its annotation), else
    ``geometry.dk_labels`` from the files beside its white surface (``sphere.reg`` + fsaverage, aparcaseg)."""
    labels = getattr(hemi, "labels", None)
    names = getattr(hemi, "names", None)
    if labels is not None and names is not None:
        return np.asarray(labels), [str(n) for n in names], "aparc.annot"
    from ..geometry.dk_labels import dk_labels, find_dk_sources

    path = getattr(hemi.white, "path", None)
    sources = {k: v for k, v in find_dk_sources(path, hemi.hemi).items() if k != "annot"}
    try:
        found = dk_labels(hemi.hemi, hemi.white.vertices, hemi.pial.vertices, sources)
    except Exception as exc:  # a broken optional source must not stop the QC: fall back to no regions
        warnings.warn(f"DK labels from {sorted(sources)} failed: {exc}", stacklevel=2)
        found = None
    if found is None:
        return None, None, "none"
    return found.labels, found.names, found.source


def measure_participant(hemis: Sequence[Any], images: Mapping[str, tuple[NDArray, NDArray]],
                        surface_thickness: Mapping[str, NDArray] | None = None) -> ParticipantThickness:
    """Measure every image (``{"synthetic": (data, affine), "real": ..., "real_native": ...}``) on every hemisphere.

    ``hemis``: objects with ``hemi``, ``white``/``pial`` (``vertices``, ``faces``, optional ``path``), optional
    ``labels``/``names``/``thickness``. The surface thickness is ``thickness`` when given (FreeSurfer's), else the
    mean of the two line lengths (the same definition, uncapped → capped at 5 mm).
    """
    prepared: list[HemisphereLines] = [
        prepare_hemisphere(h.hemi, h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces) for h in hemis]
    surface: dict[str, NDArray] = {}
    for h, p in zip(hemis, prepared):
        given = (surface_thickness or {}).get(h.hemi)
        if given is None:
            given = getattr(h, "thickness", None)
        surface[h.hemi] = (np.asarray(given, dtype=np.float64) if given is not None
                           else np.minimum(p.surface_thickness, 5.0))
    results: dict[str, dict[str, ThicknessResult]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of unmeasured vertices
        for kind, (data, affine) in images.items():
            model = calibrate_lines(data, affine, prepared)
            results[kind] = {p.hemi: measure_thickness(data, affine, p, model) for p in prepared}
    rows: list[Row] = []
    sources: dict[str, str] = {}
    cortex: dict[str, NDArray] = {}
    for h in hemis:
        labels, names, source = hemisphere_regions(h)
        sources[h.hemi] = source
        cortex[h.hemi] = cortex_mask(surface[h.hemi], labels, names)
        per_kind = {k: results[k][h.hemi].thickness for k in results}
        rows += region_rows(h.hemi, surface[h.hemi], per_kind.get("synthetic", np.full(len(surface[h.hemi]), np.nan)),
                            per_kind.get("real"), labels, names, real_native_thickness=per_kind.get("real_native"),
                            source=source)
    return ParticipantThickness(surface, results, rows, sources, cortex)


def _pearson(x: NDArray, y: NDArray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


#: vertices thinner than this (mm) on the surfaces are not cortex (FreeSurfer's medial wall has white = pial)
MIN_CORTEX_MM = 0.2


def cortex_mask(surface_thickness: NDArray, labels: NDArray | None, names: Sequence[str] | None) -> NDArray:
    """Vertices that are cortex: surface thickness ≥ :data:`MIN_CORTEX_MM` and, with labels, in a DK region
    (not ``unknown``, ``corpuscallosum`` or unlabelled). Coverage and vertex r are taken over these."""
    from .regions import EXCLUDED_REGIONS

    mask = np.asarray(surface_thickness, dtype=np.float64) >= MIN_CORTEX_MM
    if labels is not None and names is not None:
        ok_index = np.array([str(n) not in EXCLUDED_REGIONS for n in names] + [False])
        lab = np.asarray(labels, dtype=np.int64)
        mask &= ok_index[np.where((lab >= 0) & (lab < len(names)), lab, len(names))]
    return mask


def thickness_summary(measured: ParticipantThickness) -> dict[str, Any]:
    """Scalar thickness QC of one participant (keys documented in ``qc.participant.SUMMARY_DICTIONARY``).

    Coverage, status fractions and vertex-level values are over cortex vertices (:func:`cortex_mask`)."""
    out: dict[str, Any] = summarize_rows(measured.rows)
    out["thickness_definition"] = DEFINITION
    out["regions_source"] = ",".join(sorted(set(measured.region_source.values())))
    for kind in IMAGE_KINDS:
        by_hemi = measured.results.get(kind)
        if not by_hemi:
            continue
        cortex = np.concatenate([measured.cortex[h] for h in by_hemi])
        surf = np.concatenate([measured.surface[h] for h in by_hemi])[cortex]
        img = np.concatenate([r.thickness for r in by_hemi.values()])[cortex]
        status = np.concatenate([r.status for r in by_hemi.values()])[cortex]
        lines_ok = np.concatenate([r.lines_ok for r in by_hemi.values()])[cortex]
        se = np.concatenate([r.se for r in by_hemi.values()])[cortex]
        model = next(iter(by_hemi.values())).model
        coverage = float(np.isfinite(img).mean())
        diff = img - surf
        out.update({
            f"coverage_{kind}": coverage,
            f"coverage_both_lines_{kind}": float(np.mean(lines_ok == 2)),
            f"fraction_misfit_{kind}": float(np.mean(status == STATUS_MISFIT)),
            f"fraction_unresolved_{kind}": float(np.mean(status == STATUS_UNRESOLVED)),
            f"fraction_outside_{kind}": float(np.mean(status == STATUS_OUTSIDE)),
            f"pearson_r_vertex_{kind}": _pearson(surf, img),
            f"median_diff_mm_{kind}": float(np.nanmedian(diff)) if coverage > 0 else float("nan"),
            f"median_abs_diff_mm_vertex_{kind}": float(np.nanmedian(np.abs(diff))) if coverage > 0 else float("nan"),
            f"median_se_mm_{kind}": float(np.nanmedian(se)) if coverage > 0 else float("nan"),
            f"blur_sigma_mm_{kind}": model.sigma_mm,
            f"noise_sd_{kind}": model.noise_sd,
            f"slab_model_{kind}": "fits" if model.slab_ok else f"refused: {model.reason}",
        })
        if coverage < MIN_COVERAGE_FOR_R:
            out[f"pearson_r_{kind}"] = float("nan")
            out[f"pearson_r_note_{kind}"] = (f"not reported: {coverage:.0%} of vertices measured "
                                             f"(< {MIN_COVERAGE_FOR_R:.0%})")
    return out


#: units and meaning of the summary's thickness and ribbon keys (``<kind>`` = synthetic, real, real_native)
SUMMARY_DICTIONARY: dict[str, dict[str, str]] = {
    "pearson_r_<kind>": {"Description": "Pearson r across DK regions of the image thickness and the surface "
                                        "thickness over the same measured vertices (regions covered ≥ 50 %); "
                                        "null when < 50 % of all vertices were measured", "Units": "1"},
    "pearson_r_vertex_<kind>": {"Description": "Pearson r over measured vertices of image vs surface thickness",
                                "Units": "1"},
    "mean_abs_diff_mm_<kind>": {"Description": "mean |image − surface| over regions (paired means)", "Units": "mm"},
    "median_diff_mm_<kind>": {"Description": "median of image − surface thickness over measured vertices (signed "
                                             "bias)", "Units": "mm"},
    "median_abs_diff_mm_vertex_<kind>": {"Description": "median |image − surface| over measured vertices",
                                         "Units": "mm"},
    "coverage_<kind>": {"Description": "fraction of cortex vertices (DK regions, surface thickness ≥ 0.2 mm) with a "
                                       "measured image thickness", "Units": "1"},
    "coverage_both_lines_<kind>": {"Description": "fraction of vertices measured on both FreeSurfer lines",
                                   "Units": "1"},
    "fraction_misfit_<kind>": {"Description": "fraction of vertices whose profiles the slab model does not "
                                              "describe (flagged, not corrected)", "Units": "1"},
    "fraction_unresolved_<kind>": {"Description": "fraction of vertices whose slab edges the data do not "
                                                  "determine (standard error > 0.5 mm, e.g. touching banks)",
                                   "Units": "1"},
    "fraction_outside_<kind>": {"Description": "fraction of vertices whose lines leave the image", "Units": "1"},
    "median_se_mm_<kind>": {"Description": "median standard error of the measured vertices' image thickness",
                            "Units": "mm"},
    "blur_sigma_mm_<kind>": {"Description": "effective Gaussian blur σ of the image at the cortex: the σ whose "
                                            "per-line slab fits leave the least residual (the σ the measure uses)",
                             "Units": "mm"},
    "noise_sd_<kind>": {"Description": "voxel noise sd from neighbouring deep-WM voxels", "Units": "image units"},
    "slab_model_<kind>": {"Description": "'fits', or why the image shows no cortical slab (then nothing is "
                                         "measured)", "Units": "text"},
    "ribbon_dice_<kind>": {"Description": "hard Dice of the grey-matter class of a 3-class intensity mixture fitted "
                                          "inside the pial surface + 3 mm with the voxels between the white and "
                                          "pial surfaces (one label per voxel: partial-volume voxels limit it at "
                                          "coarse grids)", "Units": "1"},
    "ribbon_soft_dice_<kind>": {"Description": "partial-volume (fuzzy) Dice 2·Σmin(a, b)/(Σa + Σb) over the voxels "
                                               "within 3 mm of the ribbon of a = the ribbon fraction of each voxel "
                                               "from the SDFs and b = the image's grey-matter fraction from a "
                                               "partial-volume mixture (CSF, GM, WM and their adjacent mixtures, "
                                               "with a smooth bias field) fitted inside the pial surface + 3 mm",
                                "Units": "1"},
    "ribbon_soft_dice_note_<kind>": {"Description": "why the soft Dice is null (the mixture could not be fitted)",
                                     "Units": "text"},
}


def write_vertex_npz(measured: ParticipantThickness, path: str | Path) -> Path:
    """Per-vertex arrays (:meth:`ParticipantThickness.per_vertex`) as a compressed ``.npz``."""
    path = Path(path)
    np.savez_compressed(path, **measured.per_vertex())
    return path
