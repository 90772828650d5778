"""Exact band distances from characteristic regions, on meshes that stress every kind of region:
saddle vertices, open boundaries, degenerate and non-manifold faces, flat patches on lattice points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cor2vox_bids.geometry._regions import band_sqdist
from meshes import brute_force_distance, combine, icosphere


def _affine(shape, spacing, rot, centre=(0.0, 0.0, 0.0)):
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    aff[:3, 3] = np.asarray(centre) - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return aff


def _check(v, f, aff, shape, band, tasks=2):
    """Every voxel: exact (1e-5 mm) where the brute-force distance is within the band, inf beyond it."""
    got = np.sqrt(band_sqdist(np.ascontiguousarray(v, dtype=np.float64), np.ascontiguousarray(f, dtype=np.int64),
                              float(band), aff, np.asarray(shape, dtype=np.int64), tasks)).reshape(-1)
    world = np.indices(shape).reshape(3, -1).T @ aff[:3, :3].T + aff[:3, 3]
    used = np.unique(f)
    lo, hi = v[used].min(0) - band - 1, v[used].max(0) + band + 1
    near = np.flatnonzero(np.all((world > lo) & (world < hi), axis=1))
    ref = np.full(len(world), np.inf)
    ref[near] = brute_force_distance(world[near], v, f)
    inside = ref <= band
    assert inside.sum() > 200
    assert np.abs(got[inside] - ref[inside]).max() < 1e-5
    # beyond the band (up to rounding at its edge): nothing
    assert np.all(np.isinf(got[ref > band + 1e-5]))
    return got


def _bumpy_sphere(seed=0, subdivisions=3, radius=6.0, amplitude=0.8):
    rng = np.random.default_rng(seed)
    v, f = icosphere(subdivisions, radius)
    v = v * (1.0 + amplitude / radius * rng.standard_normal(len(v)))[:, None]
    return v, f


def test_saddles_and_folds_on_an_oblique_anisotropic_grid():
    # random radial noise: convex, concave and saddle vertices, sharp creases
    v, f = _bumpy_sphere()
    rot = Rotation.from_euler("xyz", [0.4, -0.7, 1.1]).as_matrix()
    shape = (26, 30, 22)
    _check(v, f, _affine(shape, (0.7, 0.6, 0.9), rot), shape, 2.0)


def test_open_mesh_with_boundary_edges_and_vertices():
    v, f = _bumpy_sphere(seed=1)
    keep = v[f].mean(axis=1)[:, 2] < 2.0  # cut off a cap: a boundary loop
    shape = (28, 28, 28)
    _check(v, f[keep], _affine(shape, 0.6, np.eye(3)), shape, 1.8)


def test_degenerate_non_manifold_and_unreferenced_vertices():
    v, f = icosphere(2, 5.0)
    n = len(v)
    extra_v = np.array([
        [0.0, 0.0, 9.0], [1.0, 0.0, 9.0], [2.0, 0.0, 9.0],  # collinear triangle
        [0.0, 2.0, 8.0], [0.0, 2.0, 8.0], [1.0, 3.0, 8.0],  # repeated vertex: zero-length edge
        [100.0, 100.0, 100.0],  # in no face: must not count
        [3.0, -3.0, 7.5], [3.0, -1.0, 7.5], [4.0, -2.0, 9.0], [2.0, -2.0, 9.0], [3.0, -2.0, 6.0],
    ])
    extra_f = np.array([[n, n + 1, n + 2], [n + 3, n + 4, n + 5],
                        # three faces on one edge (non-manifold)
                        [n + 7, n + 8, n + 9], [n + 8, n + 7, n + 10], [n + 7, n + 8, n + 11]])
    v2, f2 = np.concatenate([v, extra_v]), np.concatenate([f, extra_f])
    shape = (30, 30, 34)
    _check(v2, f2, _affine(shape, 0.5, np.eye(3), (0.0, 0.0, 2.0)), shape, 1.5)


def test_flat_patches_on_lattice_points():
    # a flat square grid whose vertices, edges and faces lie on voxel centres and lattice planes,
    # folded into a box: exactly flat vertices and edges (unbounded cones) and ties on every boundary
    xs = np.arange(2.0, 9.0)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    top = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 8.0)], 1)
    k = len(xs)
    i, j = np.meshgrid(np.arange(k - 1), np.arange(k - 1), indexing="ij")
    a = (i * k + j).ravel()
    quads = np.stack([a, a + k, a + k + 1, a + 1], 1)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    bottom = top.copy()
    bottom[:, 2] = 2.0
    v, f = combine((top, faces), (bottom, faces[:, ::-1]))
    shape = (11, 11, 11)
    _check(v, f, np.eye(4), shape, 3.0)


@pytest.mark.parametrize("tasks", [1, 3])
def test_result_does_not_depend_on_tasks(tasks):
    v, f = _bumpy_sphere(seed=2, subdivisions=2)
    shape = (20, 20, 20)
    aff = _affine(shape, 0.8, np.eye(3))
    args = (v, f, 2.0, aff, np.asarray(shape, dtype=np.int64))
    assert np.array_equal(band_sqdist(*args, tasks), band_sqdist(*args, 2))
