"""Conditioning maps: union of hemispheres, cortex SDF rule, ribbon and edge map definitions."""

from __future__ import annotations

import numpy as np

from cor2vox_bids.geometry import MAP_NAMES, Hemisphere, ModelGrid, Surface, conditioning_maps, cortex_sdf, edge_map
from meshes import icosphere


def _hemi(name, x):
    vw, f = icosphere(3, 5.0, (x, 0, 0))
    vp, _ = icosphere(3, 8.0, (x, 0, 0))
    return Hemisphere(name, Surface(vw, f), Surface(vp, f))


def test_maps_on_two_spherical_hemispheres():
    lh, rh = _hemi("L", -10.0), _hemi("R", 10.0)
    grid = ModelGrid.around(np.concatenate([lh.pial.vertices, rh.pial.vertices]), (32, 20, 20), 1.0)
    maps = conditioning_maps([lh, rh], grid)
    assert tuple(maps) == MAP_NAMES
    for m in maps.values():
        assert m.dtype == np.float32 and m.shape == grid.shape
    w = grid.world_coordinates()
    r = np.minimum(np.linalg.norm(w - [-10, 0, 0], axis=-1), np.linalg.norm(w - [10, 0, 0], axis=-1))
    # union of two spheres: the nearer centre decides; polyhedra lie < 0.06 mm inside the spheres
    clear = (np.abs(r - 5) > 0.1) & (np.abs(r - 8) > 0.1)
    np.testing.assert_array_equal(maps["ribbon"][clear] == 1, ((r > 5) & (r < 8))[clear])
    assert set(np.unique(maps["ribbon"])) <= {0.0, 1.0}
    near = (np.abs(maps["sdf_pial"]) < 2.5) & clear  # inside the exact band (3 voxels)
    np.testing.assert_allclose(maps["sdf_pial"][near], (r - 8)[near], atol=0.06)
    near_w = clear & (np.abs(r - 5) < 2.5)
    np.testing.assert_allclose(maps["sdf_white"][near_w], (r - 5)[near_w], atol=0.06)
    # cortex SDF: 0 in the ribbon, the white SDF inside white, the pial SDF outside pial
    assert np.all(maps["sdf_cortex"][maps["ribbon"] == 1] == 0)
    inner = clear & (r < 5)
    np.testing.assert_array_equal(maps["sdf_cortex"][inner], maps["sdf_white"][inner])
    outer = clear & (r > 8)
    np.testing.assert_array_equal(maps["sdf_cortex"][outer], maps["sdf_pial"][outer])
    # edges: 1 on the surfaces, exp(-d^2 / (2 * 0.5^2)) with d the distance to the nearest surface
    d = np.minimum(np.abs(maps["sdf_pial"]), np.abs(maps["sdf_white"]))
    np.testing.assert_allclose(maps["edges"], np.exp(-(d.astype(np.float64) ** 2) / 0.5), rtol=1e-5, atol=1e-7)
    assert maps["edges"].max() <= 1.0 and maps["edges"].min() >= 0.0


def test_cortex_rule_and_edge_values_pointwise():
    pial = np.array([-5.0, -1.0, 2.0, 0.0, -2.0], dtype=np.float32)
    white = np.array([-2.0, 3.0, 6.0, 1.0, -4.0], dtype=np.float32)
    np.testing.assert_array_equal(cortex_sdf(pial, white), [-2.0, 0.0, 2.0, 0.0, -2.0])
    e = edge_map(np.array([0.0, 0.5, 1.0]), np.array([9.0, 9.0, 9.0]), spacing=1.0)
    np.testing.assert_allclose(e, [1.0, np.exp(-0.5), np.exp(-2.0)], rtol=1e-6)
