"""The compiled whole-grid passes of signed_distance against their numpy / edt formulations."""

from __future__ import annotations

import edt
import numpy as np
import pytest

from cor2vox_bids.geometry import sdf
from cor2vox_bids.geometry._kernels import (
    distance_seeds_free,
    finish_sdf,
    seed_distance,
    winding_crossings,
    winding_mask,
)
from cor2vox_bids.geometry._regions import band_sqdist
from meshes import icosphere, torus


def _sparse_seeds(shape, rng, fraction):
    """A free mask with a few seeds: random ones plus a small blob, so that many lines and planes have none."""
    free = rng.random(shape) > fraction
    c = [int(rng.integers(0, s)) for s in shape]
    free[max(c[0] - 1, 0):c[0] + 2, c[1], max(c[2] - 1, 0):c[2] + 1] = False
    return free


@pytest.mark.parametrize("shape", [(23, 17, 12), (9, 31, 26), (1, 14, 3)])
def test_seed_distance_is_edt_on_isotropic_grids(shape):
    rng = np.random.default_rng(sum(shape))
    for spacing, fraction in ((1.0, 0.002), (2.0, 0.02), (1.5, 0.0)):
        free = _sparse_seeds(shape, rng, fraction)
        got = seed_distance(free, spacing, spacing, spacing)
        want = edt.edt(free, anisotropy=(spacing,) * 3)
        assert got.dtype == np.float32
        assert np.array_equal(got, want)  # integer squared distances: the same float32 values


def test_seed_distance_matches_edt_on_anisotropic_grids_to_float32_rounding():
    rng = np.random.default_rng(3)
    free = _sparse_seeds((27, 19, 33), rng, 0.001)
    got = seed_distance(free, 0.9, 1.3, 1.1)
    want = edt.edt(free, anisotropy=(0.9, 1.3, 1.1))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert got[~free].max() == 0.0


def _mesh_grid():
    v, f = torus(7.0, 2.5, 40, 20)
    v2, f2 = icosphere(3, 3.0, (1.0, 0.5, -0.5))
    v = np.concatenate([v, v2 + [0.0, 0.0, 9.0]])
    f = np.concatenate([f, f2 + len(torus(7.0, 2.5, 40, 20)[0])])
    shape = (30, 26, 34)
    aff = np.diag([0.9, 1.0, 0.8, 1.0])
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + [0.3, -0.2, 1.5]
    return v, f, aff, shape


def test_winding_passes_match_numpy_and_do_not_depend_on_tasks():
    v, f, aff, shape = _mesh_grid()
    vox = sdf._to_voxel(v, aff)
    scale = 2.0**20
    xy = np.round(vox[:, :2] * scale).astype(np.int64)
    z = np.ascontiguousarray(vox[:, 2])
    ff = f.astype(np.int64)
    ni, nj, nk = shape
    one = winding_crossings(xy, z, ff, int(scale), ni, nj, nk, 1)
    for tasks in (2, 3, 50):
        assert np.array_equal(winding_crossings(xy, z, ff, int(scale), ni, nj, nk, tasks), one)
    inside = winding_mask(one, nk)
    assert np.array_equal(inside, np.cumsum(one[:, :, :nk], axis=2, dtype=np.int16) != 0)
    assert 0 < inside.sum() < inside.size


def test_seed_and_final_passes_match_numpy():
    v, f, aff, shape = _mesh_grid()
    inside = sdf.winding_inside(sdf._to_voxel(v, aff), f, shape)
    sq = band_sqdist(v, f.astype(np.int64), 2.0, aff, np.asarray(shape, dtype=np.int64), 2)
    near = np.float32(0.5)
    exact = np.sqrt(sq)
    free = distance_seeds_free(inside, sq, near)
    assert np.array_equal(free, ~(sdf._surface_voxels(inside) | (exact <= near)))
    dist = edt.edt(free, anisotropy=(0.9, 1.0, 0.8))
    want = dist + np.float32(0.51)
    want[np.isfinite(exact)] = exact[np.isfinite(exact)]
    np.negative(want, out=want, where=inside)
    finish_sdf(dist, sq, inside, np.float32(0.51))
    assert np.array_equal(dist, want)


def test_band_grids_cover_a_mesh_partly_outside_the_grid():
    """The band's private grids span only the mesh's box: a mesh crossing the grid's faces loses nothing."""
    v, f = icosphere(3, 6.0, (0.0, 0.0, 0.0))
    f = f.astype(np.int64)
    for shift in ((-9.0, 0.0, 0.0), (0.0, 7.5, -8.0), (40.0, 0.0, 0.0)):
        aff = np.eye(4)
        aff[:3, 3] = np.asarray(shift) - 6.0
        shape = np.array([13, 12, 14], dtype=np.int64)
        got = band_sqdist(v, f, 2.5, aff, shape, 2)
        pts = np.indices(tuple(shape)).reshape(3, -1).T + aff[:3, 3]
        d = np.linalg.norm(pts, axis=1) - 6.0  # the icosphere's facets lie within 0.15 mm inside the sphere
        got = np.sqrt(got.reshape(-1))
        assert np.all(np.isinf(got[np.abs(d) > 2.7]))
        assert np.all(np.isfinite(got[np.abs(d) < 2.2]))
        if np.isfinite(got).any():
            assert np.abs(got[np.isfinite(got)] - np.abs(d[np.isfinite(got)])).max() < 0.2
