"""QC of an atrophy series and of seed variability: prescribed vs measured thinning, seed standard deviation.

Prescribed vs measured, per step, hemisphere and region (every DK region plus the spec's label-file regions):

* ``prescribed_mm`` — mean over the region's vertices of the per-vertex prescription at that step (the spec's value
  for a region in the spec; what the falloff spills into for the others);
* ``surface_mm`` — mean over the region's vertices of baseline minus thinned FreeSurfer thickness
  (:func:`cor2vox_bids.geometry.cortical_thickness` on the baseline and on the thinned pial surface);
* ``image_mm`` — mean over the region's vertices of the inward shift of the grey-matter/CSF edge from the baseline
  image to the step image (:func:`pial_edge_shift`): ∫ (baseline − step) along the **baseline** white→pial line
  (extended past the pial surface, cut at the middle of a sulcus), divided by the GM − CSF contrast fitted on the
  baseline (:func:`regional_contrast`), projected on the pial normal. For a blurred step edge that integral is
  shift × contrast whatever the blur, so no edge has to be located; it equals the thickness change when the white
  surface does not move (as in an atrophy series). Vertices whose line leaves the image or runs nearly tangent to
  the pial surface are left out (``image_coverage`` says how many remain). Before integrating, each step image is
  normalised to the baseline by a smooth local gain field (:func:`intensity_gain`) estimated only from voxels the
  thinning cannot change (:func:`deep_white_reference`: deep white matter), as the boundary shift integral
  (Freeborough & Fox) normalises the repeat scan before integrating: an intensity change of a whole region (the
  demo network dims the white matter near a thinned region by 1–2 %) is otherwise read as an edge shift.
  ``image_raw_mm`` is the same measure without the normalisation.

The earlier estimator — thickness measured in each image (:func:`image_thinning`, threshold crossings) and
differenced — is kept for comparison: at 2 mm with blur it reads a fraction of the thinning (phantom, same noise in
both images: 0.19 mm of 0.5 and 0.36 mm of 1.0 mm at σ = 1.8 mm), because the thin ribbon never reaches its
grey-matter plateau.

Seed variability: :func:`seed_std` is the voxel-wise sample standard deviation (ddof = 1) across the samples
synthesised from one anatomy with different seeds; :func:`seed_std_summary` compares its mean inside the cortical
ribbon with the rest of the brain as the surfaces define it (inside the pial surfaces, outside the ribbon: the inside of
the white surfaces) and with everything outside the pial surfaces, and, given the SDFs, with five explicit zones
(:data:`SEED_STD_ZONES`: ribbon, near and deep inside the white surfaces, near and far outside the pial surfaces).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from .thickness import image_thickness

__all__ = [
    "ATROPHY_COLUMNS",
    "ATROPHY_TSV_DICTIONARY",
    "EdgeModel",
    "EdgeShiftWindow",
    "LineWindows",
    "GAIN_SIGMA_MM",
    "atrophy_rows",
    "atrophy_tsv_dictionary",
    "atrophy_targets",
    "deep_white_reference",
    "dk_region_masks",
    "fit_edge_model",
    "image_thinning",
    "intensity_gain",
    "line_windows",
    "measured_image_thickness",
    "pial_edge_shift",
    "pial_edge_shifts",
    "plot_atrophy_series",
    "plot_prescribed_vs_measured",
    "read_atrophy_tsv",
    "regional_contrast",
    "seed_std",
    "seed_std_summary",
    "SEED_STD_ZONES",
    "surface_thinning",
    "write_atrophy_tsv",
]

Row = dict[str, Any]

#: column order of ``sub-<label>_desc-atrophy_qc.tsv``
ATROPHY_COLUMNS = (
    "step", "hemi", "region", "in_spec", "prescribed_mm", "surface_mm", "image_mm", "image_raw_mm", "n_vertices",
    "image_coverage",
)

#: Gaussian σ (mm) of the local intensity normalisation of each step image to the baseline (:func:`intensity_gain`)
GAIN_SIGMA_MM = 4.0

_IMAGE_MM_DESCRIPTION = (
    "Mean over the region's vertices of the inward shift of the grey-matter/CSF edge from the baseline image to "
    "the step image, along the pial surface normal: the integral of (baseline - step) intensity along the baseline "
    "white-to-pial line (from 2 mm inside the white vertex to 4 mm outside the pial vertex, each end cut at the "
    "middle of a gyral blade or sulcus) divided by the grey-matter minus CSF intensity contrast fitted on the "
    "baseline image in the vertex's DK region, times the cosine between the line and the pial normal. Equals the "
    "decrease of cortical thickness when the white surface does not move. Vertices whose line leaves the image or "
    "runs within 0.3 (cosine) of tangent to the pial surface are left out; n/a when none remains.")
_NORMALISATION_DESCRIPTION = (
    " The step image is first normalised to the baseline: divided by a smooth gain field (step / baseline, "
    "Gaussian-weighted ratio of sums with sigma {sigma:g} mm; the global ratio where no reference voxel is within "
    "about 3 sigma) estimated only on deep white-matter voxels (inside the white surfaces, deeper than the line's "
    "inner end plus twice the fitted blur, mean of baseline and step intensity at least the grey/white midpoint), "
    "which a thinning of the cortex cannot change; the reference and the gain range are in the summary JSON "
    "(image_intensity_normalisation).")


def atrophy_tsv_dictionary(normalised: bool = True, sigma_mm: float = GAIN_SIGMA_MM) -> dict[str, dict[str, Any]]:
    """BIDS-style data dictionary of the TSV (its JSON sidecar); ``normalised``: whether ``image_mm`` was measured
    after the local intensity normalisation of the step images (:func:`intensity_gain`)."""
    out = {k: dict(v) for k, v in _DICTIONARY.items()}
    if normalised:
        out["image_mm"]["Description"] += _NORMALISATION_DESCRIPTION.format(sigma=sigma_mm)
    else:
        out["image_mm"]["Description"] += " No intensity normalisation was applied (equal to image_raw_mm)."
    return out


_DICTIONARY: dict[str, dict[str, Any]] = {
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
    "image_mm": {"LongName": "Image-measured thinning (grey-matter/CSF edge shift)",
                 "Description": _IMAGE_MM_DESCRIPTION, "Units": "mm"},
    "image_raw_mm": {"LongName": "Image-measured thinning without intensity normalisation",
                     "Description": "As image_mm, but integrating the step image as synthesised (no normalisation "
                                    "to the baseline): an intensity change of a whole region reads as thinning "
                                    "here.", "Units": "mm"},
    "n_vertices": {"LongName": "Number of vertices", "Description": "Vertices in the region.", "Units": "count"},
    "image_coverage": {"LongName": "Image measurement coverage",
                       "Description": "Fraction of the region's vertices with an image-measured thinning.",
                       "Units": "fraction"},
}

#: the TSV's data dictionary with the default (normalised) measure
ATROPHY_TSV_DICTIONARY: dict[str, dict[str, Any]] = atrophy_tsv_dictionary()


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
    the **baseline** surfaces' white→pial lines; NaN where either measurement fails. The earlier estimator, kept
    for comparison: it underestimates thinning in blurred 2 mm images (see the module docstring); the QC table
    uses :func:`pial_edge_shift`."""
    base = (measured_image_thickness(baseline_image, affine, white_vertices, white_faces, pial_vertices, pial_faces)
            if baseline_image_thickness is None else np.asarray(baseline_image_thickness, dtype=np.float64))
    step = measured_image_thickness(step_image, affine, white_vertices, white_faces, pial_vertices, pial_faces)
    return base - step


# -- image-measured thinning: the pial edge's shift from the intensity integral ----------------------------------


@dataclass(frozen=True)
class EdgeShiftWindow:
    """Extent of the lines :func:`pial_edge_shift` integrates over (mm along each white→pial line)."""

    inner_mm: float = 2.0  # inside the white vertex
    outer_mm: float = 4.0  # outside the pial vertex
    probe_mm: float = 0.25  # spacing of the medial-axis probes (:func:`_window_reach`)
    step_mm: float = 0.25  # spacing of the image samples (regional means within 0.004 mm of 0.1 mm spacing, demo)
    min_cos: float = 0.3  # lines closer than this to the pial surface's tangent plane are not measured


@dataclass(frozen=True)
class LineWindows:
    """Per-vertex integration windows on the baseline white→pial lines (positions in mm from the white vertex)."""

    origin: NDArray  # (n, 3) white vertices
    direction: NDArray  # (n, 3) unit white→pial directions
    length: NDArray  # (n,) white–pial vertex distance: the pial vertex's position on the line
    cos_pial: NDArray  # (n,) cos of the angle between the line and the pial vertex normal
    cos_white: NDArray  # (n,) the same for the white vertex normal
    start: NDArray  # (n,) window start (≤ 0: inside the white vertex)
    end: NDArray  # (n,) window end (≥ length)
    start_at_axis: NDArray  # (n,) bool: the start was set by a medial axis (not by inner_mm)
    end_at_axis: NDArray  # (n,) bool: the end was set by a medial axis (not by outer_mm)
    positions: NDArray  # (K,) sample positions common to all lines
    step_mm: float

    def inside(self, rows: slice | NDArray) -> NDArray[np.bool_]:
        """(len(rows), K) mask of the samples inside each line's window."""
        pos = self.positions[None, :]
        return (pos >= self.start[rows, None] - 1e-9) & (pos <= self.end[rows, None] + 1e-9)

    def sample(self, data: NDArray, affine: NDArray, rows: slice | NDArray, order: int = 1) -> NDArray:
        """Samples (len(rows), K) of prepared image ``data`` on the lines; NaN outside the window or the image."""
        return self.sample_at(data, self.voxels(affine, rows), self.inside(rows), order)

    def voxels(self, affine: NDArray, rows: slice | NDArray) -> NDArray:
        """Continuous voxel coordinates (len(rows), K, 3) of the sample points (reusable for several images on the
        same grid)."""
        from .thickness import world_to_voxel

        pts = self.origin[rows, None, :] + self.positions[None, :, None] * self.direction[rows, None, :]
        return world_to_voxel(pts, affine)

    @staticmethod
    def sample_at(data: NDArray, voxels: NDArray, inside: NDArray, order: int = 1) -> NDArray:
        """Samples of prepared image ``data`` at :meth:`voxels`; NaN outside ``inside`` (:meth:`inside`) or the
        image."""
        from scipy import ndimage

        prof = ndimage.map_coordinates(data, voxels.reshape(-1, 3).T, order=order, mode="constant", cval=np.nan,
                                       output=np.float64, prefilter=False).reshape(voxels.shape[:-1])
        prof[~inside] = np.nan
        return prof


def _window_reach(mesh_vertices: NDArray, mesh_faces: NDArray, origin: NDArray, direction: NDArray,
                  cos_own: NDArray, limit_mm: float, probe_mm: float) -> tuple[NDArray, NDArray]:
    """How far (mm, ≤ ``limit_mm``) each line may go from ``origin`` along ``direction`` before another part of
    the mesh is closer than its own — the medial axis: the middle of a sulcus, or of a gyral blade — and whether
    that (rather than ``limit_mm``) stopped it.

    Probes every ``probe_mm``: at distance e along the line the line's own surface (locally a plane through
    ``origin`` at angle θ to the line, cos θ = ``cos_own``) is e·cos θ away; the line stops at the last probe
    before the exact distance to the mesh falls below 0.8 of that (0.8 tolerates mesh facets and mild
    concavity; between parallel banks the stop falls at 0.56 of the gap)."""
    from cor2vox_bids.geometry import closest_distance

    e = probe_mm * np.arange(1, int(np.floor(limit_mm / probe_mm + 1e-9)) + 1)
    n = len(origin)
    if e.size == 0 or n == 0:
        return np.zeros(n), np.zeros(n, dtype=bool)
    pts = origin[:, None, :] + e[None, :, None] * direction[:, None, :]
    dist = closest_distance(mesh_vertices, mesh_faces, pts.reshape(-1, 3), max_dist=limit_mm + 1.0)
    bad = dist.reshape(n, e.size) < 0.8 * e[None, :] * cos_own[:, None]
    first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), e.size)
    reach = np.concatenate([[0.0], e])[first_bad]
    return reach, first_bad < e.size


def line_windows(
    white_vertices: NDArray,
    white_faces: NDArray,
    pial_vertices: NDArray,
    pial_faces: NDArray,
    window: EdgeShiftWindow | None = None,
    *,
    pial_mesh: tuple[NDArray, NDArray] | None = None,
    white_mesh: tuple[NDArray, NDArray] | None = None,
) -> LineWindows:
    """Integration windows of :func:`pial_edge_shift`: each baseline white→pial line from ``inner_mm`` inside the
    white vertex to ``outer_mm`` outside the pial vertex, each end cut short at a medial axis (the middle of a
    sulcus for the pial mesh, of a gyral blade for the white mesh; :func:`_window_reach`).

    ``pial_mesh``/``white_mesh`` are the meshes the medial-axis test sees (default: this hemisphere's; pass both
    hemispheres so lines also stop at the interhemispheric midline)."""
    from .thickness import profile_directions, vertex_normals

    window = window or EdgeShiftWindow()
    w = np.asarray(white_vertices, dtype=np.float64)
    p = np.asarray(pial_vertices, dtype=np.float64)
    direction, length = profile_directions(w, white_faces, p)
    cos_pial = np.einsum("ij,ij->i", direction, vertex_normals(p, pial_faces))
    cos_white = np.einsum("ij,ij->i", direction, vertex_normals(w, white_faces))
    pv, pf = pial_mesh if pial_mesh is not None else (p, np.asarray(pial_faces))
    wv, wf = white_mesh if white_mesh is not None else (w, np.asarray(white_faces))
    outer, outer_axis = _window_reach(pv, pf, p, direction, np.clip(cos_pial, 0.05, 1.0), window.outer_mm,
                                      window.probe_mm)
    inner, inner_axis = _window_reach(wv, wf, w, -direction, np.clip(cos_white, 0.05, 1.0), window.inner_mm,
                                      window.probe_mm)
    n_pos = int(np.ceil((float(length.max(initial=0.0)) + window.inner_mm + window.outer_mm) / window.step_mm)) + 1
    positions = -window.inner_mm + window.step_mm * np.arange(n_pos)
    return LineWindows(w, direction, length, cos_pial, cos_white, -inner, length + outer, inner_axis, outer_axis,
                       positions, window.step_mm)


@dataclass(frozen=True)
class EdgeModel:
    """Tissue levels and blur of an image along white→pial lines (:func:`fit_edge_model`)."""

    wm: float
    gm: float
    csf: float
    sigma_mm: float
    n_lines: int

    @property
    def contrast(self) -> float:
        """GM − CSF: the intensity step at the pial edge."""
        return self.gm - self.csf


def _edge_columns(x: NDArray, length: NDArray, cos_pial: NDArray, cos_white: NDArray, sigma: float
                  ) -> tuple[NDArray, NDArray]:
    """Columns Φ((L − x)/σ') and Φ(−x/σ') of the profile model (σ' = σ / cos θ along an oblique line)."""
    return (ndtr((length - x) * np.clip(cos_pial, 0.3, 1.0) / sigma),
            ndtr(-x * np.clip(cos_white, 0.3, 1.0) / sigma))


def fit_edge_model(profiles: NDArray, lw: LineWindows, rows: NDArray, *, max_lines: int = 1500,
                   sample_mm: float = 0.25, sigma_range: tuple[float, float] = (0.2, 4.0),
                   sigma_mm: float | None = None) -> EdgeModel:
    """WM, GM and CSF levels and blur σ fitted to image profiles on the lines ``rows`` of ``lw``.

    Model along each line (x from the white vertex): I(x) = CSF + (GM − CSF)·Φ((L − x)/σ') + (WM − GM)·Φ(−x/σ'),
    the surfaces' own edges blurred by a Gaussian of σ (σ' = σ / cos θ along an oblique line). For each σ the three
    levels are a linear least-squares fit; σ minimises the residual (bounded scalar search in ``sigma_range``).
    ``profiles`` (len(rows), K): samples in the windows, NaN elsewhere. Up to ``max_lines`` evenly strided lines
    and one sample per ``sample_mm`` are used. With ``sigma_mm`` σ is fixed (only the levels are fitted). NaN
    levels where fewer than 20 lines have samples."""
    from scipy.optimize import minimize_scalar

    rows = np.asarray(rows)
    stride = max(1, int(round(sample_mm / lw.step_mm)))
    prof = np.asarray(profiles, dtype=np.float64)[:, ::stride]
    usable = np.isfinite(prof).sum(axis=1) >= 5
    rows, prof = rows[usable], prof[usable]
    if len(rows) < 20:
        return EdgeModel(float("nan"), float("nan"), float("nan"), float("nan"), int(len(rows)))
    pick = np.arange(0, len(rows), max(1, -(-len(rows) // max_lines)))
    rows, prof = rows[pick], prof[pick]
    ok = np.isfinite(prof)
    line, col = np.nonzero(ok)
    y = prof[ok]
    x = lw.positions[::stride][col]
    length, cp, cw = lw.length[rows][line], lw.cos_pial[rows][line], lw.cos_white[rows][line]

    def solve(sigma: float) -> tuple[float, NDArray]:
        a, b = _edge_columns(x, length, cp, cw, sigma)
        design = np.stack([np.ones_like(y), a, b], axis=1)
        gram = design.T @ design
        try:
            coef = np.linalg.solve(gram, design.T @ y)
        except np.linalg.LinAlgError:
            return float("inf"), np.full(3, np.nan)
        return float(np.sum((design @ coef - y) ** 2)), coef

    if sigma_mm is not None and np.isfinite(sigma_mm):
        sigma = float(sigma_mm)
    else:
        best = minimize_scalar(lambda sg: solve(sg)[0], bounds=sigma_range, method="bounded",
                               options={"xatol": 0.01})
        sigma = float(best.x)
    res, (csf, gm_minus_csf, wm_minus_gm) = solve(sigma)
    if not np.isfinite(res):
        return EdgeModel(float("nan"), float("nan"), float("nan"), float("nan"), int(len(rows)))
    return EdgeModel(float(csf + gm_minus_csf + wm_minus_gm), float(csf + gm_minus_csf), float(csf), sigma,
                     int(len(rows)))


def _psi(u: NDArray) -> NDArray:
    """∫_{-∞}^{u} Φ(t) dt = u·Φ(u) + φ(u)."""
    return u * ndtr(u) + np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


def _windowed_shift(measured: NDArray, edge: NDArray, x0: NDArray, x1: NDArray, sigma: NDArray) -> NDArray:
    """Shift s of a blurred step edge (at ``edge`` along the line, Gaussian blur ``sigma`` along the line) whose
    difference image integrated over [x0, x1] (either end may be infinite) and divided by the contrast gives
    ``measured``: solves F(s) = ∫_{x0}^{x1} [Φ((b − x)/σ) − Φ((b − s − x)/σ)] dx = measured by Newton's method.
    F(s) = s when the window covers the blur; it is smaller when the window cuts the tails."""

    def term(end: NDArray, s: NDArray, infinite_value: NDArray) -> NDArray:
        fin = np.isfinite(end)
        e = np.where(fin, end, 0.0)
        val = sigma * (_psi((edge - e) / sigma) - _psi((edge - s - e) / sigma))
        return np.where(fin, val, infinite_value)

    measured = np.asarray(measured, dtype=np.float64)
    s = measured.copy()
    for _ in range(8):
        f = term(x0, s, s) - term(x1, s, np.zeros_like(s))
        slope = ndtr((edge - s - x0) / sigma) - ndtr((edge - s - x1) / sigma)
        s = s - (f - measured) / np.maximum(slope, 0.25)
    return s


def deep_white_reference(image: NDArray, sdf_white: NDArray, *, min_depth_mm: float,
                         min_level: float) -> NDArray[np.bool_]:
    """Voxels a thinning of the cortex cannot change, the reference of :func:`intensity_gain`: inside the white
    surfaces (which never move in a series) at least ``min_depth_mm`` deep (``sdf_white`` in mm, negative inside;
    choose it beyond the lines' inner end plus the blur, so that no voxel the edge-shift integral counts is a
    reference voxel) where ``image`` is at least ``min_level`` (e.g. the grey/white midpoint: leaves out
    ventricles and deep grey matter that the white surfaces enclose). Pass the mean of baseline and step as
    ``image``: selecting on one of the two images biases their ratio where they differ by noise."""
    img = np.asarray(image, dtype=np.float64)
    sw = np.asarray(sdf_white)
    if sw.shape != img.shape:
        raise ValueError(f"image {img.shape} and white SDF {sw.shape} differ in shape")
    return (sw <= -float(min_depth_mm)) & (img >= float(min_level)) & np.isfinite(img)


def intensity_gain(baseline_image: NDArray, step_image: NDArray, reference: NDArray, affine: NDArray, *,
                   sigma_mm: float = GAIN_SIGMA_MM, fallback_weight: float = 1e-3) -> NDArray[np.float64]:
    """Smooth gain field g (step ≈ g × baseline) estimated on the ``reference`` voxels only
    (:func:`deep_white_reference`): the Gaussian-weighted (σ = ``sigma_mm``) ratio of sums
    g = G[r·step] / G[r·baseline], defined everywhere (normalised convolution: away from the reference it is the
    ratio of its nearest voxels). Where less than ``fallback_weight`` of the Gaussian's weight falls on reference
    voxels (far from white matter) it is pulled to the global ratio Σ r·step / Σ r·baseline:
    g = (G[r·step] + λ·ĝ·m) / (G[r·baseline] + λ·m), λ = ``fallback_weight``, m the mean reference baseline.
    ``step / g`` is the step image normalised to the baseline (the boundary shift integral's intensity
    normalisation, done locally). All ones when the reference is empty."""
    from scipy import ndimage

    base = np.asarray(baseline_image, dtype=np.float64)
    step = np.asarray(step_image, dtype=np.float64)
    ref = np.asarray(reference, dtype=bool)
    if base.shape != step.shape or base.shape != ref.shape:
        raise ValueError(f"baseline {base.shape}, step {step.shape} and reference {ref.shape} differ in shape")
    if not ref.any():
        return np.ones(base.shape)
    mean_ref = float(base[ref].mean())
    if not mean_ref > 0:
        raise ValueError("the reference voxels of the intensity normalisation have no positive baseline intensity")
    global_gain = float(step[ref].sum() / base[ref].sum())
    sigma_vox = float(sigma_mm) / np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    num = ndimage.gaussian_filter(np.where(ref, step, 0.0), sigma_vox, mode="constant", truncate=3.0)
    den = ndimage.gaussian_filter(np.where(ref, base, 0.0), sigma_vox, mode="constant", truncate=3.0)
    lam = float(fallback_weight) * mean_ref
    return (num + lam * global_gain) / (den + lam)


def pial_edge_shift(
    baseline_image: NDArray,
    step_image: NDArray,
    affine: NDArray,
    lw: LineWindows,
    contrast: float | NDArray,
    *,
    sigma_mm: float | None = None,
    order: int = 1,
    min_cos: float = EdgeShiftWindow.min_cos,
    gain: NDArray | None = None,
) -> NDArray[np.float64]:
    """Per-vertex inward shift (mm, along the pial surface's normal) of the grey-matter/CSF edge from the baseline
    to the step image — the image-measured thinning, with the white surface unchanged.

    Both images are sampled on the **baseline** white→pial lines in the windows ``lw`` (:func:`line_windows`).
    For a step edge blurred by any point-spread function, ∫ (baseline − step) dx along the line = contrast × the
    distance the edge moved along the line, so shift_line = ∫ (baseline − step) dx / ``contrast`` (GM − CSF, one
    value or one per vertex; :func:`fit_edge_model`): no threshold and no edge location are needed, and the blur
    drops out as long as the window covers it. With ``sigma_mm`` the tails of the blurred difference cut off by a
    window end at ``inner_mm``/``outer_mm`` are added back (1-D Gaussian edge model, :func:`_windowed_shift`); an
    end at a medial axis counts as complete (the other bank's tail reaching over makes up for the cut one).
    shift_line × cos θ (θ between the line and the baseline pial vertex normal) is the shift along the normal: the
    change of FreeSurfer thickness for locally parallel surfaces. NaN where a window leaves the image or the line
    is within ``min_cos`` of tangent to the pial surface. With ``gain`` (:func:`intensity_gain`, step ≈ gain ×
    baseline) the step image is divided by it before integrating: normalised to the baseline, so that an
    intensity change that is not an edge shift does not read as one."""
    return pial_edge_shifts(baseline_image, [step_image], affine, lw, contrast, sigma_mm=sigma_mm, order=order,
                            min_cos=min_cos, gains=None if gain is None else [gain])[0]


def pial_edge_shifts(
    baseline_image: NDArray,
    step_images: Sequence[NDArray],
    affine: NDArray,
    lw: LineWindows,
    contrast: float | NDArray,
    *,
    sigma_mm: float | None = None,
    order: int = 1,
    min_cos: float = EdgeShiftWindow.min_cos,
    gains: Sequence[NDArray | None] | None = None,
) -> list[NDArray[np.float64]]:
    """:func:`pial_edge_shift` of several step images against one baseline (one array per step, in order); the
    line geometry (sample points, windows) is computed once for all of them. Same values as one call per step.
    ``gains``: one gain field per step (or None) that the step image is divided by before integrating."""
    from .thickness import _prepared

    base = np.asarray(baseline_image)
    steps = [np.asarray(s) for s in step_images]
    for step in steps:
        if base.shape != step.shape:
            raise ValueError(f"baseline {base.shape} and step {step.shape} images differ in shape")
    gains = list(gains) if gains is not None else [None] * len(steps)
    if len(gains) != len(steps):
        raise ValueError(f"{len(gains)} gain fields for {len(steps)} step images")
    for gain in gains:
        if gain is not None and np.shape(gain) != base.shape:
            raise ValueError(f"baseline {base.shape} and gain field {np.shape(gain)} differ in shape")
    contrast = np.broadcast_to(np.asarray(contrast, dtype=np.float64), lw.length.shape)
    diffs = [_prepared(base.astype(np.float64) - (step.astype(np.float64) if gain is None else
                                                   step.astype(np.float64) / np.asarray(gain, dtype=np.float64)),
                       order) for step, gain in zip(steps, gains)]
    n = len(lw.length)
    integrals = [np.full(n, np.nan) for _ in steps]
    for start in range(0, n, 8192):
        sl = slice(start, min(start + 8192, n))
        voxels, inside = lw.voxels(affine, sl), lw.inside(sl)
        for diff, integral in zip(diffs, integrals):
            prof = lw.sample_at(diff, voxels, inside, order)
            complete = ~np.any(inside & ~np.isfinite(prof), axis=1)
            integral[sl] = np.where(complete, np.nansum(prof, axis=1) * lw.step_mm, np.nan)
    return [_edge_shift_from_integral(integral, lw, contrast, sigma_mm, min_cos) for integral in integrals]


def _edge_shift_from_integral(integral: NDArray, lw: LineWindows, contrast: NDArray, sigma_mm: float | None,
                              min_cos: float) -> NDArray[np.float64]:
    """Per-vertex edge shift along the pial normal from the integrated difference (see :func:`pial_edge_shift`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shift_line = np.where((contrast != 0) & np.isfinite(contrast), integral / contrast, np.nan)
    if sigma_mm is not None and np.isfinite(sigma_mm) and sigma_mm > 0:
        cos_safe = np.clip(lw.cos_pial, min_cos, 1.0)
        shift_line = _windowed_shift(shift_line, lw.length, np.where(lw.start_at_axis, -np.inf, lw.start),
                                     np.where(lw.end_at_axis, np.inf, lw.end), float(sigma_mm) / cos_safe)
    out = shift_line * lw.cos_pial
    out[~(lw.cos_pial >= min_cos)] = np.nan
    return out


def regional_contrast(baseline_image: NDArray, affine: NDArray, lw: LineWindows,
                      regions: Mapping[str, NDArray[np.bool_]], *, min_lines: int = 30, order: int = 1
                      ) -> tuple[NDArray[np.float64], EdgeModel, dict[str, EdgeModel]]:
    """GM − CSF contrast per vertex from :func:`fit_edge_model` on the baseline image. The blur σ is fitted once
    on the whole hemisphere (it is a property of the image); the levels are then refitted with that σ in each
    region with at least ``min_lines`` measurable lines (so a smooth intensity bias follows). Fitting σ per region
    as well was unstable where profiles look like ramps (demo sub-21 L precentral: σ 3.0 mm and half the contrast,
    doubling the thinning). The whole hemisphere's contrast is used elsewhere and where a regional fit gives no
    positive contrast. Returns (per-vertex contrast, the hemisphere's model, the regional models)."""
    from .thickness import _prepared

    data = _prepared(np.asarray(baseline_image), order)
    n = len(lw.length)
    every = np.arange(0, n, max(1, n // 3000))
    whole = fit_edge_model(lw.sample(data, affine, every, order), lw, every)
    contrast = np.full(n, whole.contrast)
    models: dict[str, EdgeModel] = {}
    for name, mask in regions.items():
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(rows) < min_lines:
            continue
        model = fit_edge_model(lw.sample(data, affine, rows, order), lw, rows, sigma_mm=whole.sigma_mm)
        models[name] = model
        if np.isfinite(model.contrast) and model.contrast > 0 and model.n_lines >= min_lines:
            contrast[rows] = model.contrast
    return contrast, whole, models


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
    image_raw_mm: NDArray | None = None,
) -> list[Row]:
    """One row per region (in ``regions`` order) from per-vertex prescription, surface and image thinning
    (``image_raw_mm``: the image measure without intensity normalisation; default: ``image_mm``)."""
    spec_names = set(in_spec)
    pres = np.asarray(prescribed_mm, dtype=np.float64)
    surf = np.asarray(surface_mm, dtype=np.float64)
    img = None if image_mm is None else np.asarray(image_mm, dtype=np.float64)
    raw = img if image_raw_mm is None else np.asarray(image_raw_mm, dtype=np.float64)
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
            "image_raw_mm": float("nan") if raw is None else _mean(raw[m]),
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
                elif value is None:  # a column that an older TSV lacks
                    continue
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

    def largest(values: Iterable[float]) -> float:
        finite = [abs(v) for v in values if np.isfinite(v)]
        return max(finite) if finite else float("nan")

    not_in_spec = [r for r in final if not r["in_spec"]]
    others = [abs(r["image_mm"]) for r in not_in_spec if np.isfinite(r["image_mm"])]
    return {
        "step": last,
        "surface": rel("surface_mm"),
        "image": rel("image_mm"),
        "image_raw": rel("image_raw_mm") if all("image_raw_mm" in r for r in spec_rows) else [],
        "max_abs_image_mm_not_prescribed": max(others) if others else float("nan"),
        "median_abs_image_mm_not_prescribed": float(np.median(others)) if others else float("nan"),
        "max_abs_image_raw_mm_not_prescribed": largest(r.get("image_raw_mm", float("nan")) for r in not_in_spec),
        "max_abs_surface_mm_not_prescribed": largest(r["surface_mm"] for r in not_in_spec),
        # the falloff thins regions next to a prescribed one on purpose: the image against the surface
        "max_abs_image_minus_surface_mm_not_prescribed": largest(r["image_mm"] - r["surface_mm"]
                                                                 for r in not_in_spec),
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


#: the zones of :func:`seed_std_summary` (mutually exclusive; from the conditioning's ribbon and SDFs)
SEED_STD_ZONES: dict[str, str] = {
    "ribbon": "the cortical ribbon of the conditioning (voxel centres between the white and the pial surface)",
    "white_near": "inside the white surfaces, within band_mm of them (the blurred grey/white edge)",
    "white_deep": "inside the white surfaces, deeper than band_mm (white matter interior and what the white "
                  "surfaces enclose: deep grey matter, ventricles)",
    "outside_near": "outside the pial surfaces, within band_mm of them (sulcal CSF, the blurred grey/CSF edge)",
    "outside_far": "outside the pial surfaces, farther than band_mm (cerebellum, brainstem, extracerebral CSF, "
                   "skull, scalp, background: the surfaces do not separate these)",
}


def seed_std_summary(std_map: NDArray, ribbon: NDArray, brain: NDArray, *, sdf_white: NDArray | None = None,
                     sdf_pial: NDArray | None = None, band_mm: float = 4.0) -> dict[str, float | int]:
    """Where samples disagree: voxel count, mean and median seed std per zone.

    Always: ``ribbon``; ``brain_other`` = ``brain`` (the caller passes inside the pial surfaces) and not ribbon —
    which is the inside of the white surfaces; ``outside_brain`` = the rest; ``ribbon_to_brain_ratio`` = ribbon
    mean / brain_other mean (the issue's target ≤ 0.5: the cortex agrees across seeds). With the SDFs (mm,
    negative inside) also the zones of :data:`SEED_STD_ZONES` (``band_mm`` splits near from deep/far) and
    ``ribbon_to_<zone>_ratio`` for each of them."""
    std = np.asarray(std_map, dtype=np.float64)
    rib = np.asarray(ribbon) > 0.5
    brain_m = np.asarray(brain) > 0.5
    if std.shape != rib.shape or std.shape != brain_m.shape:
        raise ValueError(f"std map {std.shape}, ribbon {rib.shape} and brain {brain_m.shape} differ in shape")
    parts = {"ribbon": rib, "brain_other": brain_m & ~rib, "outside_brain": ~brain_m & ~rib}
    if sdf_white is not None and sdf_pial is not None:
        sw, sp = np.asarray(sdf_white), np.asarray(sdf_pial)
        if sw.shape != std.shape or sp.shape != std.shape:
            raise ValueError(f"std map {std.shape} and SDFs {sw.shape}, {sp.shape} differ in shape")
        inside_white = (sw < 0) & ~rib
        outside = ~inside_white & ~rib
        parts.update({"white_near": inside_white & (sw >= -band_mm), "white_deep": inside_white & (sw < -band_mm),
                      "outside_near": outside & (sp <= band_mm), "outside_far": outside & (sp > band_mm)})
    out: dict[str, float | int] = {}
    for name, mask in parts.items():
        values = std[mask]
        out[f"{name}_voxels"] = int(mask.sum())
        out[f"{name}_mean_std"] = float(values.mean()) if values.size else float("nan")
        out[f"{name}_median_std"] = float(np.median(values)) if values.size else float("nan")

    def ratio(zone: str) -> float:
        denom = out[f"{zone}_mean_std"]
        return float(out["ribbon_mean_std"] / denom) if isinstance(denom, float) and denom > 0 else float("nan")

    out["ribbon_to_brain_ratio"] = ratio("brain_other")
    for zone in SEED_STD_ZONES:
        if zone != "ribbon" and f"{zone}_mean_std" in out:
            out[f"ribbon_to_{zone}_ratio"] = ratio(zone)
    if "white_near" in parts:
        out["band_mm"] = float(band_mm)
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
    """Coronal slices through ``point_mm`` (world) of baseline and steps (top) and step − baseline (bottom, with a
    colour bar in the free cell under the baseline). The images are on the model grid (RAS axes), so the subject's
    left is on the left of each panel (marked L / R)."""
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
        for x, text in ((0.02, "L"), (0.98, "R")):
            ax.text(x, 0.03, text, transform=ax.transAxes, ha="left" if x < 0.5 else "right", va="bottom",
                    color="white", fontsize=7, fontweight="bold")
        if rows == 2 and k > 0:
            ax = fig.add_subplot(rows, n, n + k + 1)
            shown = ax.imshow(sl - base, origin="lower", cmap="RdBu_r", vmin=-dlim, vmax=dlim)
            ax.set_title(f"step {k} − baseline", fontsize=8)
            ax.axis("off")
    if rows == 2:
        holder = fig.add_subplot(rows, n, n + 1)
        holder.axis("off")
        bar = fig.colorbar(shown, ax=holder, location="left", fraction=0.5, shrink=0.9)
        bar.set_label("step − baseline intensity\n(image scale 0–1; blue: darker)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return _save(fig, path)
