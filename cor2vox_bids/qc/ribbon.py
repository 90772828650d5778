"""Ribbon Dice inside the brain: a 3-class intensity mixture fitted within the pial surface + a few mm.

Fitted over the whole head, scalp, muscle and marrow take part in the mixture and land in "GM"; inside the brain mask
(voxels with pial SDF < ``margin_mm``) the three classes are CSF, GM and WM. The mixture is a 1-D Gaussian mixture
fitted by EM on a 256-bin histogram of the mask's intensities (numpy; each voxel is then labelled by the most
probable class).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["fit_gmm_1d", "brain_mask", "ribbon_dice_in_brain"]


def fit_gmm_1d(values: NDArray, n_classes: int = 3, n_iter: int = 200, bins: int = 256
               ) -> tuple[NDArray, NDArray, NDArray]:
    """Means, standard deviations and weights (ascending means) of a 1-D Gaussian mixture, EM on a histogram.

    Initialised at the 1/6, 3/6, 5/6 quantiles (for 3 classes); standard deviations floored at one bin width.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 10 * n_classes:
        raise ValueError(f"too few voxels ({x.size}) for a {n_classes}-class mixture")
    lo, hi = np.percentile(x, [0.1, 99.9])
    if hi <= lo:
        raise ValueError("constant intensities: no tissue classes")
    counts, edges = np.histogram(np.clip(x, lo, hi), bins=bins, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = edges[1] - edges[0]
    mu = np.quantile(x, (np.arange(n_classes) + 0.5) / n_classes)
    sd = np.full(n_classes, (hi - lo) / (2 * n_classes))
    w = np.full(n_classes, 1.0 / n_classes)
    total = counts.sum()
    for _ in range(n_iter):
        dens = w[:, None] * np.exp(-0.5 * ((centres[None, :] - mu[:, None]) / sd[:, None]) ** 2) / sd[:, None]
        resp = dens / np.maximum(dens.sum(0, keepdims=True), 1e-300)
        nk = (resp * counts).sum(1)
        mu_new = (resp * counts * centres).sum(1) / np.maximum(nk, 1e-12)
        sd = np.sqrt((resp * counts * (centres[None, :] - mu_new[:, None]) ** 2).sum(1) / np.maximum(nk, 1e-12))
        sd = np.maximum(sd, width)
        w = nk / total
        converged = np.max(np.abs(mu_new - mu)) < 1e-4 * (hi - lo)
        mu = mu_new
        if converged:
            break
    order = np.argsort(mu)
    return mu[order], sd[order], w[order]


def brain_mask(sdf_pial: NDArray, margin_mm: float = 3.0) -> NDArray[np.bool_]:
    """Voxels inside the pial surface or within ``margin_mm`` outside it."""
    return np.asarray(sdf_pial) < margin_mm


def ribbon_dice_in_brain(image: NDArray, sdf_pial: NDArray, ribbon: NDArray, *, margin_mm: float = 3.0
                         ) -> dict[str, float]:
    """Dice of the middle (GM) class of a 3-class mixture fitted inside :func:`brain_mask` with the ribbon.

    Returns ``ribbon_dice`` and the class means (``gmm_mean_{csf,gm,wm}``; lowest to highest intensity, i.e. the
    T1w order) and the mask size ``n_voxels_mask``.
    """
    mask = brain_mask(sdf_pial, margin_mm)
    values = np.asarray(image, dtype=np.float64)[mask]
    mu, sd, w = fit_gmm_1d(values)
    logp = np.log(np.maximum(w, 1e-300))[:, None] - np.log(sd)[:, None] - 0.5 * ((values[None, :] - mu[:, None])
                                                                               / sd[:, None]) ** 2
    gm = np.argmax(logp, axis=0) == 1
    rib = np.asarray(ribbon, dtype=bool)[mask]
    total = int(gm.sum()) + int(rib.sum())
    dice = float(2.0 * np.logical_and(gm, rib).sum() / total) if total else float("nan")
    return {"ribbon_dice": dice, "gmm_mean_csf": float(mu[0]), "gmm_mean_gm": float(mu[1]),
            "gmm_mean_wm": float(mu[2]), "n_voxels_mask": int(mask.sum())}
