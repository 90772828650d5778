"""Cortical thickness measured in an image with FreeSurfer's definition (QC measure v2).

Definition (the same on both sides): FreeSurfer's thickness of a vertex is the mean of two surface distances, white
vertex → closest pial point and pial vertex → closest white point (``lines.thickness_lines``). The image is measured
along exactly those two lines; on each line the image thickness minus the line's surface length is the line's
difference, and the vertex's image thickness is its surface thickness plus the mean difference of its measured
lines. With both lines measured this is the mean of the two image distances (FreeSurfer's average, taken in the
image); with one, that line's difference. An image that agrees with its surfaces therefore reads the surface
thickness with no definition bias (< 0.05 mm on a perfect phantom, tests/qc).

Per image: tissue levels (WM, GM, CSF) and blur σ are calibrated once (:func:`calibrate_lines`; σ is the value whose
per-line slab fits leave the least residual, so σ and the edges come from one forward model); the slab edges are
then fitted per line through the blur (``profiles.fit_slab``: the blur correction). The image-level gate refuses the
slab model where the image has no cortical slab (σ too large, no GM level between WM and CSF, no WM plateau, or a
plain intensity ramp explaining the profiles better): every line is then flagged ``misfit`` and nothing is
corrected. Per line, the residual gate flags profiles the model does not describe, and the standard-error gate flags
edges the data do not determine (sulcal banks touching). Tissue levels are half-sample modes of the samples
(robust to samples that land in another tissue, e.g. the opposite bank of a narrow sulcus).
Coverage = the fraction of vertices with at least one measured line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .lines import LineSet, SurfaceIndex, thickness_lines
from .profiles import (
    STATUS_MISFIT,
    STATUS_OK,
    STATUS_OUTSIDE,
    STATUS_UNRESOLVED,
    Profiles,
    fit_ramp,
    fit_slab,
    sample_profiles,
)
from .thickness import TissueIntensities, _slab_gm, _solve_sigma, locate_crossings

__all__ = ["HemisphereLines", "ImageModel", "ThicknessResult", "prepare_hemisphere", "calibrate_lines",
           "measure_thickness", "DEFINITION"]

FloatArray = NDArray[np.float64]

#: how the image and surface thickness are made comparable (written into the summary)
DEFINITION = ("FreeSurfer: mean of white-vertex→closest-pial and pial-vertex→closest-white distances; the image is "
              "measured along the same two lines and averaged the same way")

#: FreeSurfer's thickness cap (mm), applied to both sides
CAP_MM = 5.0
#: a fitted edge needs this many σ of fitted samples beyond it (else the line is unresolved)
SPARE_SIGMAS = 1.5
#: lines whose slab fits decide the image's blur σ (:func:`_sigma_by_residual`)
SIGMA_FIT_LINES = 1500
#: the fine stage of the σ search: offsets (mm) around the coarse minimum
FINE_STEPS_MM = np.array([-0.06, -0.03, 0.0, 0.03, 0.06])


@dataclass
class HemisphereLines:
    """Everything about one hemisphere's surfaces the measure needs, computed once and reused for every image."""

    hemi: str
    white: SurfaceIndex
    pial: SurfaceIndex
    to_pial: LineSet  # white vertex → closest pial point
    from_pial: LineSet  # closest white point → pial vertex
    surface_thickness: FloatArray  # FreeSurfer definition, uncapped mean of the two line lengths

    @property
    def n(self) -> int:
        return len(self.surface_thickness)


def prepare_hemisphere(hemi: str, white_v: NDArray, white_f: NDArray, pial_v: NDArray, pial_f: NDArray
                       ) -> HemisphereLines:
    """Surface indices (one KD-tree per surface) and FreeSurfer's two lines per vertex."""
    if np.shape(white_v) != np.shape(pial_v):
        raise ValueError(f"white and pial surfaces must have the same vertices, got {np.shape(white_v)} and "
                         f"{np.shape(pial_v)}")
    w, p = SurfaceIndex.build(white_v, white_f), SurfaceIndex.build(pial_v, pial_f)
    a, b = thickness_lines(w, p)
    return HemisphereLines(hemi, w, p, a, b, 0.5 * (a.length + b.length))


@dataclass
class ImageModel:
    """Calibration of one image: tissue levels, blur σ (mm), noise and whether the slab model holds."""

    tissue: TissueIntensities
    sigma_mm: float
    voxel_mm: float
    slab_ok: bool
    reason: str = ""
    noise_sd: float = 0.0  # voxel noise sd (same units as the image), from neighbouring WM voxels
    wm_drift: float = 0.0  # median [I(−2d) − I(−d)] / (WM − CSF) inside the white surface (0 on a WM plateau)
    sigma_edges_mm: float = float("nan")  # the edge-drop estimate of σ that starts the residual fit
    slab_vs_ramp: float = float("nan")  # median residual rms ratio slab fit / plain ramp fit (< 1: a slab)

    def misfit_rms(self, gain: FloatArray, floor_per_mm: float) -> FloatArray:
        """Largest residual rms a line may have for the slab model to count as fitting: a model floor of
        ``floor_per_mm`` × voxel size of the local WM–CSF contrast (partial volume and interpolation the 1-D
        model ignores), and 0.6 × the voxel noise (the rms of trilinear profile samples of white noise
        after the fit is ≈ 0.4 of it)."""
        contrast = abs(self.tissue.wm - self.tissue.csf) * gain
        return np.sqrt((floor_per_mm * self.voxel_mm * contrast) ** 2 + (0.6 * self.noise_sd) ** 2)

    @property
    def levels(self) -> tuple[float, float, float]:
        return (self.tissue.wm, self.tissue.gm, self.tissue.csf)


@dataclass
class ThicknessResult:
    """Per-vertex image thickness and its quality for one hemisphere and one image."""

    thickness: FloatArray  # NaN where no line was measured
    se: FloatArray  # standard error (mm) of the image thickness
    lines_ok: NDArray[np.int8]  # 0, 1 or 2 measured lines
    status: NDArray[np.int8]  # best line status (profiles.STATUS_*)
    thickness_crossings: FloatArray  # half-way-level crossings, no blur correction (information only)
    model: ImageModel
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        return float(np.mean(self.lines_ok > 0)) if len(self.lines_ok) else float("nan")


def _step(voxel_mm: float) -> float:
    """Profile sample spacing: three samples per voxel, at least 0.2 mm."""
    return max(0.2, voxel_mm / 3.0)


def _voxel_size(affine: NDArray) -> float:
    return float(np.mean(np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)))


def _sample_points(image: NDArray, affine: NDArray, points: FloatArray) -> FloatArray:
    from scipy import ndimage

    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    vox = points @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(np.asarray(image, dtype=np.float32), vox.T, order=1, mode="constant",
                                   cval=np.nan, prefilter=False, output=np.float64)


def _tissue_estimate(image: NDArray, affine: NDArray, hemis: list[HemisphereLines], depth_mm: float
                     ) -> TissueIntensities:
    """WM ``depth`` inside the white vertices, CSF ``depth`` outside the pial vertices (away from other folds of
    the same surface), GM at the middle of the thickest quarter of lines: half-sample modes over both hemispheres."""
    wm, gm, csf = [], [], []
    for h in hemis:
        a, b = h.to_pial, h.from_pial
        wpts = a.start - depth_mm * a.direction
        cpts = (b.start + b.direction * b.length[:, None]) + depth_mm * b.direction
        dw, _ = h.white.tree.query(wpts)
        dc, _ = h.pial.tree.query(cpts)
        wm.append(_sample_points(image, affine, wpts[dw >= 0.75 * depth_mm]))
        csf.append(_sample_points(image, affine, cpts[dc >= 0.75 * depth_mm]))
        thick = a.length >= np.percentile(a.length, 75)
        gm.append(_sample_points(image, affine, a.start[thick] + 0.5 * a.length[thick, None] * a.direction[thick]))
    vals = [np.concatenate(x) for x in (wm, gm, csf)]
    if any(not np.isfinite(v).any() for v in vals):
        raise ValueError("surfaces lie outside the image: cannot estimate tissue intensities")
    return TissueIntensities(*(half_sample_mode(v) for v in vals))


def half_sample_mode(values: NDArray) -> float:
    """Mode of a sample by the half-sample method (Bickel & Frühwirth 2006): repeatedly keep the half of the sorted
    values with the smallest range, down to 3 values. Unlike the median it is not pulled by a minority of samples
    from another tissue (e.g. CSF samples that land in the opposite bank of a narrow sulcus)."""
    x = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    if x.size == 0:
        return float("nan")
    while x.size > 3:
        h = (x.size + 1) // 2
        widths = x[h - 1:] - x[: x.size - h + 1]
        i = int(np.argmin(widths))
        x = x[i:i + h]
    if x.size == 3:
        x = x[:2] if x[1] - x[0] < x[2] - x[1] else (x[1:] if x[2] - x[1] < x[1] - x[0] else x[1:2])
    return float(np.mean(x))


def _deep_wm_points(hemis: list[HemisphereLines], depth_mm: float) -> FloatArray:
    pts = []
    for h in hemis:
        p = h.to_pial.start - depth_mm * h.to_pial.direction
        d, _ = h.white.tree.query(p)
        pts.append(p[d >= 0.75 * depth_mm])
    return np.concatenate(pts)


def _wm_drift(image: NDArray, affine: NDArray, hemis: list[HemisphereLines], depth_mm: float,
              t: TissueIntensities) -> float:
    """Plateau test: median intensity change from ``depth`` to 2·``depth`` inside the white vertices (both points
    away from other parts of the white surface), relative to WM − CSF. A cortical slab has a WM plateau there
    (≈ 0); an intensity ramp keeps changing."""
    near, far = [], []
    for h in hemis:
        a = h.to_pial
        p1 = a.start - depth_mm * a.direction
        p2 = a.start - 2.0 * depth_mm * a.direction
        d1, _ = h.white.tree.query(p1)
        d2, _ = h.white.tree.query(p2)
        keep = (d1 >= 0.75 * depth_mm) & (d2 >= 1.5 * depth_mm)
        near.append(_sample_points(image, affine, p1[keep]))
        far.append(_sample_points(image, affine, p2[keep]))
    diff = np.concatenate(far) - np.concatenate(near)
    diff = diff[np.isfinite(diff)]
    if diff.size < 10:
        return float("nan")
    return float(np.median(diff) / (t.wm - t.csf))


def _voxel_noise(image: NDArray, affine: NDArray, points: FloatArray) -> float:
    """Noise sd of the image from differences of neighbouring voxels at ``points`` (deep WM): for white noise
    var(x_i − x_j) = 2 sd²; robust (MAD) over the three axes."""
    data = np.asarray(image)
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    ijk = np.rint(points @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    shape = np.array(data.shape[:3])
    ok = np.all((ijk >= 0) & (ijk < shape - 1), axis=1)
    ijk = ijk[ok]
    if len(ijk) < 10:
        return float("nan")
    centre = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.float64)
    diffs = [centre - data[ijk[:, 0] + e[0], ijk[:, 1] + e[1], ijk[:, 2] + e[2]] for e in np.eye(3, dtype=int)]
    d = np.concatenate(diffs)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def _crossings(prof: Profiles, t: TissueIntensities, search: float) -> tuple[FloatArray, FloatArray]:
    vals = np.where(prof.valid, prof.values, np.nan)
    a = locate_crossings(vals, prof.positions, t.wm_gm_level, t.wm > t.gm, np.zeros(len(prof.length)), search)
    b = locate_crossings(vals, prof.positions, t.gm_csf_level, t.gm > t.csf, prof.length, search)
    return a, b


def calibrate_lines(image: NDArray, affine: NDArray, hemis: list[HemisphereLines], *, margin_mm: float = 3.0,
                    max_lines: int = 4000, n_iter: int = 3, sigma_max_mm: float | None = None,
                    max_wm_drift: float = 0.1, max_ramp_ratio: float = 1.0) -> ImageModel:
    """Tissue levels and blur σ of an image, and the image-level gate of the slab model.

    Start: σ from the median normalised intensity drop over ±0.75 voxel around both half-way crossings of the
    thickest half of up to ``max_lines`` lines, matched to the blurred slab (``thickness._solve_sigma``); GM from
    the ribbon-centre value corrected for that blur (iterated ``n_iter`` times). Then σ is re-estimated as the σ
    whose per-line slab fits explain the profiles best (:func:`_sigma_by_residual`): the same forward model the
    measure fits, so the edges it places are not biased by a σ from a simpler model. The slab model is refused
    when σ cannot be fitted or exceeds ``sigma_max_mm`` (default 1.5 mm + the voxel size), when GM does not lie
    between WM and CSF with at least 10 % of their contrast on each side, when there is no WM plateau
    (:func:`_wm_drift` beyond ``max_wm_drift``), or when a plain WM→CSF ramp explains the typical profile better
    than the slab (median residual ratio > ``max_ramp_ratio``).
    """
    voxel = _voxel_size(affine)
    depth = max(2.5, 2.0 * voxel)
    t = _tissue_estimate(image, affine, hemis, depth)
    noise = _voxel_noise(image, affine, _deep_wm_points(hemis, depth))
    drift = float("nan")
    if t.wm != t.csf:
        drift = _wm_drift(image, affine, hemis, depth, t)
        if abs(drift) > max_wm_drift:
            reason = (f"no WM plateau: intensity changes by {drift:.0%} of the WM-CSF contrast from "
                      f"{depth:.1f} to {2 * depth:.1f} mm inside the white surface (a ramp, not a cortical slab)")
            return ImageModel(t, float("nan"), voxel, False, reason, noise, drift)
    sigma_max = 1.5 + voxel if sigma_max_mm is None else float(sigma_max_mm)
    if not (t.wm != t.gm and t.gm != t.csf and t.wm != t.csf):
        return ImageModel(t, float("nan"), voxel, False, "no tissue contrast", noise)
    lines = LineSet.concat([h.to_pial for h in hemis])
    idx = np.arange(0, len(lines), max(1, len(lines) // max_lines))
    sub = lines.subset(idx)
    prof = sample_profiles(image, affine, sub, step_mm=_step(voxel), margin_mm=margin_mm)
    a, b = _crossings(prof, t, margin_mm)
    h = 0.75 * voxel
    sigma = float("nan")
    for _ in range(n_iter):
        thick = b - a
        if np.isfinite(thick).sum() < 10:
            return ImageModel(t, float("nan"), voxel, False, "too few GM/WM and GM/CSF crossings", noise)
        with np.errstate(invalid="ignore"):
            sel = np.isfinite(thick) & (thick >= np.nanmedian(thick))
        s = np.stack([a[sel] - h, a[sel] + h, b[sel] - h, b[sel] + h, 0.5 * (a[sel] + b[sel])], axis=1)
        pts = sub.start[sel][:, None, :] + s[:, :, None] * sub.direction[sel][:, None, :]
        vals = _sample_points(image, affine, pts.reshape(-1, 3)).reshape(pts.shape[:2])
        drop = (vals[:, 0] - vals[:, 1] + vals[:, 2] - vals[:, 3]) / (t.wm - t.csf)
        sigma = _solve_sigma(float(np.nanmedian(drop)), h, float(np.nanmedian(thick[sel])))
        if not np.isfinite(sigma):
            return ImageModel(t, sigma, voxel, False, "blur σ cannot be fitted: the profiles are not slab-like", noise)
        gm = float(np.nanmedian(_slab_gm(vals[:, 4], thick[sel], sigma, t.wm, t.csf)))
        t = TissueIntensities(t.wm, gm, t.csf)
        vals_all = np.where(prof.valid, prof.values, np.nan)
        from .thickness import blur_corrected_levels

        la, lb = blur_corrected_levels(t, np.nan_to_num(b - a, nan=0.0), sigma)
        a2 = locate_crossings(vals_all, prof.positions, la, t.wm > t.gm, np.nan_to_num(a, nan=0.0), 2 * sigma + 1)
        b2 = locate_crossings(vals_all, prof.positions, lb, t.gm > t.csf, np.where(np.isfinite(b), b, prof.length),
                              2 * sigma + 1)
        a, b = np.where(np.isnan(a2), a, a2), np.where(np.isnan(b2), b, b2)
    sigma_edges = sigma
    ok = np.isfinite(a) & np.isfinite(b)
    ramp_ratio = float("nan")
    if ok.sum() >= 10:
        sigma, ramp_ratio = _sigma_by_residual(prof, t, a, b, ok, sigma_edges, sigma_max)
    if sigma > sigma_max:
        return ImageModel(t, sigma, voxel, False, f"blur σ {sigma:.2f} mm > {sigma_max:.2f} mm: no cortical slab",
                          noise, drift, sigma_edges, ramp_ratio)
    rel = (t.gm - t.csf) / (t.wm - t.csf)
    if not 0.1 <= rel <= 0.9:
        return ImageModel(t, sigma, voxel, False, f"GM level not between WM and CSF ({rel:.2f} of their contrast)",
                          noise, drift, sigma_edges, ramp_ratio)
    if ramp_ratio > max_ramp_ratio:
        return ImageModel(t, sigma, voxel, False,
                          f"a plain WM-to-CSF intensity ramp explains the profiles better than a cortical slab "
                          f"(median residual ratio slab/ramp {ramp_ratio:.2f} > {max_ramp_ratio:.2f})",
                          noise, drift, sigma_edges, ramp_ratio)
    return ImageModel(t, sigma, voxel, True, "", noise, drift, sigma_edges, ramp_ratio)


def _sigma_by_residual(prof: Profiles, t: TissueIntensities, a: FloatArray, b: FloatArray, ok: NDArray[np.bool_],
                       sigma0: float, sigma_max: float, max_lines: int = SIGMA_FIT_LINES) -> tuple[float, float]:
    """Blur σ (mm) of the slab model that explains the profiles best, and how much better it does than a ramp.

    σ minimises the mean squared residual of the per-line slab fits (``profiles.fit_slab``: edges, sulcal gap and
    gain free per line) over up to ``max_lines`` lines with both half-way crossings (evenly strided): the
    profile-likelihood estimate of the one σ the measure then uses, so σ and the edge positions come from the same
    forward model. Search: the cost on 7 values of σ within ±35 % of ``sigma0`` (extended past an edge minimum,
    within 0.15 mm to ``sigma_max`` + 0.5 mm), a parabola through the lowest and its neighbours, then 5 values
    0.03 mm apart around that vertex and the vertex of a least-squares parabola through them
    (:func:`_parabola_minimum`): a grid, not a bracketing search, because the cost of iterative fits jitters at the
    0.01 mm scale and a bracketing search can stop in a spurious dip; the fine stage is narrow because the cost is
    steeper below its minimum than above it, which would pull a wide parabola's vertex upwards. The second value
    is the median over those lines of the slab fit's residual rms divided by that of a plain WM→CSF ramp
    (``profiles.fit_ramp``): < 1 where the image shows a cortical slab.

    Why not the edge-drop estimate alone: it matches the median intensity drop around the median half-way crossings
    to a single slab of the median thickness, which ignores the spread of thicknesses, the sulcal gap and the
    non-Gaussian edge of trilinearly interpolated coarse voxels; on the demo images at 2 mm it reads σ ≈ 1.5 mm
    where the profiles are best explained by ≈ 1.25 mm, and too large a σ makes every fitted slab thinner
    (≈ −0.15 mm per +0.1 mm of σ at 2 mm; docs/qc.md)."""
    idx = np.flatnonzero(ok)
    idx = idx[:: max(1, len(idx) // max_lines)]
    sub = Profiles(prof.values[idx], prof.positions, prof.valid[idx], prof.length[idx])
    a0, b0 = a[idx], b[idx]
    levels = (t.wm, t.gm, t.csf)
    scale = float((t.wm - t.csf) ** 2)

    def cost(sigma: float) -> float:
        ms = fit_slab(sub, levels, float(sigma), a0, b0).rms ** 2
        ms = ms[np.isfinite(ms)]
        return float(np.mean(ms)) / scale if ms.size else float("inf")

    lo_all, hi_all = 0.15, sigma_max + 0.5
    start = sigma0 if np.isfinite(sigma0) and sigma0 > 0 else 0.5 * (lo_all + hi_all)
    grid = np.unique(np.clip(start * np.linspace(0.65, 1.35, 7), lo_all, hi_all))
    costs = np.array([cost(x) for x in grid])
    for _ in range(3):  # the minimum at the grid's edge: extend the grid past it
        i = int(np.argmin(costs))
        step = (grid[-1] - grid[0]) / max(len(grid) - 1, 1)
        if 0 < i < len(grid) - 1 or step <= 0:
            break
        new = grid[0] - step * np.arange(1, 4)[::-1] if i == 0 else grid[-1] + step * np.arange(1, 4)
        new = new[(new >= lo_all) & (new <= hi_all)]
        if new.size == 0:
            break
        new_costs = np.array([cost(x) for x in new])
        grid, costs = (np.concatenate([new, grid]), np.concatenate([new_costs, costs])) if i == 0 else \
            (np.concatenate([grid, new]), np.concatenate([costs, new_costs]))
    coarse = _parabola_minimum(grid, costs, half_width=1)
    fine = np.clip(coarse + FINE_STEPS_MM, lo_all, hi_all)
    sigma = _parabola_minimum(fine, np.array([cost(x) for x in fine]), half_width=len(fine))
    if not np.isfinite(sigma):
        sigma = sigma0
    if not np.isfinite(sigma):
        return sigma, float("nan")
    fit = fit_slab(sub, levels, sigma, a0, b0)
    rms_ramp = fit_ramp(sub, levels, np.minimum(fit.a, fit.b) - sigma, np.abs(fit.b - fit.a) + 2.0 * sigma, fit.k,
                        fit.weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(np.nanmedian(fit.rms / rms_ramp))
    return sigma, ratio


def _parabola_minimum(x: FloatArray, y: FloatArray, half_width: int = 2) -> float:
    """Minimum of a least-squares parabola through the lowest point of ``y(x)`` and up to ``half_width`` neighbours
    on each side (smooths the small jitter of a cost made of iterative fits); the lowest grid point when the
    parabola is not convex or its vertex leaves those points."""
    if not np.isfinite(y).any():
        return float("nan")
    i = int(np.argmin(np.where(np.isfinite(y), y, np.inf)))
    sl = slice(max(0, i - half_width), min(len(x), i + half_width + 1))
    xs, ys = x[sl], y[sl]
    if len(xs) >= 3 and np.isfinite(ys).all():
        c2, c1, _ = np.polyfit(xs, ys, 2)
        if c2 > 0:
            vertex = -c1 / (2.0 * c2)
            if xs[0] <= vertex <= xs[-1]:
                return float(vertex)
    return float(x[i])


def _measure_lines(image: NDArray, affine: NDArray, lines: LineSet, model: ImageModel, *, margin_mm: float,
                   max_se_mm: float, floor_per_mm: float, ramp_ratio: float,
                   chunk: int = 6000
                   ) -> tuple[FloatArray, FloatArray, NDArray[np.int8], FloatArray, FloatArray]:
    """Per line: fitted thickness, standard error, status, half-way-crossing thickness, residual rms."""
    n = len(lines)
    thick, se, rms_all = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    cross = np.full(n, np.nan)
    status = np.full(n, STATUS_OUTSIDE, dtype=np.int8)
    t = model.tissue
    step = _step(model.voxel_mm)
    if np.isfinite(model.sigma_mm):  # 3 σ of plateau on both sides is enough for the fit
        margin_mm = min(margin_mm, max(2.0, 3.0 * model.sigma_mm))
    order = np.argsort(lines.length, kind="stable")  # similar lengths together: less padding per chunk
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        prof = sample_profiles(image, affine, lines.subset(idx), step_mm=step, margin_mm=margin_mm)
        a0, b0 = _crossings(prof, t, margin_mm)
        cross[idx] = b0 - a0
        inside = prof.valid.sum(1) >= 0.8 * ((np.minimum(prof.length, 6.0) + 2 * margin_mm) / step)
        if not model.slab_ok:
            status[idx] = np.where(inside, STATUS_MISFIT, STATUS_OUTSIDE)
            continue
        fit = fit_slab(prof, model.levels, model.sigma_mm, a0, b0, oversampling=max(1.0, model.voxel_mm / step))
        rms_all[idx] = fit.rms
        th = fit.thickness
        # both edges inside the fitted samples with SPARE_SIGMAS σ to spare: an edge at the window's end is not seen
        used = fit.weights > 0
        first = np.where(used.any(1), prof.positions[np.argmax(used, axis=1)], np.inf)
        last = np.where(used.any(1), prof.positions[used.shape[1] - 1 - np.argmax(used[:, ::-1], axis=1)], -np.inf)
        spare = SPARE_SIGMAS * model.sigma_mm
        ok_fit = (np.isfinite(th) & (th > 0) & (fit.n_samples >= 8)
                  & (fit.a - first >= spare) & (last - fit.b >= spare))
        # misfit: a residual above what noise and the model's floor explain, and not clearly smaller than the
        # residual of a plain WM→CSF intensity ramp — then the profile shows no cortical slab
        misfit = fit.rms > model.misfit_rms(fit.k, floor_per_mm)
        if misfit.any():
            sel = np.flatnonzero(misfit)
            width0 = np.abs(fit.b[sel] - fit.a[sel]) + 2.0 * model.sigma_mm
            start0 = np.minimum(fit.a[sel], fit.b[sel]) - model.sigma_mm
            sub = Profiles(prof.values[sel], prof.positions, prof.valid[sel], prof.length[sel])
            rms_ramp = fit_ramp(sub, model.levels, start0, width0, fit.k[sel], fit.weights[sel])
            misfit[sel] = fit.rms[sel] > ramp_ratio * rms_ramp
        resolved = fit.se_thickness <= max_se_mm
        st = np.where(~inside, STATUS_OUTSIDE,
                      np.where(misfit, STATUS_MISFIT,
                               np.where(ok_fit & resolved, STATUS_OK, STATUS_UNRESOLVED)))
        status[idx] = st.astype(np.int8)
        thick[idx] = np.where(st == STATUS_OK, th, np.nan)
        se[idx] = fit.se_thickness
    return thick, se, status, cross, rms_all


def measure_thickness(image: NDArray, affine: NDArray, hemi: HemisphereLines, model: ImageModel, *,
                      margin_mm: float = 3.0, max_se_mm: float = 0.5, floor_per_mm: float = 0.012,
                      ramp_ratio: float = 0.8
                      ) -> ThicknessResult:
    """Image thickness of every vertex of ``hemi`` with FreeSurfer's definition (module docstring).

    ``model``: :func:`calibrate_lines` of this image. A line counts as measured when the slab model fits its
    profile (residual rms ≤ :meth:`ImageModel.misfit_rms`) and its thickness has a standard error
    ≤ ``max_se_mm``. Values are capped at FreeSurfer's 5 mm.
    """
    both = LineSet.concat([hemi.to_pial, hemi.from_pial])
    th, se, st, cross, rms = _measure_lines(image, affine, both, model, margin_mm=margin_mm, max_se_mm=max_se_mm,
                                            floor_per_mm=floor_per_mm, ramp_ratio=ramp_ratio)
    n = hemi.n
    diff = (th - both.length).reshape(2, n)
    var = (se ** 2).reshape(2, n)
    ok = (st == STATUS_OK).reshape(2, n)
    lines_ok = ok.sum(0).astype(np.int8)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_diff = np.where(ok, diff, 0.0).sum(0) / np.maximum(lines_ok, 1)
        se_v = np.sqrt(np.where(ok, var, 0.0).sum(0)) / np.maximum(lines_ok, 1)
    thickness = np.where(lines_ok > 0, np.minimum(hemi.surface_thickness + mean_diff, CAP_MM), np.nan)
    st2 = st.reshape(2, n)
    best = np.where(ok.any(0), STATUS_OK, np.min(np.where(st2 == STATUS_OK, 99, st2), axis=0)).astype(np.int8)
    cr = cross.reshape(2, n)
    with np.errstate(invalid="ignore"):
        crossings = np.minimum(hemi.surface_thickness + np.nanmean(cr - both.length.reshape(2, n), axis=0), CAP_MM)
    return ThicknessResult(thickness, np.where(lines_ok > 0, se_v, np.nan), lines_ok, best, crossings, model,
                           {"rms": rms.reshape(2, n), "line_status": st2})
