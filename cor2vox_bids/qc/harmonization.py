"""Harmonization measure (numpy only): per-tissue 1-D Wasserstein distances between normalised intensity
distributions of a participant and of a reference site.

Recipe (see docs/harmonization.md): each image's intensities are normalised by its own robust range inside
the head/brain (``normalise``: the ``lo``/``hi`` percentiles map to 0 and 1, so gain and offset differences
between scanners vanish and only the *shape* of the intensity distribution remains); per tissue (WM, GM,
CSF masks from the participant's surfaces, :func:`tissue_masks`) the distribution is summarised by its
quantile function at ``N_QUANTILES`` evenly spaced probabilities. The reference site's distribution per
tissue is the 1-D Wasserstein barycentre of its participants (the mean of their quantile functions), and a
participant's distance to it is the 1-D Wasserstein-1 distance ``W1 = ∫_0^1 |Q_a(p) - Q_b(p)| dp``
(in units of the normalised intensity range). ``distance_before`` uses the participant's own T1w,
``distance_after`` the synthetic (harmonized) one; harmonization worked where after < before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "N_QUANTILES",
    "TISSUES",
    "barycentre",
    "distance_rows",
    "normalise",
    "quantile_function",
    "image_quantiles",
    "tissue_masks",
    "tissue_quantiles",
    "wasserstein_1d",
    "wasserstein_quantiles",
]

TISSUES = ("WM", "GM", "CSF")
N_QUANTILES = 1000


def normalise(image: NDArray, mask: NDArray[np.bool_], lo: float = 1.0, hi: float = 99.0) -> NDArray[np.float64]:
    """Intensities mapped so that the ``lo`` and ``hi`` percentiles inside ``mask`` become 0 and 1."""
    img = np.asarray(image, dtype=np.float64)
    values = img[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("the normalisation mask is empty")
    a, b = np.percentile(values, [lo, hi])
    if not b > a:
        raise ValueError(f"no intensity range inside the mask ({lo}th and {hi}th percentiles are both {a:g})")
    return (img - a) / (b - a)


def tissue_masks(
    sdf_white: NDArray, sdf_pial: NDArray, ribbon: NDArray, csf_shell_voxels: int = 2
) -> dict[str, NDArray]:
    """WM (inside white), GM (the ribbon) and CSF (a shell of ``csf_shell_voxels`` outside the pial surface)
    from the conditioning maps — the same masks as :func:`cor2vox_bids.qc.tissue.tissue_means`."""
    from scipy import ndimage

    inside_pial = np.asarray(sdf_pial) < 0
    shell = ndimage.binary_dilation(inside_pial, iterations=csf_shell_voxels) & ~inside_pial
    return {"WM": np.asarray(sdf_white) < 0, "GM": np.asarray(ribbon) > 0.5, "CSF": shell}


def quantile_function(values: NDArray, n: int = N_QUANTILES) -> NDArray[np.float64]:
    """The empirical quantile function at ``p = (i + 0.5) / n`` (inverse CDF, no interpolation between samples)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        raise ValueError("no values to summarise")
    p = (np.arange(n) + 0.5) / n
    idx = np.minimum((p * v.size).astype(np.int64), v.size - 1)
    return v[idx]


def barycentre(quantile_functions: list[NDArray] | NDArray) -> NDArray[np.float64]:
    """1-D Wasserstein barycentre of several distributions: the mean of their quantile functions."""
    q = np.asarray(quantile_functions, dtype=np.float64)
    if q.ndim != 2 or len(q) == 0:
        raise ValueError("expected a non-empty (k, n) stack of quantile functions")
    return q.mean(axis=0)


def wasserstein_quantiles(qa: NDArray, qb: NDArray) -> float:
    """W1 between two distributions given as quantile functions on the same probability grid."""
    qa, qb = np.asarray(qa, dtype=np.float64), np.asarray(qb, dtype=np.float64)
    if qa.shape != qb.shape:
        raise ValueError(f"quantile functions on different grids: {qa.shape} vs {qb.shape}")
    return float(np.mean(np.abs(qa - qb)))


def wasserstein_1d(u: NDArray, v: NDArray, u_weights: NDArray | None = None, v_weights: NDArray | None = None) -> float:
    """Exact W1 = ∫ |F_u(x) - F_v(x)| dx between two (weighted) samples on the real line."""
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    if u.size == 0 or v.size == 0:
        raise ValueError("both samples must be non-empty")
    uw = np.ones(u.size) if u_weights is None else np.asarray(u_weights, dtype=np.float64).ravel()
    vw = np.ones(v.size) if v_weights is None else np.asarray(v_weights, dtype=np.float64).ravel()
    if uw.shape != u.shape or vw.shape != v.shape or np.any(uw < 0) or np.any(vw < 0) or uw.sum() <= 0 or vw.sum() <= 0:
        raise ValueError("weights must be non-negative, one per value, with a positive sum")
    ou, ov = np.argsort(u), np.argsort(v)
    u, uw, v, vw = u[ou], uw[ou], v[ov], vw[ov]
    grid = np.sort(np.concatenate([u, v]))
    cu = np.concatenate([[0.0], np.cumsum(uw)]) / uw.sum()
    cv = np.concatenate([[0.0], np.cumsum(vw)]) / vw.sum()
    fu = cu[np.searchsorted(u, grid[:-1], side="right")]
    fv = cv[np.searchsorted(v, grid[:-1], side="right")]
    return float(np.sum(np.abs(fu - fv) * np.diff(grid)))


def tissue_quantiles(
    image_normalised: NDArray, masks: Mapping[str, NDArray], n: int = N_QUANTILES
) -> dict[str, NDArray]:
    """Quantile function of the normalised intensities in each tissue mask (tissues with empty masks left out)."""
    img = np.asarray(image_normalised)
    return {t: quantile_function(img[np.asarray(m, dtype=bool)], n) for t, m in masks.items() if np.any(m)}


def image_quantiles(
    image: NDArray, affine: NDArray, grid_affine: NDArray, masks: Mapping[str, NDArray], n: int = N_QUANTILES
) -> dict[str, NDArray]:
    """Per-tissue quantile functions of an image on the grid of ``masks`` (voxel -> world ``grid_affine``).

    The image is resampled (trilinear, world coordinates) onto the grid unless it is already on it, then
    normalised inside the union of the tissue masks (the head around the cortex) — the one way every image
    (reference, before, after) is summarised.
    """
    from ..geometry import ModelGrid, resample

    shape = next(iter(masks.values())).shape
    img = np.asarray(image, dtype=np.float64)
    if img.shape != shape or not np.allclose(affine, grid_affine):
        img = resample(img, np.asarray(affine, dtype=np.float64), ModelGrid(np.asarray(grid_affine), shape))
    head = np.zeros(shape, dtype=bool)
    for m in masks.values():
        head |= np.asarray(m, dtype=bool)
    return tissue_quantiles(normalise(img, head), masks, n)


def distance_rows(
    participant_id: str, before: Mapping[str, NDArray], after: Mapping[str, NDArray], reference: Mapping[str, NDArray]
) -> list[dict[str, object]]:
    """Rows ``participant_id, tissue, distance_before, distance_after`` (W1 to the reference per tissue).

    ``before``/``after``/``reference`` map tissue names to quantile functions on the same grid; a tissue
    missing from one of them gets NaN.
    """
    rows = []
    for tissue in TISSUES:
        ref = reference.get(tissue)
        row: dict[str, object] = {"participant_id": participant_id, "tissue": tissue}
        for key, src in (("distance_before", before), ("distance_after", after)):
            q = src.get(tissue)
            row[key] = float("nan") if q is None or ref is None else wasserstein_quantiles(q, ref)
        rows.append(row)
    return rows
