"""Per-tissue Wasserstein distances of the harmonization measure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from cor2vox_bids.qc.harmonization import (
    barycentre,
    distance_rows,
    image_quantiles,
    normalise,
    quantile_function,
    tissue_masks,
    tissue_quantiles,
    wasserstein_1d,
    wasserstein_quantiles,
)


def test_wasserstein_matches_scipy_and_shift():
    rng = np.random.default_rng(0)
    u, v = rng.normal(0, 1, 500), rng.gamma(2.0, 1.0, 300)
    uw, vw = rng.uniform(0, 1, 500), rng.uniform(0, 1, 300)
    assert np.isclose(wasserstein_1d(u, v), stats.wasserstein_distance(u, v), rtol=1e-10)
    assert np.isclose(wasserstein_1d(u, v, uw, vw), stats.wasserstein_distance(u, v, uw, vw), rtol=1e-10)
    assert np.isclose(wasserstein_1d(u, u + 0.7), 0.7)
    assert wasserstein_1d(u, u) == 0.0
    with pytest.raises(ValueError):
        wasserstein_1d(u, v[:0])


def test_quantile_version_is_exact_for_equal_sizes():
    rng = np.random.default_rng(1)
    u, v = rng.normal(0, 1, 1000), rng.normal(0.3, 2, 1000)
    assert np.isclose(
        wasserstein_quantiles(quantile_function(u, 1000), quantile_function(v, 1000)), wasserstein_1d(u, v), rtol=1e-12
    )
    # other sizes: the quantile grid approximates W1 closely
    w = rng.normal(0.3, 2, 4321)
    assert abs(wasserstein_quantiles(quantile_function(u), quantile_function(w)) - wasserstein_1d(u, w)) < 0.01


def test_barycentre_of_shifts_is_the_middle_shift():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 1, 2000)
    q = barycentre([quantile_function(base), quantile_function(base + 2.0)])
    assert np.allclose(q, quantile_function(base + 1.0))


def test_normalise_removes_gain_and_offset():
    rng = np.random.default_rng(3)
    img = rng.gamma(3.0, 1.0, (20, 20, 20))
    mask = np.ones(img.shape, dtype=bool)
    assert np.allclose(normalise(4.0 * img + 17.0, mask), normalise(img, mask))
    with pytest.raises(ValueError):
        normalise(np.ones((4, 4, 4)), mask[:4, :4, :4])


def _phantom(shape=(48, 48, 48)):
    """Nested spheres: WM core, GM shell, CSF shell; SDF maps in voxels."""
    idx = np.indices(shape).astype(np.float64)
    r = np.sqrt(((idx - (np.array(shape)[:, None, None, None] - 1) / 2) ** 2).sum(axis=0))
    sdf_white, sdf_pial = r - 12.0, r - 16.0
    ribbon = ((sdf_white >= 0) & (sdf_pial < 0)).astype(np.float32)
    return sdf_white, sdf_pial, ribbon, r


def _render(levels, r, rng, noise=0.02, gamma=1.0, bias=0.0, gain=1.0):
    wm, gm, csf = levels
    img = np.where(r < 12, wm, np.where(r < 16, gm, np.where(r < 19, csf, 0.05)))
    img = ndimage.gaussian_filter(img, 0.7) + rng.normal(0, noise, r.shape)
    img = np.clip(img, 0, None) ** gamma
    if bias:
        img = img * np.exp(bias * (np.indices(r.shape)[0] / r.shape[0] - 0.5))
    return gain * img


def test_harmonization_table_on_a_small_case():
    """Site B (another contrast, a bias field, another gain) moves away from site A; an image rendered like
    site A from the same anatomy (the 'harmonized' one) comes back: after < before for every tissue."""
    rng = np.random.default_rng(4)
    sdf_white, sdf_pial, ribbon, r = _phantom()
    masks = tissue_masks(sdf_white, sdf_pial, ribbon)
    head = r < 22
    reference = [tissue_quantiles(normalise(_render((0.8, 0.5, 0.2), r, rng), head), masks) for _ in range(3)]
    ref = {t: barycentre([q[t] for q in reference]) for t in ("WM", "GM", "CSF")}
    site_b = _render((0.8, 0.5, 0.2), r, rng, gamma=0.6, bias=0.5, gain=900.0)
    harmonized = _render((0.8, 0.5, 0.2), r, rng, noise=0.03)
    rows = distance_rows(
        "sub-01",
        tissue_quantiles(normalise(site_b, head), masks),
        tissue_quantiles(normalise(harmonized, head), masks),
        ref,
    )
    assert [row["tissue"] for row in rows] == ["WM", "GM", "CSF"]
    for row in rows:
        assert row["distance_after"] < row["distance_before"], row
        assert row["distance_after"] < 0.05
    missing = distance_rows("sub-02", {}, {"WM": ref["WM"]}, ref)
    assert np.isnan(missing[0]["distance_before"]) and missing[0]["distance_after"] == 0.0


def test_image_quantiles_resamples_onto_the_mask_grid():
    rng = np.random.default_rng(5)
    sdf_white, sdf_pial, ribbon, r = _phantom()
    masks = tissue_masks(sdf_white, sdf_pial, ribbon)
    img = _render((0.8, 0.5, 0.2), r, rng, noise=0.0)
    grid_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    same = image_quantiles(img, grid_affine, grid_affine, masks)
    head = masks["WM"] | masks["GM"] | masks["CSF"]
    direct = tissue_quantiles(normalise(img, head), masks)
    assert all(np.array_equal(same[t], direct[t]) for t in direct)
    # the same image at twice the resolution (voxel centres offset by half a coarse voxel) lands close by
    fine = ndimage.zoom(img, 2, order=1)
    fine_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    fine_affine[:3, 3] = -0.5
    moved = image_quantiles(fine, fine_affine, grid_affine, masks)
    assert all(wasserstein_quantiles(moved[t], direct[t]) < 0.03 for t in direct)
