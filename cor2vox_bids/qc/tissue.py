"""Tissue classes from image intensities (Gaussian mixture) and their agreement with the cortical ribbon."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["fit_tissue_mixture", "tissue_labels", "ribbon_dice", "tissue_means", "GM_LABEL"]

#: label of grey matter in :func:`tissue_labels` with 3 classes (1 = CSF, 2 = GM, 3 = WM on a T1w)
GM_LABEL = 2

#: voxels used to fit the mixture (a strided subsample above this count; prediction uses all voxels)
_MAX_FIT_VOXELS = 200_000


def fit_tissue_mixture(
    image: NDArray, head_mask: NDArray[np.bool_], n_classes: int = 3, seed: int = 0
) -> tuple[GaussianMixture, NDArray[np.int64]]:  # noqa: F821
    """Fit a 1-D Gaussian mixture to the intensities inside ``head_mask``.

    Returns the fitted model and ``order``: component indices sorted by increasing mean.
    """
    from sklearn.mixture import GaussianMixture  # ~2 s to import: only when this whole-head mixture is used

    values = np.asarray(image, dtype=np.float64)[np.asarray(head_mask, dtype=bool)]
    if values.size < 10 * n_classes:
        raise ValueError(f"too few voxels in the head mask ({values.size}) for {n_classes} classes")
    stride = max(1, values.size // _MAX_FIT_VOXELS)
    gmm = GaussianMixture(n_components=n_classes, covariance_type="full", random_state=seed, n_init=2)
    gmm.fit(values[::stride, None])
    return gmm, np.argsort(gmm.means_.ravel())


def tissue_labels(
    image: NDArray, head_mask: NDArray[np.bool_], n_classes: int = 3, seed: int = 0
) -> NDArray[np.int16]:
    """Label every head voxel 1…n_classes by increasing mean intensity (T1w: 1 CSF, 2 GM, 3 WM); 0 outside."""
    mask = np.asarray(head_mask, dtype=bool)
    gmm, order = fit_tissue_mixture(image, mask, n_classes, seed)
    rank = np.empty(n_classes, dtype=np.int16)
    rank[order] = np.arange(1, n_classes + 1, dtype=np.int16)
    labels = np.zeros(mask.shape, dtype=np.int16)
    labels[mask] = rank[gmm.predict(np.asarray(image, dtype=np.float64)[mask][:, None])]
    return labels


def ribbon_dice(labels: NDArray, ribbon_mask: NDArray[np.bool_], gm_label: int = GM_LABEL) -> float:
    """Dice 2|A∩B|/(|A|+|B|) of the GM class and the ribbon mask; NaN if both are empty."""
    gm = np.asarray(labels) == gm_label
    ribbon = np.asarray(ribbon_mask, dtype=bool)
    if gm.shape != ribbon.shape:
        raise ValueError(f"labels {gm.shape} and ribbon {ribbon.shape} differ in shape")
    total = int(gm.sum()) + int(ribbon.sum())
    return float(2.0 * np.logical_and(gm, ribbon).sum() / total) if total else float("nan")


def tissue_means(image: NDArray, maps: dict[str, NDArray]) -> dict[str, float]:
    """Mean image intensity in white matter (inside the white SDF), cortex (ribbon) and a 2-voxel shell outside
    the pial SDF; keys ``mean_intensity_{wm,gm,csf}``, NaN for an empty mask."""
    from scipy import ndimage

    inside_pial = maps["sdf_pial"] < 0
    shell = ndimage.binary_dilation(inside_pial, iterations=2) & ~inside_pial
    masks = {"wm": maps["sdf_white"] < 0, "gm": maps["ribbon"] > 0.5, "csf": shell}
    return {f"mean_intensity_{k}": float(image[m].mean()) if m.any() else float("nan") for k, m in masks.items()}
