"""Cortical thickness: concentric spheres, the cap, brute force on real fsaverage5 surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from cor2vox_bids.errors import SurfaceError
from cor2vox_bids.geometry import closest_distance, cortical_thickness, load_freesurfer_hemisphere
from cor2vox_bids.geometry._closest import _triangle_table, point_triangle_sqdist
from meshes import icosphere


def _brute(points, v, f):
    tab = _triangle_table(v[f[:, 0]], v[f[:, 1]], v[f[:, 2]])
    return np.array([np.sqrt(point_triangle_sqdist(np.broadcast_to(p, (len(tab), 3)), tab).min()) for p in points])


def test_concentric_spheres_give_radius_difference():
    v, f = icosphere(4)  # 5120 faces; facets deviate from the sphere by at most r*(1-cos 0.058)
    white, pial = v * 10.0, v * 12.5
    th = cortical_thickness(white, f, pial, f)
    assert th.dtype == np.float32 and th.shape == (len(v),)
    # white vertex -> pial facets: 2.5 minus at most 12.5*0.0017 = 0.021 (facets are inside);
    # pial vertex -> white facets: 2.5 plus at most 10*0.0017 = 0.017
    assert np.all(np.abs(th - 2.5) < 0.021)
    assert abs(float(th.mean()) - 2.5) < 0.01


def test_thickness_is_capped():
    v, f = icosphere(2)
    th = cortical_thickness(v * 10.0, f, v * 30.0, f, cap=5.0)
    np.testing.assert_array_equal(th, np.float32(5.0))
    th = cortical_thickness(v * 10.0, f, v * 13.0, f, cap=2.0)
    np.testing.assert_array_equal(th, np.float32(2.0))


def test_closest_point_not_nearest_vertex():
    # a big flat triangle: the closest point of a point above its middle is interior
    v = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    f = np.array([[0, 1, 2]])
    d = closest_distance(v, f, np.array([[3.0, 3.0, 2.0]]))
    assert abs(d[0] - 2.0) < 1e-12  # the nearest vertex is sqrt(22) away


def test_mismatched_vertex_counts_raise():
    v, f = icosphere(1)
    v2, f2 = icosphere(2)
    with pytest.raises(SurfaceError, match="same vertices"):
        cortical_thickness(v, f, v2, f2)


def test_real_fsaverage5_against_brute_force(fsaverage5):
    hemi = load_freesurfer_hemisphere(fsaverage5, "L")
    th = cortical_thickness(hemi.white.vertices, hemi.white.faces, hemi.pial.vertices, hemi.pial.faces)
    sel = np.arange(0, len(th), 197)
    d1 = _brute(hemi.white.vertices[sel], hemi.pial.vertices, hemi.pial.faces)
    d2 = _brute(hemi.pial.vertices[sel], hemi.white.vertices, hemi.white.faces)
    ref = np.minimum(0.5 * (d1 + d2), 5.0)
    assert np.abs(th[sel] - ref).max() < 1e-4  # float32 output of the same closed form
    # fsaverage5's own ?h.thickness averages many subjects; the surfaces' thickness is close on average
    assert abs(float(th.mean()) - float(hemi.thickness.mean())) < 0.1
