"""Atrophy QC: prescribed vs measured on a sphere phantom, the TSV, the targets, seed std and its summary."""

from __future__ import annotations

import numpy as np
import pytest

from cor2vox_bids.qc.atrophy import (
    ATROPHY_COLUMNS,
    ATROPHY_TSV_DICTIONARY,
    atrophy_rows,
    atrophy_targets,
    dk_region_masks,
    image_thinning,
    plot_atrophy_series,
    plot_prescribed_vs_measured,
    read_atrophy_tsv,
    seed_std,
    seed_std_summary,
    surface_thinning,
    write_atrophy_tsv,
)
from qc_phantoms import CENTRE, sphere_phantom, sphere_surfaces

CAP_DEG = 35.0


@pytest.fixture(scope="module")
def series():
    """Baseline phantom and a step whose pial radius is 1 mm smaller in a 35° cap (same noise seed, as a
    resynthesis with the same seed), 2562-vertex spheres; the cap is the prescribed region."""
    white, pial, f = sphere_surfaces(subdivisions=4)
    base, aff, _ = sphere_phantom()
    step, _, _ = sphere_phantom(cap_thinning_mm=1.0, cap_half_angle_deg=CAP_DEG)
    angle = np.degrees(np.arccos((white - CENTRE)[:, 2] / 20.0))
    cap = angle < CAP_DEG
    thinned = pial.copy()
    thinned[cap] = CENTRE + (pial[cap] - CENTRE) * (21.5 / 22.5)
    prescribed = np.where(cap, 1.0, 0.0)
    return dict(white=white, pial=pial, faces=f, thinned=thinned, base=base, step=step, affine=aff, cap=cap,
                angle=angle, prescribed=prescribed)


def test_prescribed_vs_measured_on_a_phantom(series, tmp_path):
    s = series
    surf = surface_thinning(s["white"], s["faces"], s["pial"], s["thinned"], s["faces"])
    img = image_thinning(s["base"], s["step"], s["affine"], s["white"], s["faces"], s["pial"], s["faces"])
    core, far = s["angle"] < 25, s["angle"] > 45  # away from the cap border (blur ≈ 1 mm)
    assert np.nanmean(surf[core]) == pytest.approx(1.0, abs=0.01)
    assert np.abs(surf[far]).max() < 1e-3
    assert np.nanmean(img[core]) == pytest.approx(1.0, rel=0.2)
    assert abs(np.nanmean(img[far])) < 0.1
    regions = {"capregion": s["cap"], "rest": ~s["cap"]}
    rows = atrophy_rows(3, "L", regions, ["capregion"], s["prescribed"], surf, img)
    assert [r["region"] for r in rows] == ["capregion", "rest"]
    cap_row, rest_row = rows
    assert cap_row["in_spec"] and not rest_row["in_spec"] and cap_row["step"] == 3
    assert cap_row["prescribed_mm"] == 1.0 and rest_row["prescribed_mm"] == 0.0
    assert cap_row["n_vertices"] == int(s["cap"].sum())
    assert 0.5 < cap_row["image_coverage"] <= 1.0
    assert abs(rest_row["image_mm"]) < 0.15  # includes the blurred border ring
    path = write_atrophy_tsv(rows, tmp_path / "sub-01_desc-atrophy_qc.tsv")
    header = path.read_text().splitlines()[0].split("\t")
    assert tuple(header) == ATROPHY_COLUMNS and set(ATROPHY_TSV_DICTIONARY) == set(ATROPHY_COLUMNS)
    back = read_atrophy_tsv(path)
    assert back[0]["in_spec"] is True and back[1]["in_spec"] is False
    assert back[0]["image_mm"] == pytest.approx(cap_row["image_mm"], abs=1e-4)
    targets = atrophy_targets(back)
    assert targets["step"] == 3 and targets["surface"][0]["region"] == "capregion"
    assert abs(targets["image"][0]["relative_error"]) < 0.25
    assert targets["max_abs_image_mm_not_prescribed"] == pytest.approx(abs(rest_row["image_mm"]), abs=1e-4)
    fig = plot_prescribed_vs_measured(back, tmp_path / "pvm.png")
    assert fig.stat().st_size > 1000


def test_rows_without_image_and_missing_values(tmp_path):
    mask = np.array([True, True, False, False])
    rows = atrophy_rows(1, "R", {"a": mask, "b": ~mask}, ["a"], np.array([1.0, 1.0, 0, 0]),
                        np.array([0.9, 1.1, np.nan, np.nan]), None)
    assert rows[0]["surface_mm"] == pytest.approx(1.0)
    assert np.isnan(rows[1]["surface_mm"]) and np.isnan(rows[0]["image_mm"]) and np.isnan(rows[0]["image_coverage"])
    text = write_atrophy_tsv(rows, tmp_path / "t.tsv").read_text()
    assert "n/a" in text and "nan" not in text


def test_dk_region_masks():
    labels = np.array([0, 1, 1, 2, -1])
    masks = dk_region_masks(labels, [b"unknown", b"precentral", "insula"])
    assert list(masks) == ["precentral", "insula"]  # DK order, unknown left out
    np.testing.assert_array_equal(masks["precentral"], [False, True, True, False, False])
    assert dk_region_masks(None, None) == {}


def test_seed_std_matches_numpy():
    rng = np.random.default_rng(1)
    samples = [rng.normal(size=(5, 6, 7)) for _ in range(4)]
    std = seed_std(samples)
    assert std.dtype == np.float32
    np.testing.assert_allclose(std, np.std(np.stack(samples), axis=0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(seed_std([np.ones((2, 2))] * 3), 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        seed_std([np.ones(3)])
    with pytest.raises(ValueError, match="shape"):
        seed_std([np.ones(3), np.ones(4)])


def test_seed_std_summary_ribbon_vs_elsewhere():
    shape = (20, 20, 20)
    brain = np.zeros(shape)
    brain[4:16, 4:16, 4:16] = 1
    ribbon = np.zeros(shape)
    ribbon[4:16, 4:16, 4:6] = 1
    std = np.where(ribbon > 0, 0.01, np.where(brain > 0, 0.04, 0.1))
    out = seed_std_summary(std, ribbon, brain)
    assert out["ribbon_mean_std"] == pytest.approx(0.01) and out["brain_other_mean_std"] == pytest.approx(0.04)
    assert out["outside_brain_mean_std"] == pytest.approx(0.1)
    assert out["ribbon_to_brain_ratio"] == pytest.approx(0.25)
    assert out["ribbon_voxels"] == 12 * 12 * 2 and out["brain_other_voxels"] == 12 * 12 * 10
    with pytest.raises(ValueError, match="shape"):
        seed_std_summary(std, ribbon[:-1], brain)


def test_series_figure(series, tmp_path):
    s = series
    path = plot_atrophy_series([s["base"], s["step"]], s["affine"], CENTRE + [0, 0, 21.0], tmp_path / "series.png")
    assert path.stat().st_size > 1000
