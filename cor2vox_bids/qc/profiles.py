"""Image profiles along measurement lines and a forward-model fit of the cortical slab in each profile.

Model of the intensity along a line (s = mm from the line's white point, towards its pial point)::

    I(s) = k · [ C + (G − C)·(Φ((b − s)/σ) + Φ((s − b − g)/σ)) + (W − G)·Φ((a − s)/σ) ]

a GM slab from the GM/WM boundary ``a`` to the GM/CSF boundary ``b`` seen through a Gaussian point-spread function σ,
WM before it, a CSF gap of width ``g`` after it and then grey matter again (the opposite bank of a sulcus; a wide
gap is plain CSF), with a local gain ``k`` (bias field). W, G, C (tissue levels) and σ are per image
(``thickness.calibrate_lines``); a, b, g, k are fitted per line by damped Gauss–Newton, all lines at once.

The fit is the blur correction: thickness = b − a is read from the slab edges, not from half-way levels. It is
accepted only where the slab model explains the profile (residual gate) and the edges are determined (standard
error of b − a from the fit's covariance); otherwise the line is flagged:

* ``STATUS_OK`` (0): fitted, the model fits, thickness determined;
* ``STATUS_MISFIT`` (1): the slab model does not describe the profile (e.g. a plain intensity ramp);
* ``STATUS_UNRESOLVED`` (2): the model fits but b − a is not determined (e.g. sulcal banks touching: no CSF to see);
* ``STATUS_OUTSIDE`` (3): the line leaves the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .lines import LineSet

__all__ = [
    "STATUS_OK",
    "STATUS_MISFIT",
    "STATUS_UNRESOLVED",
    "STATUS_OUTSIDE",
    "STATUS_NAMES",
    "Profiles",
    "SlabFit",
    "sample_profiles",
    "slab_model",
    "fit_slab",
    "fit_ramp",
    "normal_cdf_and_kernel",
]

FloatArray = NDArray[np.float64]

STATUS_OK, STATUS_MISFIT, STATUS_UNRESOLVED, STATUS_OUTSIDE = 0, 1, 2, 3
STATUS_NAMES = {STATUS_OK: "ok", STATUS_MISFIT: "misfit", STATUS_UNRESOLVED: "unresolved", STATUS_OUTSIDE: "outside"}

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def world_to_voxel(points: FloatArray, affine: FloatArray) -> FloatArray:
    """Map world points (..., 3) to continuous voxel coordinates with inv(affine)."""
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    return np.asarray(points, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]


@dataclass
class Profiles:
    """Samples (n, K) at ``positions`` (K,) mm along n lines; ``valid`` marks samples inside the line's window."""

    values: FloatArray
    positions: FloatArray
    valid: NDArray[np.bool_]
    length: FloatArray


def sample_profiles(image: NDArray, affine: FloatArray, lines: LineSet, *, step_mm: float, margin_mm: float,
                    max_length_mm: float = 6.0) -> Profiles:
    """Trilinear samples along each line from ``margin_mm`` before its start to ``margin_mm`` past its end.

    One common position grid for all lines (up to ``max_length_mm`` + 2·margin); samples past a line's own end
    + margin or outside the image are not ``valid``.
    """
    length = np.minimum(lines.length, max_length_mm)
    n_steps = int(np.ceil((float(length.max(initial=0.0)) + 2 * margin_mm) / step_mm)) + 1
    positions = -margin_mm + step_mm * np.arange(n_steps)
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    start = lines.start @ inv[:3, :3].T + inv[:3, 3]
    dirv = lines.direction @ inv[:3, :3].T
    coords = start[:, None, :] + positions[None, :, None] * dirv[:, None, :]  # (n, K, 3) voxel coordinates
    values = ndimage.map_coordinates(np.asarray(image, dtype=np.float32), coords.reshape(-1, 3).T, order=1,
                                     mode="constant", cval=np.nan, prefilter=False, output=np.float64)
    values = values.reshape(coords.shape[:2])
    valid = np.isfinite(values) & (positions[None, :] <= (length[:, None] + margin_mm + 0.5 * step_mm))
    return Profiles(values, positions, valid, length)


# Abramowitz & Stegun 7.1.26: erf(x) = 1 − (a1·t + … + a5·t⁵)·exp(−x²), t = 1/(1 + p·x), |error| ≤ 1.5e-7
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def normal_cdf_and_kernel(z: NDArray) -> tuple[NDArray, NDArray]:
    """Φ(z) (absolute error ≤ 1e-7 in float64, ≤ 5e-7 in float32) and exp(−z²/2), from one exponential and in
    place (scipy's ndtr is ~40× slower here). Computed in the dtype of ``z``."""
    z = np.asarray(z)
    dt = z.dtype.type if z.dtype in (np.float32, np.float64) else np.float64
    e = np.multiply(z, z, dtype=dt)
    e *= dt(-0.5)
    np.exp(e, out=e)
    t = np.abs(z).astype(dt, copy=False)
    t *= dt(_AS_P / np.sqrt(2.0))
    t += dt(1.0)
    np.reciprocal(t, out=t)
    a1, a2, a3, a4, a5 = (dt(x) for x in _AS_A)
    tail = t * a5
    for coef in (a4, a3, a2, a1):
        tail += coef
        tail *= t
    tail *= e
    tail *= dt(0.5)  # Φ(−|z|)
    np.subtract(dt(1.0), tail, out=tail, where=z >= 0)  # Φ(z) = 1 − Φ(−z) for z ≥ 0
    return tail, e


def _terms(s: FloatArray, a: FloatArray, b: FloatArray, g: FloatArray, sigma: float):
    za = (a[:, None] - s[None, :]) / sigma
    zb = (b[:, None] - s[None, :]) / sigma
    zg = (s[None, :] - b[:, None] - g[:, None]) / sigma
    return za, zb, zg


def slab_model(s: FloatArray, a: FloatArray, b: FloatArray, g: FloatArray, k: FloatArray,
               levels: tuple[float, float, float], sigma: float) -> FloatArray:
    """The model intensity (n, K) at positions ``s`` (K,) for per-line parameters (n,) each."""
    wm, gm, csf = levels
    za, zb, zg = _terms(s, np.asarray(a, float), np.asarray(b, float), np.asarray(g, float), sigma)
    fa, fb, fg = (normal_cdf_and_kernel(z)[0] for z in (za, zb, zg))
    base = csf + (gm - csf) * (fb + fg) + (wm - gm) * fa
    return np.asarray(k, float)[:, None] * base


@dataclass
class SlabFit:
    """Per-line fit: edges a, b (mm along the line), gap g, gain k, residual rms, standard error of b − a."""

    a: FloatArray
    b: FloatArray
    g: FloatArray
    k: FloatArray
    rms: FloatArray
    se_thickness: FloatArray
    n_samples: NDArray[np.int64]
    weights: FloatArray  # (n, K) samples the fit used (the window)

    @property
    def thickness(self) -> FloatArray:
        return self.b - self.a


def _window(prof: Profiles, levels: tuple[float, float, float], a0: FloatArray, b0: FloatArray) -> NDArray:
    """Samples the model may describe: cut the profile where the WM of another fold appears (beyond the pial
    edge: the intensity rises above (W + G)/2 again) or where the WM blade ends (before the white edge: it
    falls below (W + G)/2 again). Intensities are compared after dividing by the line's WM-side gain."""
    wm, gm, _ = levels
    level = 0.5 * (wm + gm)
    vals = np.where(prof.valid, prof.values, np.nan)
    s = prof.positions[None, :]
    with np.errstate(invalid="ignore"):
        high = vals > level if wm > gm else vals < level
    after = s > (b0[:, None] + 0.5)
    beyond = np.cumsum(high & after, axis=1) > 0  # from the first WM-like sample past the pial edge on
    before = s < (a0[:, None] - 0.5)
    low_inside = (~high) & np.isfinite(vals) & before
    # from the last non-WM sample before the white edge backwards
    rev = np.cumsum(low_inside[:, ::-1], axis=1)[:, ::-1] > 0
    return prof.valid & ~beyond & ~rev


def _evaluate(s: NDArray, a: FloatArray, b: FloatArray, g: FloatArray, k: FloatArray,
              levels: tuple[float, float, float], sigma: float, y: NDArray, wgt: NDArray):
    """Weighted residual (n, K), its cost (n,) and the Jacobian columns (n, K) × 4 at (a, b, g, k).

    Profile-sized arrays are float32 (``s``, ``y``, ``wgt`` given as float32): half the memory traffic; the
    parameters and the cost stay float64."""
    wm, gm, csf = levels
    f32 = np.float32
    inv = f32(1.0 / sigma)
    za = a.astype(f32)[:, None] - s[None, :]
    za *= inv
    zb = b.astype(f32)[:, None] - s[None, :]
    zb *= inv
    zg = s[None, :] - (b + g).astype(f32)[:, None]
    zg *= inv
    (fa, ea), (fb, eb), (fg, eg) = (normal_cdf_and_kernel(z) for z in (za, zb, zg))
    base = f32(csf) + f32(gm - csf) * (fb + fg) + f32(wm - gm) * fa
    kk = k.astype(f32)[:, None]
    r = (kk * base - y) * wgt
    c = 1.0 / (sigma * np.sqrt(2.0 * np.pi))
    kw = kk * wgt
    pa = ea * f32(c * (wm - gm)) * kw
    pg = eg * f32(c * (gm - csf)) * kw
    pb = eb * f32(c * (gm - csf)) * kw - pg
    return r, np.einsum("nk,nk->n", r, r, dtype=np.float64), (pa, pb, -pg, base * wgt)


def _normal_equations(cols) -> NDArray:
    """JᵀJ (n, 4, 4) from the four Jacobian columns (n, K) each."""
    n = cols[0].shape[0]
    jtj = np.empty((n, 4, 4))
    for i in range(4):
        for j in range(i, 4):
            jtj[:, i, j] = jtj[:, j, i] = np.einsum("nk,nk->n", cols[i], cols[j], dtype=np.float64)
    return jtj



def _solve_batched(a: NDArray, b: NDArray) -> NDArray:
    """``np.linalg.solve`` over a stack of small systems; a singular system gives NaN instead of failing the batch."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        out = np.full(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + b.shape[-2:], np.nan)
        ok = np.all(np.isfinite(a), axis=(-2, -1))
        ok[ok] = np.linalg.matrix_rank(a[ok]) == a.shape[-1]
        bb = np.broadcast_to(b, out.shape)
        out[ok] = np.linalg.solve(a[ok], bb[ok])
        return out


def fit_slab(prof: Profiles, levels: tuple[float, float, float], sigma: float, a0: FloatArray, b0: FloatArray,
             *, n_iter: int = 10, tol_mm: float = 0.005, oversampling: float = 1.0) -> SlabFit:
    """Damped Gauss–Newton (Levenberg) fit of (a, b, g, k) of :func:`slab_model` to every profile, from (a0, b0).

    Lines leave the iteration once an accepted step moves both edges by less than ``tol_mm`` (or the damping
    has grown past 1e4). ``oversampling``: samples per independent noise value along the line (voxel size /
    step), used to scale the standard error. The gap g is kept in [0, window]; a and b in the sampled range.
    """
    n, _ = prof.values.shape
    s = prof.positions.astype(np.float32)
    a = np.where(np.isfinite(a0), a0, 0.0).astype(np.float64)
    b = np.where(np.isfinite(b0), b0, prof.length).astype(np.float64)
    b = np.maximum(b, a + 0.1)
    wgt = _window(prof, levels, a, b).astype(np.float32)
    y = np.where(wgt > 0, prof.values, 0.0).astype(np.float32)
    gmax = float(s[-1] - s[0])
    g = np.full(n, 2.0 * sigma + 1.0)
    m0 = slab_model(prof.positions, a, b, g, np.ones(n), levels, sigma) * wgt
    den = (m0 * m0).sum(1)
    k = np.divide((y * m0).sum(1), den, out=np.ones(n), where=den > 0)
    lo, hi = float(s[0]), float(s[-1])
    eye = np.eye(4)[None]
    cost = np.empty(n)
    act = np.arange(n)  # lines still iterating
    r, cost_a, cols = _evaluate(s, a, b, g, k, levels, sigma, y, wgt)
    cost[:] = cost_a
    # the Jacobian columns at every line's accepted parameters: a line's row is filled in when it leaves the
    # iteration (the rows are independent, so this is what evaluating all lines at the end would give)
    cols_f = tuple(c.copy() for c in cols)
    lam = np.full(n, 1e-2)
    for _ in range(n_iter):
        if act.size == 0:
            break
        jtj = _normal_equations(cols)
        jtr = np.stack([np.einsum("nk,nk->n", c, r, dtype=np.float64) for c in cols], axis=1)
        diag = np.einsum("nii->ni", jtj)
        damped = jtj + (lam[act][:, None] * diag + 1e-9)[:, :, None] * eye
        step = np.nan_to_num(_solve_batched(damped, -jtr[..., None])[..., 0])
        step[:, :3] = np.clip(step[:, :3], -1.0, 1.0)  # at most 1 mm per iteration
        a1 = np.clip(a[act] + step[:, 0], lo, hi)
        b1 = np.clip(b[act] + step[:, 1], lo, hi)
        g1 = np.clip(g[act] + step[:, 2], 0.0, gmax)
        k1 = np.clip(k[act] + step[:, 3], 0.2 * k[act], 5.0 * k[act])
        r1, cost1, cols1 = _evaluate(s, a1, b1, g1, k1, levels, sigma, y[act], wgt[act])
        better = cost1 < cost[act]
        moved = np.maximum(np.abs(a1 - a[act]), np.abs(b1 - b[act]))
        ia = act[better]
        a[ia], b[ia], g[ia], k[ia], cost[ia] = a1[better], b1[better], g1[better], k1[better], cost1[better]
        lam[act] = np.where(better, lam[act] * 0.3, lam[act] * 10.0)
        keep = ~((better & (moved < tol_mm)) | (lam[act] > 1e4))
        bm = better[:, None]
        done = ~keep
        if done.any():
            leaving = act[done]
            for full, c1, c0 in zip(cols_f, cols1, cols):
                full[leaving] = np.where(bm[done], c1[done], c0[done])
        bk = bm[keep]
        r = np.where(bk, r1[keep], r[keep])
        cols = tuple(np.where(bk, c1[keep], c0[keep]) for c1, c0 in zip(cols1, cols))
        act = act[keep]
    for full, c in zip(cols_f, cols):  # lines still iterating after n_iter
        full[act] = c
    cost_f = cost
    # covariance of the parameters at the solution: var(b − a) = cᵀ (JᵀJ)⁻¹ c · s²
    jtj = _normal_equations(cols_f) + 1e-12 * eye
    n_s = wgt.sum(1).astype(np.int64)
    dof = np.maximum(n_s - 4, 1)
    rms = np.sqrt(cost_f / np.maximum(n_s, 1))
    c = np.array([-1.0, 1.0, 0.0, 0.0])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = _solve_batched(jtj, np.broadcast_to(c[None, :, None], (n, 4, 1)))[..., 0]
        var = (x @ c) * cost_f / dof * oversampling
        se = np.sqrt(np.where(var >= 0, var, np.inf))
    return SlabFit(a, b, g, k, rms, se, n_s, wgt.astype(np.float64))


def fit_ramp(prof: Profiles, levels: tuple[float, float, float], start0: FloatArray, width0: FloatArray,
             k0: FloatArray, weights: NDArray, *, n_iter: int = 10) -> FloatArray:
    """Residual rms of the alternative without a slab: a straight intensity ramp from WM to CSF,
    k·[W + (C − W)·clip((s − s₀)/w, 0, 1)], with free start s₀, width w (0.2–12 mm) and gain k (fsaverage's
    averaged T1 looks like this along white→pial lines). Damped Gauss–Newton on the slab fit's samples."""
    wm, _, csf = levels
    s = prof.positions
    wgt = np.asarray(weights, dtype=np.float64)
    y = np.where(wgt > 0, prof.values, 0.0)
    s0, w, k = (np.asarray(x, dtype=np.float64).copy() for x in (start0, width0, k0))
    eye = np.eye(3)[None]

    def evaluate(s0_, w_, k_):
        u = (s[None, :] - s0_[:, None]) / w_[:, None]
        inside = (u > 0) & (u < 1)
        base = wm + (csf - wm) * np.clip(u, 0.0, 1.0)
        r = (k_[:, None] * base - y) * wgt
        d = np.where(inside, -k_[:, None] * (csf - wm) / w_[:, None], 0.0) * wgt
        return r, (r * r).sum(1), (d, d * u, base * wgt)

    r, cost, cols = evaluate(s0, w, k)
    lam = np.full(len(s0), 1e-2)
    for _ in range(n_iter):
        jtj = np.empty((len(s0), 3, 3))
        for i in range(3):
            for j in range(i, 3):
                jtj[:, i, j] = jtj[:, j, i] = np.einsum("nk,nk->n", cols[i], cols[j])
        jtr = np.stack([np.einsum("nk,nk->n", c, r) for c in cols], axis=1)
        diag = np.einsum("nii->ni", jtj)
        step = np.nan_to_num(_solve_batched(jtj + (lam[:, None] * diag + 1e-9)[:, :, None] * eye,
                                             -jtr[..., None])[..., 0])
        a1 = np.clip(s0 + np.clip(step[:, 0], -1, 1), s[0], s[-1])
        w1 = np.clip(w + np.clip(step[:, 1], -1, 1), 0.2, 12.0)
        k1 = np.clip(k + step[:, 2], 0.2 * k, 5.0 * k)
        r1, cost1, cols1 = evaluate(a1, w1, k1)
        better = cost1 < cost
        s0, w, k = (np.where(better, new, old) for new, old in ((a1, s0), (w1, w), (k1, k)))
        r = np.where(better[:, None], r1, r)
        cols = tuple(np.where(better[:, None], c1, c0) for c1, c0 in zip(cols1, cols))
        cost = np.where(better, cost1, cost)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    return np.sqrt(cost / np.maximum(wgt.sum(1), 1))
