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


# -- the group table's pieces, checked against hand computations on tiny arrays ----------------------------------


def _tiny_masks():
    """A 4x4x4 grid: 8 WM, 8 GM and 8 CSF voxels, the rest outside every mask (8 divides the 1000 quantiles, so
    the quantile functions hold each value exactly 125 times)."""
    shape = (4, 4, 4)
    wm, gm, csf = (np.zeros(shape, bool) for _ in range(3))
    wm[0, :2], gm[1, :2], csf[2, :2] = True, True, True
    return {"WM": wm, "GM": gm, "CSF": csf}


def _hand_normalised(img, masks):
    head = masks["WM"] | masks["GM"] | masks["CSF"]
    lo, hi = np.percentile(img[head], [1, 99])
    return (img - lo) / (hi - lo)


def test_harmonization_rows_match_a_hand_computation():
    """Distances of the group table on 4x4x4 images, computed by hand: normalise by the 1st/99th percentiles in
    the head, sort each tissue's 8 values; W1 of equal-size samples is the mean |difference| of the sorted values,
    and the reference (two participants) is the mean of their sorted values."""
    from cor2vox_bids.qc.harmonization import harmonization_rows, image_quantiles, reference_spread

    rng = np.random.default_rng(7)
    masks = _tiny_masks()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    ref1 = rng.uniform(0, 100, (4, 4, 4))
    ref2 = 0.5 * ref1 ** 1.2 + rng.normal(0, 2, (4, 4, 4))  # the same tissue, another contrast
    before, after = rng.gamma(2.0, 10.0, (4, 4, 4)), 3.0 * ref1 + 5.0 + rng.normal(0, 1, (4, 4, 4))
    q = {name: image_quantiles(img, affine, affine, masks) for name, img in
         (("ref1", ref1), ("ref2", ref2), ("before", before), ("after", after))}
    reference = {t: barycentre([q["ref1"][t], q["ref2"][t]]) for t in ("WM", "GM", "CSF")}
    spread = reference_spread([q["ref1"], q["ref2"]])
    thickness = {"thickness_r_real": 0.8, "thickness_r_synthetic": 0.76, "thickness_r_ratio": 0.95,
                 "thickness_r_real_vs_synthetic": 0.9, "n_regions_real_vs_synthetic": 3}
    rows = harmonization_rows({"participant_id": "sub-01"}, q["before"], q["after"], reference, spread, 2, thickness)
    assert [r["tissue"] for r in rows] == ["WM", "GM", "CSF"]
    sorted_values = {name: _hand_normalised(img, masks) for name, img in
                     (("ref1", ref1), ("ref2", ref2), ("before", before), ("after", after))}
    for row in rows:
        m = masks[row["tissue"]]
        s = {k: np.sort(v[m]) for k, v in sorted_values.items()}
        ref = (s["ref1"] + s["ref2"]) / 2
        assert row["distance_before"] == pytest.approx(np.mean(np.abs(s["before"] - ref)), rel=1e-9)
        assert row["distance_after"] == pytest.approx(np.mean(np.abs(s["after"] - ref)), rel=1e-9)
        # the same number from scipy's W1 between the before values and the 8 reference values
        assert row["distance_before"] == pytest.approx(stats.wasserstein_distance(sorted_values["before"][m], ref),
                                                       rel=1e-9)
        # leave-one-out with two reference participants: each against the other, the same distance
        assert row["reference_spread"] == pytest.approx(np.mean(np.abs(s["ref1"] - s["ref2"])), rel=1e-9)
        assert row["distance_change"] == pytest.approx(row["distance_after"] - row["distance_before"])
        assert row["closer_to_reference"] == ("yes" if row["distance_after"] < row["distance_before"] else "no")
        assert row["n_reference"] == 2 and row["thickness_r_ratio"] == 0.95
    # 'after' is an affine copy of ref1 plus a little noise: closer to the reference than the unrelated gamma image
    assert all(r["closer_to_reference"] == "yes" for r in rows)


def test_reference_spread_is_the_median_leave_one_out_distance():
    from cor2vox_bids.qc.harmonization import reference_spread

    base = np.linspace(0.0, 1.0, 1000)
    qs = [{"WM": base + c, "GM": base} for c in (0.0, 0.1, 0.4)]
    # leave-one-out barycentres: 0.25, 0.2, 0.05 → distances 0.25, 0.1, 0.35 → median 0.25
    spread = reference_spread(qs)
    assert spread["WM"] == pytest.approx(0.25) and spread["GM"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(spread["CSF"])
    assert np.isnan(reference_spread(qs[:1])["WM"])


def test_thickness_agreement_by_hand():
    from cor2vox_bids.qc.harmonization import thickness_agreement

    rows = [{"thickness_real": a, "thickness_synthetic": b}
            for a, b in ((1.0, 1.1), (2.0, 2.3), (3.0, 2.9), (np.nan, 2.0), (2.5, np.nan))]
    out = thickness_agreement({"pearson_r_real": 0.8, "pearson_r_synthetic": 0.6}, rows)
    assert out["thickness_r_ratio"] == pytest.approx(0.75)
    assert out["thickness_r_real_vs_synthetic"] == pytest.approx(np.corrcoef([1, 2, 3], [1.1, 2.3, 2.9])[0, 1])
    assert out["n_regions_real_vs_synthetic"] == 3
    missing = thickness_agreement({"pearson_r_real": 0.8, "pearson_r_synthetic": None}, None)
    assert np.isnan(missing["thickness_r_synthetic"]) and np.isnan(missing["thickness_r_ratio"])
    assert np.isnan(missing["thickness_r_real_vs_synthetic"]) and missing["n_regions_real_vs_synthetic"] == 0

