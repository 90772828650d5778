"""Intensity normalisation of the step images before the edge-shift integral (the boundary shift integral's
normalisation, done locally on deep white matter): phantoms with and without a smooth gain field."""

from __future__ import annotations

import numpy as np
import pytest

from cor2vox_bids.qc.atrophy import (
    ATROPHY_COLUMNS,
    GAIN_SIGMA_MM,
    atrophy_rows,
    atrophy_targets,
    atrophy_tsv_dictionary,
    deep_white_reference,
    intensity_gain,
    line_windows,
    pial_edge_shift,
    pial_edge_shifts,
    regional_contrast,
)
from qc_phantoms import CENTRE, sphere_phantom, sphere_surfaces, voxel_world

CAP_DEG = 35.0
KW = {"shape": (32, 32, 32), "spacing": 2.0, "blur_sigma_vox": 0.5}  # 2 mm voxels, 1 mm blur


def regional_dimming(affine, amplitude=0.04, width_mm=20.0, gradient=0.02):
    """A smooth gain field like the demo network's response: darker around the thinned cap (Gaussian of
    ``width_mm`` centred on the cap's white surface) times a left-right gradient of ± ``gradient``."""
    xyz = voxel_world(KW["shape"], affine) - CENTRE
    blob = np.exp(-((xyz - [0.0, 0.0, 20.0]) ** 2).sum(-1) / (2 * width_mm**2))
    return (1.0 - amplitude * blob) * (1.0 + gradient * xyz[..., 0] / 30.0)


@pytest.fixture(scope="module")
def shell():
    white, pial, f = sphere_surfaces(subdivisions=4)
    angle = np.degrees(np.arccos((white - CENTRE)[:, 2] / 20.0))
    return white, f, angle, line_windows(white, f, pial, f)


def measure(shell, base, step, affine, radius, normalise):
    """Mean edge shift over the cap's core (< 25°) and the far side (> 45°), with the node's reference: deeper
    than the lines' inner end (2 mm) plus twice the fitted blur, above the grey/white midpoint."""
    white, f, angle, lw = shell
    contrast, model, _ = regional_contrast(base, affine, lw, {})
    gain = None
    if normalise:
        ref = deep_white_reference(0.5 * (base + step), radius - 20.0, min_depth_mm=2.0 + 2.0 * model.sigma_mm,
                                   min_level=0.5 * (model.wm + model.gm))
        gain = intensity_gain(base, step, ref, affine)
    shift = pial_edge_shift(base, step, affine, lw, contrast, sigma_mm=model.sigma_mm, gain=gain)
    return float(np.mean(shift[angle < 25])), float(np.mean(shift[angle > 45])), gain


@pytest.mark.parametrize("thinning_mm", [0.5, 1.0])
def test_gain_field_reads_as_thinning_without_normalisation_and_not_with_it(shell, thinning_mm):
    """Step image also dimmed by a smooth gain field (4 % around the cap, ± 2 % gradient), independent noise (SNR
    20): raw, the dimming reads as extra thinning of the cap and as thinning of the far side; normalised, the cap
    reads the true thinning within ±20 % and the far side ≈ 0."""
    base, aff, radius = sphere_phantom(seed=0, **KW)
    step, _, _ = sphere_phantom(seed=1, cap_thinning_mm=thinning_mm, cap_half_angle_deg=CAP_DEG, **KW)
    step = step * regional_dimming(aff)
    raw_core, raw_far, _ = measure(shell, base, step, aff, radius, normalise=False)
    core, far, gain = measure(shell, base, step, aff, radius, normalise=True)
    assert raw_core > thinning_mm + 0.25 and raw_far > 0.1  # the gain field alone: ≈ 0.3 mm and 0.18 mm
    assert core == pytest.approx(thinning_mm, rel=0.2)
    assert abs(far) < 0.05
    truth = regional_dimming(aff)
    deep = radius < 14.0
    err = np.abs(gain[deep] / truth[deep] - 1)  # the field itself, where the reference is (noise: SNR 20 per voxel)
    assert np.median(err) < 0.005 and err.max() < 0.02


def test_without_a_gain_field_normalisation_changes_nothing(shell):
    """Same noise in both images (as one seed): the reference voxels are identical, the gain is 1 and the reading
    is the raw one to 1e-3 mm; independent noise: the gain is 1 within its noise, the readings agree within 0.08 mm
    and both read the thinning within ±20 %."""
    base, aff, radius = sphere_phantom(seed=0, **KW)
    step, _, _ = sphere_phantom(seed=0, cap_thinning_mm=1.0, cap_half_angle_deg=CAP_DEG, **KW)
    raw = measure(shell, base, step, aff, radius, normalise=False)
    norm = measure(shell, base, step, aff, radius, normalise=True)
    assert norm[0] == pytest.approx(raw[0], abs=1e-3) and norm[1] == pytest.approx(raw[1], abs=1e-3)
    assert np.abs(norm[2] - 1).max() < 1e-6
    step, _, _ = sphere_phantom(seed=1, cap_thinning_mm=1.0, cap_half_angle_deg=CAP_DEG, **KW)
    raw = measure(shell, base, step, aff, radius, normalise=False)
    norm = measure(shell, base, step, aff, radius, normalise=True)
    assert norm[0] == pytest.approx(raw[0], abs=0.08) and norm[1] == pytest.approx(raw[1], abs=0.05)
    assert raw[0] == pytest.approx(1.0, rel=0.2) and norm[0] == pytest.approx(1.0, rel=0.2)
    err = np.abs(norm[2] - 1)
    assert np.median(err) < 0.005 and np.percentile(err, 99) < 0.03


def test_intensity_gain_recovers_a_smooth_field_and_falls_back_far_away():
    rng = np.random.default_rng(0)
    shape, aff = (24, 24, 24), np.diag([2.0, 2.0, 2.0, 1.0])
    base = 100.0 + rng.normal(0, 5, size=shape)
    i = np.indices(shape)[0]
    truth = 1.0 + 0.02 * np.sin(i / 6.0)
    ref = np.zeros(shape, dtype=bool)
    ref[:, :, :12] = True
    gain = intensity_gain(base, base * truth, ref, aff, sigma_mm=GAIN_SIGMA_MM)
    inner = (slice(4, 20), slice(4, 20), slice(2, 10))
    assert np.abs(gain[inner] - truth[inner]).max() < 2e-3
    # far from the reference (beyond the Gaussian's reach) the global ratio of the reference
    glob = (base * truth)[ref].sum() / base[ref].sum()
    assert gain[:, :, -1] == pytest.approx(glob, abs=1e-9)
    np.testing.assert_array_equal(intensity_gain(base, base, np.zeros(shape, bool), aff), 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        intensity_gain(base, base[:-1], ref, aff)


def test_deep_white_reference_selects_depth_and_level():
    sdf = np.array([-8.0, -6.0, -3.0, 1.0, -9.0])
    img = np.array([100.0, 100.0, 100.0, 100.0, 30.0])
    np.testing.assert_array_equal(deep_white_reference(img, sdf, min_depth_mm=5.0, min_level=90.0),
                                  [True, True, False, False, False])
    with pytest.raises(ValueError, match="differ in shape"):
        deep_white_reference(img, sdf[:-1], min_depth_mm=5.0, min_level=90.0)


def test_gain_fields_per_step_and_reporting(shell):
    """Series form: one gain field per step (or None); the rows carry the raw measure beside the normalised one,
    the targets both maxima and |image − surface|, and the dictionary says whether normalisation was applied."""
    white, f, angle, lw = shell
    base, aff, radius = sphere_phantom(seed=0, **KW)
    step, _, _ = sphere_phantom(seed=0, cap_thinning_mm=1.0, cap_half_angle_deg=CAP_DEG, **KW)
    dimmed = step * regional_dimming(aff)
    contrast, model, _ = regional_contrast(base, aff, lw, {})
    ref = deep_white_reference(0.5 * (base + dimmed), radius - 20.0, min_depth_mm=2.0 + 2.0 * model.sigma_mm,
                               min_level=0.5 * (model.wm + model.gm))
    gain = intensity_gain(base, dimmed, ref, aff)
    raw, norm = pial_edge_shifts(base, [dimmed, dimmed], aff, lw, contrast, gains=[None, gain])
    np.testing.assert_array_equal(norm, pial_edge_shift(base, dimmed, aff, lw, contrast, gain=gain))
    np.testing.assert_array_equal(raw, pial_edge_shift(base, dimmed, aff, lw, contrast))
    with pytest.raises(ValueError, match="gain fields"):
        pial_edge_shifts(base, [dimmed], aff, lw, contrast, gains=[gain, gain])
    cap = angle < CAP_DEG
    surface = np.where(cap, 1.0, 0.0)
    rows = atrophy_rows(1, "L", {"cap": cap, "rest": ~cap}, ["cap"], surface, surface, norm, raw)
    assert set(ATROPHY_COLUMNS) <= set(rows[0]) and rows[1]["image_raw_mm"] > rows[1]["image_mm"] + 0.05
    t = atrophy_targets(rows)
    assert t["max_abs_image_raw_mm_not_prescribed"] == pytest.approx(abs(rows[1]["image_raw_mm"]))
    assert t["max_abs_image_mm_not_prescribed"] == pytest.approx(abs(rows[1]["image_mm"]))
    assert t["max_abs_image_minus_surface_mm_not_prescribed"] == pytest.approx(abs(rows[1]["image_mm"]))
    assert t["image_raw"][0]["measured_mm"] == pytest.approx(rows[0]["image_raw_mm"])
    on, off = atrophy_tsv_dictionary(True), atrophy_tsv_dictionary(False)
    assert set(on) == set(ATROPHY_COLUMNS) and "normalised" in on["image_mm"]["Description"]
    assert "No intensity normalisation" in off["image_mm"]["Description"]
