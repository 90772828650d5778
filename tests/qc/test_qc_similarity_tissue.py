"""SSIM / PSNR / MAE and GMM tissue classes against known answers and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cor2vox_bids.qc.similarity import head_mask_from_intensity, masked_ssim, robust_minmax, similarity
from cor2vox_bids.qc.tissue import ribbon_dice, tissue_labels
from qc_phantoms import sphere_phantom


@pytest.fixture(scope="module")
def head():
    # 3-tissue head: WM r < 20, GM to 22.5, CSF to 28, background 0; partial volume, no extra blur, SNR 20
    img, aff, r = sphere_phantom(r_head=28.0, blur_sigma_vox=0.0)
    return img, r


def test_identical_images(head):
    img, r = head
    out = similarity(img, img, r < 22.5)
    assert out["ssim_brain"] == 1.0 and out["ssim_head"] == 1.0 and out["ssim_volume"] == 1.0
    assert out["psnr_brain"] == np.inf and out["psnr_head"] == np.inf
    assert out["mae_brain"] == 0.0 and out["mae_head"] == 0.0


def test_normalisation_makes_linear_rescaling_invisible(head):
    img, r = head
    out = similarity(2.0 * img + 5.0, img, r < 22.5)  # min and p99.9 map identically → same [0, 1] image
    assert out["ssim_brain"] == pytest.approx(1.0, abs=1e-12)
    assert out["mae_head"] == pytest.approx(0.0, abs=1e-12)


def test_noisy_copy_matches_scikit_image(head):
    img, r = head
    noisy = img + np.random.default_rng(3).normal(0.0, 8.0, img.shape)
    out = similarity(noisy, img, r < 22.5, head_mask=np.ones(img.shape, bool))
    a, b = robust_minmax(noisy), robust_minmax(img)
    ref_ssim = structural_similarity(a, b, data_range=1.0, win_size=7)
    assert out["ssim_volume"] == pytest.approx(ref_ssim, abs=1e-12)
    # mask = whole volume: the mask average over the non-border voxels is scikit-image's mean SSIM
    assert out["ssim_head"] == pytest.approx(ref_ssim, abs=1e-9)
    assert 0.0 < out["ssim_brain"] < 1.0 and 0.0 < out["ssim_head"] < 1.0
    assert out["psnr_volume"] == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-9)
    assert np.isfinite(out["psnr_brain"]) and out["mae_brain"] > 0


def test_psnr_and_mae_analytic():
    """Without normalisation: a constant 0.1 difference gives MAE 0.1 and PSNR 10·log10(1/0.01) = 20 dB."""
    a = np.full((16, 16, 16), 0.5)
    b = a + 0.1
    mask = np.zeros(a.shape, bool)
    mask[4:12, 4:12, 4:12] = True
    b[~mask] = 0.5  # outside the mask identical
    out = similarity(b, a, mask, head_mask=mask, normalise=False)
    assert out["mae_brain"] == pytest.approx(0.1, abs=1e-12)
    assert out["psnr_brain"] == pytest.approx(20.0, abs=1e-9)
    assert out["mae_volume"] == pytest.approx(0.1 * mask.mean(), abs=1e-12)


def test_masked_ssim_uses_only_mask_voxels():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(24, 24, 24))
    b = a.copy()
    b[:12] = rng.uniform(size=(12, 24, 24))  # first half differs
    left = np.zeros(a.shape, bool)
    left[16:] = True  # ≥ 4 voxels from the changed half: the 7³ window sees identical data
    out = masked_ssim(a, b, {"right": left})
    assert out["right"] == pytest.approx(1.0, abs=1e-9)
    assert out["volume"] < 0.8


def test_head_mask_from_intensity_fills_holes():
    x = np.zeros((20, 20, 20))
    x[5:15, 5:15, 5:15] = 1.0
    x[9:11, 9:11, 9:11] = 0.0  # dark hole inside
    m = head_mask_from_intensity(x)
    assert m.sum() == 1000 and m[10, 10, 10]


def test_gmm_recovers_three_tissues(head):
    img, r = head
    mask = r < 27.0
    labels = tissue_labels(img, mask, n_classes=3, seed=0)
    assert set(np.unique(labels[~mask])) == {0}
    means = [img[labels == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # CSF < GM < WM
    ribbon = (r > 20.0) & (r <= 22.5)
    # Only boundary voxels (partial volume + noise sd 5.5) can be misclassified: measured 0.94
    assert ribbon_dice(labels, ribbon) > 0.9
    assert ribbon_dice(labels, labels == 2) == 1.0
    assert ribbon_dice(labels, np.zeros(labels.shape, bool)) == 0.0
