"""Exact point-to-triangle and point-to-mesh distances against independent references."""

from __future__ import annotations

import numpy as np

from cor2vox_bids.geometry._closest import _triangle_table, build_index, mesh_distance, point_triangle_sqdist
from meshes import ellipsoid, icosphere


def _sampled_distance(p: np.ndarray, tri: np.ndarray, n: int = 400) -> float:
    """Distance to a dense barycentric sampling of the triangle (upper bound, converges as n^-1)."""
    u, v = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
    keep = u + v <= 1
    pts = tri[0] + np.outer(u[keep], tri[1] - tri[0]) + np.outer(v[keep], tri[2] - tri[0])
    return float(np.sqrt(((pts - p) ** 2).sum(1)).min())


def test_point_triangle_regions_closed_form():
    tri = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    tab = _triangle_table(tri[None, 0], tri[None, 1], tri[None, 2])
    cases = {
        (1.0, 1.0, 2.0): 2.0,  # above the interior: plane distance
        (2.0, -1.0, 0.0): 1.0,  # beside edge AB
        (-2.0, 1.0, 1.0): np.sqrt(5.0),  # beside edge AC
        (-1.0, -1.0, 0.0): np.sqrt(2.0),  # beyond vertex A
        (5.0, 0.0, 0.0): 1.0,  # beyond vertex B
        (4.0, 3.0, 0.0): 12.0 / 5.0,  # beside the hypotenuse: |3*4 + 4*3 - 12| / 5
    }
    for p, expected in cases.items():
        d = np.sqrt(point_triangle_sqdist(np.array([p]), tab))[0]
        assert abs(d - expected) < 1e-12, (p, d, expected)


def test_point_triangle_random_against_sampling():
    rng = np.random.default_rng(1)
    tris = rng.normal(size=(40, 3, 3)) * 2
    pts = rng.normal(size=(40, 3)) * 3
    tab = _triangle_table(tris[:, 0], tris[:, 1], tris[:, 2])
    d = np.sqrt(point_triangle_sqdist(pts, tab))
    ref = np.array([_sampled_distance(p, t) for p, t in zip(pts, tris)])
    # sampling step is edge/400 (edges < ~10): the sampled distance overestimates by < 0.02
    assert np.all(d <= ref + 1e-12)
    assert np.all(ref - d < 0.02)


def test_degenerate_triangles_give_segment_or_point_distance():
    tris = np.array([[[0, 0, 0], [2, 0, 0], [1, 0, 0]],  # collinear
                     [[1, 1, 1], [1, 1, 1], [1, 1, 1]]], dtype=float)  # a point
    tab = _triangle_table(tris[:, 0], tris[:, 1], tris[:, 2])
    d = np.sqrt(point_triangle_sqdist(np.array([[1.0, 3.0, 0.0], [1.0, 1.0, 4.0]]), tab))
    np.testing.assert_allclose(d, [3.0, 3.0], atol=1e-12)


def test_mesh_distance_matches_brute_force():
    v, f = ellipsoid((6.0, 4.0, 3.0), subdivisions=3)
    rng = np.random.default_rng(2)
    pts = rng.uniform(-9, 9, size=(500, 3))
    tab = _triangle_table(v[f[:, 0]], v[f[:, 1]], v[f[:, 2]])
    ref = np.array([np.sqrt(point_triangle_sqdist(np.broadcast_to(p, (len(tab), 3)), tab).min()) for p in pts])
    got = mesh_distance(build_index(v, f), pts)
    # same closed form, different search: agreement to rounding
    assert np.abs(got - ref).max() < 1e-9


def test_mesh_distance_max_dist_caps_and_sphere_value():
    v, f = icosphere(4, radius=10.0)
    pts = np.array([[0, 0, 0.0], [0, 0, 13.0], [30.0, 0, 0]])
    d = mesh_distance(build_index(v, f), pts, max_dist=5.0)
    # inscribed polyhedron of a radius-10 sphere: facets lie within 10*(1-cos(0.06)) < 0.02 mm inside
    assert d[0] == 5.0 and d[2] == 5.0
    assert 3.0 <= d[1] < 3.02


def test_compiled_point_triangle_matches_numpy_including_degenerate():
    """The compiled kernel (used by every search) against the separate numpy closed form."""
    from cor2vox_bids.geometry._kernels import point_triangle_sqdist1

    rng = np.random.default_rng(3)
    tris = rng.normal(size=(300, 3, 3)) * 2
    tris[:50, 2] = tris[:50, 0] + 0.3 * (tris[:50, 1] - tris[:50, 0])  # collinear
    tris[50:60, 1] = tris[50:60, 2] = tris[50:60, 0]  # single points
    tris[60:70, 1] = tris[60:70, 0]  # two equal corners
    pts = rng.normal(size=(300, 3)) * 3
    tab = _triangle_table(tris[:, 0], tris[:, 1], tris[:, 2])
    ref = point_triangle_sqdist(pts, tab)
    got = np.array([point_triangle_sqdist1(*p, *t[0], *t[1], *t[2]) for p, t in zip(pts, tris)])
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_mesh_distance_upper_bound_hint_and_thread_count_do_not_change_results():
    from cor2vox_bids.geometry import set_num_threads

    v, f = icosphere(3, radius=8.0)
    rng = np.random.default_rng(4)
    pts = rng.uniform(-12, 12, size=(3000, 3))
    idx = build_index(v, f)
    base = mesh_distance(idx, pts)
    hinted = mesh_distance(idx, pts, on_mesh=v[rng.integers(0, len(v), len(pts))])
    try:
        set_num_threads(1)
        single = mesh_distance(idx, pts)
    finally:
        set_num_threads(None)
    assert np.array_equal(base, hinted) and np.array_equal(base, single)
    # cell sizes only change the search, not the answer
    assert np.array_equal(base, mesh_distance(build_index(v, f, cell_edges=1.0), pts))
