"""The frame/identity check: the T1w must step down WM > GM > CSF across the surfaces.

A folded phantom (a ball whose white surface radius varies with direction, cortex 3 mm thick) is rendered with
partial volume, blur and noise; its own surfaces pass, shifted or another phantom's surfaces fail, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from cor2vox_bids.errors import SurfaceError
from cor2vox_bids.geometry import Hemisphere, Surface
from cor2vox_bids.geometry.validation import (
    CONTRAST_MIN_SCORE,
    best_translation,
    check_tissue_contrast,
    sample_volume,
    tissue_contrast,
)
from meshes import icosphere

SPACING = 1.5
SHAPE = (64, 64, 64)
THICK = 3.0


def _white_radius(u: np.ndarray, size: float = 24.0) -> np.ndarray:
    """Radius of the folded white surface in unit directions u (n, 3)."""
    theta = np.arccos(np.clip(u[:, 2], -1, 1))
    phi = np.arctan2(u[:, 1], u[:, 0])
    return size + 3.0 * np.sin(5 * theta) * np.cos(4 * phi)


def _affine() -> np.ndarray:
    aff = np.diag([SPACING, SPACING, SPACING, 1.0])
    aff[:3, 3] = -SPACING * (np.asarray(SHAPE) - 1) / 2.0 + np.array([10.0, -5.0, 3.0])
    return aff


def _render( contrast: float = 1.0, noise: float = 3.0, seed: int = 0) -> np.ndarray:
    """WM 110 / GM 75 / CSF 30 / background 0 (head radius 42 mm), blurred, with Gaussian noise."""
    aff = _affine()
    ijk = np.indices(SHAPE).reshape(3, -1).T.astype(np.float64)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3] - aff[:3, 3] - SPACING * (np.asarray(SHAPE) - 1) / 2.0
    rho = np.linalg.norm(xyz, axis=1)
    u = xyz / np.maximum(rho, 1e-9)[:, None]
    rw = _white_radius(u)
    img = np.where(rho < rw, 110.0, np.where(rho < rw + THICK, 75.0, np.where(rho < 42.0, 30.0, 0.0)))
    mean = 75.0
    img = np.where(img > 0, mean + contrast * (img - mean), 0.0).reshape(SHAPE)
    img = gaussian_filter(img, 0.6)
    return (img + np.random.default_rng(seed).normal(0, noise, SHAPE)).astype(np.float32)


def _hemi(size: float = 24.0, shift=(0.0, 0.0, 0.0)) -> Hemisphere:
    v, f = icosphere(4)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    centre = _affine()[:3, 3] + SPACING * (np.asarray(SHAPE) - 1) / 2.0 + np.asarray(shift)
    rw = _white_radius(u, size)[:, None]
    return Hemisphere("L", Surface(u * rw + centre, f, Path("sub-01/surf/lh.white")),
                      Surface(u * (rw + THICK) + centre, f, Path("sub-01/surf/lh.pial")))


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return _render()


def test_sample_volume_is_trilinear_and_nan_outside():
    data = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    aff = np.eye(4)
    out = sample_volume(data, aff, np.array([[1.0, 1.0, 1.0], [0.5, 0.0, 0.0], [5.0, 0.0, 0.0]]))
    assert out[0] == pytest.approx(13.0) and out[1] == pytest.approx(4.5) and np.isnan(out[2])


def test_own_surfaces_pass(t1):
    hemi = _hemi()
    contrast, warnings = check_tissue_contrast(hemi, t1, _affine())
    assert warnings == []
    assert contrast.score > 0.95 and contrast.wm > contrast.gm > contrast.csf
    shift, best, at_zero = best_translation(hemi, t1, _affine())
    assert np.linalg.norm(shift) <= 1.0 + 1e-9 and best - at_zero < 0.02


def test_low_contrast_scan_passes():
    low = _render(contrast=0.3, noise=4.0, seed=1)  # WM-GM step 10.5, noise sd 4
    contrast, _ = check_tissue_contrast(_hemi(), low, _affine())
    assert contrast.score > CONTRAST_MIN_SCORE + 0.2


@pytest.mark.parametrize("size", [5.0, 8.0])
def test_displaced_surfaces_fail_with_the_shift(t1, size):
    with pytest.raises(SurfaceError, match="displaced") as err:
        check_tissue_contrast(_hemi(shift=(size, 0.0, 0.0)), t1, _affine())
    assert err.value.path == Path("sub-01/surf/lh.white")
    assert "moved by (-" in str(err.value)  # the search finds the way back along -x


def test_far_shift_fails(t1):
    with pytest.raises(SurfaceError, match="does not match the T1w|displaced") as err:
        check_tissue_contrast(_hemi(shift=(0.0, 26.0, 0.0)), t1, _affine())
    assert err.value.path == Path("sub-01/surf/lh.white")


def test_tkr_frame_mixup_names_c_ras(t1):
    c_ras = np.array([4.0, 24.0, -9.0])
    with pytest.raises(SurfaceError, match="c_ras") as err:
        check_tissue_contrast(_hemi(shift=-c_ras), t1, _affine(), frame_shift=c_ras)
    assert "added to" in str(err.value)


def test_another_persons_surfaces_fail(t1):
    # a smaller brain: along the phantom's radial white→pial lines the image is monotone, so only a person of
    # another size (not another folding pattern) is told apart here; real swaps are in tests/robustness
    other = _hemi(size=18.0)
    assert tissue_contrast(other, t1, _affine()).score < CONTRAST_MIN_SCORE
    with pytest.raises(SurfaceError):
        check_tissue_contrast(other, t1, _affine())


def test_outside_the_field_of_view_only_warns(t1):
    contrast, warnings = check_tissue_contrast(_hemi(shift=(500.0, 0.0, 0.0)), t1, _affine())
    assert contrast.n_vertices == 0 and "skipped" in warnings[0]
