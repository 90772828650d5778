"""Atrophy steps on files (no graph): thinned surfaces per step, step conditioning on the baseline grid, seed std."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.geometry import Hemisphere, ModelGrid, Surface, conditioning_maps
from cor2vox_bids.geometry.surfaces import load_hemispheres, save_hemispheres
from cor2vox_bids.interfaces.atrophy import (
    make_atrophy_surfaces,
    make_seed_std,
    make_step_conditioning,
    prescribed_region_mm,
    synthesize_steps,
)
from cor2vox_bids.interfaces.synthesis import read_maps, save_maps, save_volume, synthesize_sample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "geometry"))  # the shared test meshes
from meshes import icosphere  # noqa: E402


@pytest.fixture()
def baseline(tmp_path):
    """Two spherical 'hemispheres' (white 20 mm, pial 24 mm) with a 2-region annotation; maps on a 4 mm grid."""
    v, f = icosphere(3)
    hemis = []
    for hemi, x in (("L", -30.0), ("R", 30.0)):
        centre = np.array([x, 0.0, 0.0])
        labels = (v[:, 2] > 0.3).astype(np.int64)
        hemis.append(Hemisphere(hemi, Surface(centre + 20 * v, f), Surface(centre + 24 * v, f), labels,
                                ["unknown", "precentral"], np.full(len(v), 4.0)))
    hemis_npz = save_hemispheres(tmp_path / "hemis.npz", hemis)
    grid = ModelGrid.around(np.concatenate([h.pial.vertices for h in hemis]), (36, 20, 20), 4.0)
    maps_npz = save_maps(tmp_path / "maps.npz", conditioning_maps(hemis, grid), grid.affine)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"steps": 2, "falloff_mm": 0,
                                "regions": [{"hemi": "L", "label": "precentral", "thinning_mm": 2.0}]}))
    return {"hemis": hemis_npz, "maps": maps_npz, "spec": spec, "grid": grid, "root": tmp_path}


def test_surfaces_per_step(baseline):
    out = make_atrophy_surfaces(baseline["hemis"], baseline["spec"], baseline["root"] / "surf")
    assert len(out["hemispheres"]) == 2 and len(out["pial_gifti"]) == 4
    base = load_hemispheres(baseline["hemis"])
    for k, path in enumerate(out["hemispheres"], 1):
        left, right = load_hemispheres(path)
        np.testing.assert_array_equal(left.white.vertices, base[0].white.vertices)
        np.testing.assert_array_equal(right.pial.vertices, base[1].pial.vertices)  # R not prescribed
        region = base[0].labels == 1
        thinning = (base[0].thickness - left.thickness)[region]  # baseline thickness 4 (given), thinned measured
        assert np.median(thinning) == pytest.approx(k * 1.0, abs=0.05)
    gii = nib.load(out["pial_gifti"][0])
    np.testing.assert_array_equal(gii.darrays[1].data, base[0].pial.faces)
    report = json.loads(open(out["report"]).read())
    assert report["hemispheres"]["L"]["checks"][1]["new_self_intersections"] == 0
    assert report["hemispheres"]["L"]["prescribed_mm_last_step"] == {"precentral": 2.0}
    from cor2vox_bids.geometry.atrophy import load_atrophy_spec

    assert prescribed_region_mm(load_atrophy_spec(baseline["spec"]), report, 1) == {"L": {"precentral": 1.0}}
    with np.load(out["prescription"]) as pres:
        assert set(pres.files) == {"L_step01", "L_step02", "R_step01", "R_step02"}
        assert pres["L_step02"].max() == 2.0 and not pres["R_step01"].any()


def test_step_conditioning_reuses_the_baseline_grid(baseline):
    same = make_step_conditioning(baseline["hemis"], baseline["maps"], baseline["root"] / "same.npz", threads=1)
    base_maps, base_aff = read_maps(baseline["maps"])
    maps, aff = read_maps(same)
    np.testing.assert_array_equal(aff, base_aff)
    for name, value in base_maps.items():
        np.testing.assert_array_equal(maps[name], value, err_msg=name)  # unchanged surfaces: identical maps
    out = make_atrophy_surfaces(baseline["hemis"], baseline["spec"], baseline["root"] / "surf")
    thin, aff2 = read_maps(make_step_conditioning(out["hemispheres"][1], baseline["maps"],
                                                  baseline["root"] / "thin.npz", threads=1))
    np.testing.assert_array_equal(aff2, base_aff)
    np.testing.assert_array_equal(thin["sdf_white"], base_maps["sdf_white"])
    assert thin["ribbon"].sum() < base_maps["ribbon"].sum()
    assert np.all(thin["sdf_pial"] >= base_maps["sdf_pial"] - 1e-4)  # the pial moved inward only


def test_seed_std_files(baseline):
    maps, aff = read_maps(baseline["maps"])
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        img = np.where(maps["ribbon"] > 0, 0.5, 0.5 + 0.1 * rng.normal(size=maps["ribbon"].shape))
        paths.append(save_volume(baseline["root"] / f"s{i}.nii.gz", img.astype(np.float32), aff))
    std_path, summary_path = make_seed_std(paths, baseline["maps"], baseline["root"] / "std")
    std = np.asarray(nib.load(str(std_path)).dataobj)
    assert std.shape == maps["ribbon"].shape and np.all(std[maps["ribbon"] > 0] == 0)
    summary = json.loads(summary_path.read_text())
    assert summary["n_samples"] == 3 and summary["ribbon_mean_std"] == 0.0
    assert summary["brain_other_mean_std"] > 0.05 and summary["ribbon_to_brain_ratio"] == 0.0
    # the explicit zones split "inside the pial, outside the ribbon" (= inside the white surfaces) and the outside
    assert summary["white_near_voxels"] + summary["white_deep_voxels"] == summary["brain_other_voxels"]
    assert summary["outside_near_voxels"] + summary["outside_far_voxels"] == summary["outside_brain_voxels"]
    assert summary["white_deep_voxels"] > 0 and summary["ribbon_to_white_deep_ratio"] == 0.0


def test_step_images_batched_with_the_baseline_seed(baseline, tiny_model):
    """The batched step images equal one-image syntheses of each step's maps with the same seed (up to the
    rounding of batched kernels; bit for bit with batches of one), and the steps differ from each other."""
    root = baseline["root"]
    hemis = load_hemispheres(baseline["hemis"])
    grid = ModelGrid.around(np.concatenate([h.pial.vertices for h in hemis]), (32, 40, 32), 5.0)  # the model's
    base_maps = save_maps(root / "maps5.npz", conditioning_maps(hemis, grid), grid.affine)
    surf = make_atrophy_surfaces(baseline["hemis"], baseline["spec"], root / "surf")
    maps = [make_step_conditioning(Path(h), base_maps, root / f"step{k}.npz", threads=1)
            for k, h in enumerate(surf["hemispheres"], 1)]
    calls = []
    batched = synthesize_steps(maps, tiny_model, 3, 2, 1.0, "cpu", root / "series", threads=1,
                               progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 2), (2, 2)]  # one network call per sampling step for both images
    chunked = synthesize_steps(maps, tiny_model, 3, 2, 1.0, "cpu", root / "series1", threads=1, batch_size=1)
    for k, m in enumerate(maps):
        alone = synthesize_sample(m, tiny_model, 3, 2, 1.0, "cpu", root / f"alone{k}.nii.gz", threads=1)
        a, b, c = (np.asarray(nib.load(str(x)).dataobj) for x in (alone, batched[k], chunked[k]))
        assert nib.load(str(batched[k])).affine.tolist() == nib.load(str(alone)).affine.tolist()
        assert np.array_equal(a, c)
        assert np.abs(a - b).max() < 0.02
    first, second = (np.asarray(nib.load(str(x)).dataobj) for x in batched)
    assert np.abs(first - second).max() > 0.01
