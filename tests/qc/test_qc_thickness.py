"""Image-derived thickness on nested-sphere phantoms with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from cor2vox_bids.qc.thickness import (
    TissueIntensities,
    blur_corrected_levels,
    calibrate_profile_model,
    estimate_tissue_intensities,
    image_thickness,
    locate_crossings,
    profile_directions,
    vertex_normals,
)
from qc_phantoms import CENTRE, CSF, GM, WM, icosphere, sphere_phantom, sphere_surfaces

TRUE_THICKNESS = 2.5


@pytest.fixture(scope="module")
def surfaces():
    return sphere_surfaces()  # white r = 20 mm, pial r = 22.5 mm, 10,242 vertices (fsaverage5 size)


@pytest.fixture(scope="module")
def phantom_1mm():
    return sphere_phantom()  # 1 mm grid, blur σ = 1 voxel, noise sd = WM/20 (SNR 20)


def test_icosphere_is_fsaverage5_sized_and_outward():
    v, f = icosphere(5)
    assert v.shape == (10242, 3) and f.shape == (20480, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    n = vertex_normals(v, f)
    # area-weighted normals of a fine sphere are radial; 1 − cos(angle) < 1e-4 ⇔ angle < 0.8°
    assert np.min(np.sum(n * v, axis=1)) > 1 - 1e-4


def test_profile_directions_fall_back_to_normals_when_vertices_coincide():
    v, f = icosphere(2)
    white, pial = 20 * v, 22 * v
    pial[:5] = white[:5]
    d, length = profile_directions(white, f, pial)
    np.testing.assert_allclose(length[5:], 2.0, atol=1e-12)
    np.testing.assert_array_equal(length[:5], 0.0)
    assert np.min(np.sum(d[:5] * v[:5], axis=1)) > 0.999  # radial normal (coarse mesh: < 2.6°)


def test_locate_crossings_linear_ramp_direction_and_nearest():
    pos = np.arange(0.0, 10.01, 0.5)
    ramp = 100.0 - 10.0 * pos  # crosses 55 at 4.5 exactly, falling
    two = np.where(pos < 6, ramp, 100.0 - 10.0 * (pos - 5.0))  # falls through 55 at 4.5, jumps up, falls at 9.5
    profiles = np.stack([ramp, ramp, two, two, ramp + 0.3])
    got = locate_crossings(profiles, pos, 55.0, True, np.array([4.0, 1.0, 9.0, 7.5, 4.0]), 3.0)
    # row 1: the only crossing (4.5) is 3.5 from 1.0 > window → NaN; rows 2–3: the crossing nearest the expected
    # position (9.5; the rising jump between 5.5 and 6 does not count); row 4: (100.3 − 55)/10 = 4.53
    np.testing.assert_allclose(got, [4.5, np.nan, 9.5, 9.5, 4.53], atol=1e-9)
    # rising crossings only: none in a falling ramp
    assert np.isnan(locate_crossings(ramp[None], pos, 55.0, False, np.array([4.5]), 3.0)).all()


def test_blur_corrected_levels_recover_a_thin_blurred_slab_exactly():
    """1-D slab model: half-way levels overestimate thin cortex; the corrected levels sit on the true edges."""
    t = TissueIntensities(WM, GM, CSF)
    s = np.arange(-4.0, 6.0, 0.01)
    sigma = 1.0
    for thickness in (1.0, 1.5, 2.5):
        prof = CSF + (GM - CSF) * ndtr((thickness - s) / sigma) + (WM - GM) * ndtr(-s / sigma)
        level_a, level_b = blur_corrected_levels(t, np.array([thickness]), sigma)
        a = locate_crossings(prof[None], s, level_a, True, np.array([0.0]), 2.0)[0]
        b = locate_crossings(prof[None], s, level_b, True, np.array([thickness]), 2.0)[0]
        # linear interpolation on a 0.01 mm grid of a smooth profile: error ≪ 1e-3 mm
        assert abs(a) < 1e-3 and abs(b - thickness) < 1e-3
        naive_a = locate_crossings(prof[None], s, t.wm_gm_level, True, np.array([0.0]), 2.0)[0]
        naive_b = locate_crossings(prof[None], s, t.gm_csf_level, True, np.array([thickness]), 2.0)[0]
        if thickness == 1.5:
            assert naive_b - naive_a == pytest.approx(1.76, abs=0.01)  # the bias the correction removes


def test_tissue_intensities_from_the_image(phantom_1mm, surfaces):
    img, aff, _ = phantom_1mm
    white, pial, f = surfaces
    naive = estimate_tissue_intensities(img, aff, white, f, pial)
    # WM/CSF sampled 2.5 mm (≈ 2.4 σ_eff) from the edges: ≤ 1 % of the neighbouring tissue leaks in
    assert naive.wm == pytest.approx(WM, abs=1.5)
    assert naive.csf == pytest.approx(CSF, abs=1.5)
    assert naive.gm < GM  # the 2.5 mm ribbon centre is partial-volumed by the blur
    tissue, sigma = calibrate_profile_model(img, aff, white, f, pial)
    # effective blur: σ = 1 voxel Gaussian ⊗ one-voxel partial-volume ramp → sqrt(1 + 1/12) = 1.04 mm;
    # noise-selected crossings bias the slope fit: accept ± 0.1 mm
    assert sigma == pytest.approx(1.04, abs=0.1)
    assert tissue.gm == pytest.approx(GM, abs=2.0)
    assert abs(tissue.gm - GM) < abs(naive.gm - GM)


@pytest.mark.parametrize("spacing, shape", [(1.0, (64, 64, 64)), (0.8, (80, 80, 80))])
def test_known_thickness_recovered_within_0_1_mm(surfaces, spacing, shape):
    """Median over vertices: per-vertex estimates carry noise (sd ≈ 0.3 mm at SNR 20) and rare wrong crossings;
    the median is robust to those, and with ~10k vertices its sampling error is ≈ 0.01 mm, so 0.1 mm bounds the
    method's bias."""
    img, aff, _ = sphere_phantom(spacing=spacing, shape=shape)
    white, pial, f = surfaces
    th = image_thickness(img, aff, white, f, pial, f)
    assert th.shape == (10242,)
    assert np.isnan(th).mean() < 0.01
    assert abs(np.nanmedian(th) - TRUE_THICKNESS) < 0.1
    assert abs(np.nanmean(th) - TRUE_THICKNESS) < 0.1
    assert np.nanstd(th) < 0.5


def test_cubic_interpolation_agrees(phantom_1mm, surfaces):
    img, aff, _ = phantom_1mm
    white, pial, f = surfaces
    th = image_thickness(img, aff, white, f, pial, f, order=3)
    assert abs(np.nanmedian(th) - TRUE_THICKNESS) < 0.1


def test_thinned_cap_measured_thinner_by_the_prescribed_amount(surfaces):
    """Image pial radius −1 mm in a 35° cap around +z; surfaces unchanged. Compare the cap core (< 25°) with the
    rest (> 45°), away from the step at the cap border (blur ≈ 1 mm)."""
    img, aff, _ = sphere_phantom(cap_thinning_mm=1.0, cap_half_angle_deg=35.0)
    white, pial, f = surfaces
    angle = np.degrees(np.arccos((white - CENTRE)[:, 2] / 20.0))
    th = image_thickness(img, aff, white, f, pial, f)
    thinning = np.nanmedian(th[angle > 45]) - np.nanmedian(th[angle < 25])
    assert thinning == pytest.approx(1.0, rel=0.2)  # measured ≈ 0.91
    naive = image_thickness(img, aff, white, f, pial, f, blur_correction=False)
    naive_thinning = np.nanmedian(naive[angle > 45]) - np.nanmedian(naive[angle < 25])
    assert naive_thinning < thinning  # half-way levels alone under-report thinning (≈ 0.7)


def test_zero_length_vertices_use_the_normal(phantom_1mm, surfaces):
    img, aff, _ = phantom_1mm
    white, pial, f = surfaces
    pial = pial.copy()
    pial[:200] = white[:200]  # surfaces say 0 mm there; the image still has the 2.5 mm ribbon along the normal
    th = image_thickness(img, aff, white, f, pial, f, tissue=(WM, GM, CSF), sigma_mm=1.04)
    assert abs(np.nanmedian(th[:200]) - TRUE_THICKNESS) < 0.15  # 200 vertices: median sampling error ≈ 0.03


def test_nan_where_no_boundary(surfaces):
    white, pial, f = surfaces
    img = np.full((64, 64, 64), WM)  # all "white matter": no crossing anywhere
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = CENTRE - 31.5
    th = image_thickness(img, aff, white, f, pial, f, tissue=(WM, GM, CSF))
    assert np.isnan(th).all()
    far = image_thickness(img, aff, white + 500.0, f, pial + 500.0, f, tissue=(WM, GM, CSF))
    assert np.isnan(far).all()  # outside the image
    with pytest.raises(ValueError):
        image_thickness(img, aff, white, f, pial, f, tissue=(WM, WM, CSF))
