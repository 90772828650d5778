"""Image similarity between a synthetic and a real T1w on the same grid: SSIM, PSNR, MAE in masks.

Normalisation (both images, the same way, before any metric): robust min–max to [0, 1] with
``lo`` = the minimum and ``hi`` = the 99.9th percentile of the image over the whole volume (the project's
intensity convention, docs/architecture.md), then clipped to [0, 1]. All metrics use ``data_range = 1``.

SSIM is scikit-image's ``structural_similarity`` (3-D, 7³ uniform window, ``data_range`` given explicitly):
the volume value is its mean SSIM (which excludes a 3-voxel border); a masked value is the mean of the full SSIM
map over the mask voxels outside that border. PSNR = 10·log10(1 / MSE) over the mask (inf when identical).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.metrics import structural_similarity

__all__ = [
    "robust_minmax",
    "head_mask_from_intensity",
    "masked_ssim",
    "psnr",
    "mae",
    "similarity",
]

#: SSIM window (scikit-image default for 3-D images)
SSIM_WIN_SIZE = 7


def robust_minmax(image: NDArray, *, upper_percentile: float = 99.9) -> NDArray[np.float64]:
    """Scale to [0, 1]: (x − min) / (p99.9 − min), clipped; a constant image maps to zeros."""
    x = np.asarray(image, dtype=np.float64)
    lo = float(np.min(x))
    hi = float(np.percentile(x, upper_percentile))
    if hi <= lo:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def head_mask_from_intensity(normalised: NDArray, *, threshold: float = 0.05) -> NDArray[np.bool_]:
    """Head mask from a [0, 1] image: voxels above ``threshold``, holes filled (whole volume if that is empty)."""
    mask = ndimage.binary_fill_holes(np.asarray(normalised) > threshold)
    return mask if mask.any() else np.ones(np.shape(normalised), dtype=bool)


def _interior(shape: tuple[int, ...], pad: int) -> NDArray[np.bool_]:
    inner = np.zeros(shape, dtype=bool)
    inner[tuple(slice(pad, n - pad) for n in shape)] = True
    return inner


def masked_ssim(
    a: NDArray, b: NDArray, masks: dict[str, NDArray[np.bool_]], *, data_range: float = 1.0
) -> dict[str, float]:
    """SSIM over the volume (``"volume"``, scikit-image's mean) and averaged over each mask (NaN if empty)."""
    mssim, smap = structural_similarity(
        np.asarray(a, dtype=np.float64),
        np.asarray(b, dtype=np.float64),
        win_size=SSIM_WIN_SIZE,
        data_range=data_range,
        full=True,
    )
    inner = _interior(smap.shape, (SSIM_WIN_SIZE - 1) // 2)
    out = {"volume": float(mssim)}
    for name, mask in masks.items():
        sel = np.asarray(mask, dtype=bool) & inner
        out[name] = float(smap[sel].mean()) if sel.any() else float("nan")
    return out


def psnr(a: NDArray, b: NDArray, mask: NDArray[np.bool_] | None = None, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio (dB) in ``mask``: 10·log10(data_range² / MSE); inf when MSE is 0."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = diff if mask is None else diff[np.asarray(mask, dtype=bool)]
    if d.size == 0:
        return float("nan")
    mse = float(np.mean(d * d))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def mae(a: NDArray, b: NDArray, mask: NDArray[np.bool_] | None = None) -> float:
    """Mean absolute difference in ``mask`` (NaN if the mask is empty)."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    d = diff if mask is None else diff[np.asarray(mask, dtype=bool)]
    return float(d.mean()) if d.size else float("nan")


def similarity(
    synthetic: NDArray,
    real: NDArray,
    brain_mask: NDArray[np.bool_],
    head_mask: NDArray[np.bool_] | None = None,
    *,
    normalise: bool = True,
) -> dict[str, float | str]:
    """SSIM / PSNR (dB) / MAE of ``synthetic`` vs ``real`` (same grid) in the brain mask, the head and the volume.

    ``brain_mask``: inside the pial surfaces. ``head_mask``: if None, from the normalised real image
    (:func:`head_mask_from_intensity`). With ``normalise`` both images go through :func:`robust_minmax`;
    otherwise they must already be on [0, 1]. Keys: ``ssim_brain``, ``psnr_brain``, ``mae_brain``, ``ssim_head``,
    ``psnr_head``, ``mae_head``, ``ssim_volume``, ``psnr_volume``, ``mae_volume``, ``normalisation``,
    ``n_voxels_brain``, ``n_voxels_head``.
    """
    syn = np.asarray(synthetic, dtype=np.float64)
    ref = np.asarray(real, dtype=np.float64)
    if syn.shape != ref.shape or syn.ndim != 3:
        raise ValueError(f"images must be 3-D on the same grid, got {syn.shape} and {ref.shape}")
    brain = np.asarray(brain_mask, dtype=bool)
    if brain.shape != syn.shape:
        raise ValueError("brain_mask must have the image shape")
    if normalise:
        syn, ref = robust_minmax(syn), robust_minmax(ref)
    head = head_mask_from_intensity(ref) if head_mask is None else np.asarray(head_mask, dtype=bool)
    ssim = masked_ssim(syn, ref, {"brain": brain, "head": head})
    return {
        "ssim_brain": ssim["brain"],
        "psnr_brain": psnr(syn, ref, brain),
        "mae_brain": mae(syn, ref, brain),
        "ssim_head": ssim["head"],
        "psnr_head": psnr(syn, ref, head),
        "mae_head": mae(syn, ref, head),
        "ssim_volume": ssim["volume"],
        "psnr_volume": psnr(syn, ref),
        "mae_volume": mae(syn, ref),
        "n_voxels_brain": int(brain.sum()),
        "n_voxels_head": int(head.sum()),
        "normalisation": "min to 0, 99.9th percentile to 1, clipped" if normalise else "none (inputs on [0, 1])",
    }
