"""Signed distance fields: signs everywhere and exact values in the band, on analytic shapes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cor2vox_bids.geometry import signed_distance, winding_inside
from meshes import brute_force_distance, combine, ellipsoid, icosphere, shell, torus


def _grid(shape, affine):
    ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _centred(shape, spacing=1.0, rot=None):
    aff = np.eye(4)
    lin = np.diag(np.broadcast_to(np.asarray(spacing, dtype=float), (3,)))
    if rot is not None:
        lin = rot @ lin
    aff[:3, :3] = lin
    aff[:3, 3] = -lin @ ((np.asarray(shape) - 1) / 2.0)
    return aff


def _radius(p, x0):
    """Distance of points to (x0, 0, 0)."""
    return np.linalg.norm(p - [x0, 0.0, 0.0], axis=1)


def _check_against_mesh(sdf, v, f, aff, shape, band_mm, spacing_max, n=4000):
    """Exact vs a brute-force numpy point-triangle distance (independent of the compiled kernels) in the band,
    <= 1 voxel beyond; on ``n`` random voxels near the surface and ``n`` anywhere (keeps it fast).
    Returns (voxel indices, reference distances)."""
    rng = np.random.default_rng(0)
    flat = np.abs(sdf.reshape(-1))
    near = np.flatnonzero(flat <= band_mm + 1.0)
    sel = np.unique(np.concatenate([rng.choice(near, min(n, len(near)), replace=False),
                                    rng.choice(flat.size, min(n, flat.size), replace=False)]))
    ref = brute_force_distance(_grid(shape, aff)[sel], v, f)
    got = flat[sel].astype(np.float64)
    band = ref <= band_mm
    assert band.sum() > 1000
    # float32 output: 1e-5 mm covers the rounding of values below ~100 mm
    assert np.abs(got[band] - ref[band]).max() < 1e-5
    assert np.abs(got[~band] - ref[~band]).max() <= spacing_max
    return sel, ref


def test_sphere_sign_and_value():
    shape = (40, 40, 40)
    aff = _centred(shape)
    c = np.array([0.3, -0.2, 0.1])
    v, f = icosphere(4, 13.0, c)
    sdf = signed_distance(v, f, aff, shape)
    assert sdf.dtype == np.float32 and sdf.shape == shape
    sel, ref = _check_against_mesh(sdf, v, f, aff, shape, 3.0, 1.0)
    analytic = np.linalg.norm(_grid(shape, aff) - c, axis=1) - 13.0
    # facets of a 4x-subdivided icosphere lie at most 13*(1-cos(0.058)) = 0.022 mm inside the sphere
    clear = np.abs(analytic) > 0.03
    assert np.all(np.sign(sdf.reshape(-1)[clear]) == np.sign(analytic[clear]))
    assert np.abs(sdf.reshape(-1)[sel] - analytic[sel])[ref <= 3.0].max() < 0.03


@pytest.mark.parametrize("name", ["ellipsoid", "torus", "shell", "touching", "nested"])
def test_shapes_sign_everywhere_and_exact_band(name):
    shape = (36, 36, 36)
    aff = _centred(shape, 0.9)
    if name == "ellipsoid":
        v, f = ellipsoid((13.0, 9.0, 6.0), 4, center=(0.4, 0.1, -0.3))

        def inside(p):
            return (((p - [0.4, 0.1, -0.3]) / [13.0, 9.0, 6.0]) ** 2).sum(1) < 1

    elif name == "torus":
        v, f = torus(9.0, 4.0, 64, 32)

        def inside(p):
            return (np.hypot(p[:, 0], p[:, 1]) - 9.0) ** 2 + p[:, 2] ** 2 < 16

    elif name == "shell":  # hollow ball: the cavity is outside
        v, f = shell(14.0, 8.0, 4)

        def inside(p):
            return (_radius(p, 0) < 14) & (_radius(p, 0) > 8)

    elif name == "touching":  # two spheres touching at the origin
        v, f = combine(icosphere(3, 7.0, (-7.0, 0, 0)), icosphere(3, 7.0, (7.0, 0, 0)))

        def inside(p):
            return (_radius(p, -7) < 7) | (_radius(p, 7) < 7)

    else:  # nested, both outward: winding 2 inside the inner one -> still inside
        v, f = combine(icosphere(3, 14.0), icosphere(3, 6.0))

        def inside(p):
            return _radius(p, 0) < 14

    sdf = signed_distance(v, f, aff, shape)
    _check_against_mesh(sdf, v, f, aff, shape, 3 * 0.9, 0.9)
    world = _grid(shape, aff)
    # analytic shapes vs their meshes differ by < 0.35 mm (torus: 32 segments of a r=4 circle);
    # every voxel: the sign must match the analytic inside test wherever |sdf| > 0.35
    clear = np.abs(sdf.reshape(-1)) > 0.35
    assert np.array_equal(sdf.reshape(-1)[clear] < 0, inside(world[clear]))


def test_oblique_anisotropic_and_lia_grids():
    v, f = ellipsoid((12.0, 8.0, 6.0), 4)
    rot = Rotation.from_euler("xyz", [0.3, -0.5, 0.8]).as_matrix()
    for aff, shape in (
        (_centred((30, 44, 36), (1.0, 0.7, 0.8), rot), (30, 44, 36)),
        (_centred((34, 34, 34), 1.0, np.diag([-1.0, 1.0, -1.0])[:, [0, 2, 1]]), (34, 34, 34)),  # LIA-like
    ):
        sdf = signed_distance(v, f, aff, shape)
        spacing = np.linalg.norm(aff[:3, :3], axis=0)
        _check_against_mesh(sdf, v, f, aff, shape, 3 * spacing.max(), spacing.max(), n=2500)
        world = _grid(shape, aff)
        inside = ((world / [12.0, 8, 6]) ** 2).sum(1) < 1
        clear = np.abs(sdf.reshape(-1)) > 0.05  # the 4x-subdivided ellipsoid is within 0.03 mm
        assert np.array_equal(sdf.reshape(-1)[clear] < 0, inside[clear])


def test_sign_ignores_face_orientation_and_lattice_ties():
    # a cube whose vertices and edges lie exactly on voxel centres and lattice lines
    shape = (12, 12, 12)
    aff = np.eye(4)
    c = np.array([[2, 2, 2], [8, 2, 2], [8, 8, 2], [2, 8, 2], [2, 2, 8], [8, 2, 8], [8, 8, 8], [2, 8, 8]], float)
    quads = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]
    f = np.array([[q[0], q[1], q[2]] for q in quads] + [[q[0], q[2], q[3]] for q in quads])
    expected = np.zeros(shape, bool)
    expected[3:8, 3:8, 3:8] = True  # centres strictly inside; centres on the faces have distance 0
    for faces in (f, f[:, ::-1]):
        inside = winding_inside(c, faces, shape)
        on_surface = np.zeros(shape, bool)
        on_surface[2:9, 2:9, 2:9] = True
        on_surface[3:8, 3:8, 3:8] = False
        assert np.array_equal(inside & ~on_surface, expected)
        sdf = signed_distance(c, faces, aff, shape, band=6)
        assert np.all(sdf[on_surface] == 0)
        assert sdf[5, 5, 5] == -3.0 and sdf[0, 5, 5] == 2.0 and sdf[11, 11, 11] == pytest.approx(np.sqrt(27), abs=1e-6)


def test_mesh_outside_grid_gives_positive_distances():
    shape = (10, 10, 10)
    v, f = icosphere(2, 3.0, (40.0, 0, 0))
    sdf = signed_distance(v, f, np.eye(4), shape)
    ref = brute_force_distance(_grid(shape, np.eye(4)), v, f).reshape(shape)
    assert np.all(sdf > 0)
    np.testing.assert_allclose(sdf, ref, atol=1e-5)
