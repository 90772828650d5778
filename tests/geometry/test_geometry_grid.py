"""ModelGrid construction and world-space-correct resampling."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.geometry import ModelGrid, resample


def test_around_centres_on_bounding_box():
    v = np.array([[-70.0, -100, -40], [66, 60, 80], [0, 0, 0]])
    g = ModelGrid.around(v, 128, 1.5)
    assert g.shape == (128, 128, 128)
    np.testing.assert_allclose(g.spacing, 1.5)
    np.testing.assert_allclose(g.center, [-2.0, -20.0, 20.0], atol=1e-12)
    # RAS-aligned: diagonal positive linear part
    np.testing.assert_array_equal(g.affine[:3, :3], np.diag([1.5] * 3))
    # the world coordinates of the voxel centres span +-(127/2)*1.5 around the centre
    w = g.world_coordinates()
    np.testing.assert_allclose(w[0, 0, 0], g.center - 63.5 * 1.5)
    np.testing.assert_allclose(w[-1, -1, -1], g.center + 63.5 * 1.5)


def test_grid_is_frozen_and_hashable():
    g = ModelGrid.around(np.zeros((1, 3)), (4, 5, 6), 2.0)
    assert g == ModelGrid(g.affine.copy(), (4, 5, 6))
    assert len({g, ModelGrid(g.affine.copy(), (4, 5, 6))}) == 1
    with pytest.raises(AttributeError):  # frozen dataclass
        g.shape = (1, 1, 1)
    with pytest.raises(ValueError):
        g.affine[0, 0] = 3.0  # read-only array


def test_resample_linear_ramp_is_exact_for_any_frames():
    # f(x, y, z) = 2x - y + 0.5z + 3 is reproduced exactly by trilinear interpolation
    src_aff = nib.affines.from_matvec(np.array([[0, 0, -1.2], [1.1, 0, 0], [0, -0.9, 0]]), [40.0, -30.0, 25.0])
    ijk = np.indices((60, 70, 64)).reshape(3, -1).T
    w = ijk @ src_aff[:3, :3].T + src_aff[:3, 3]
    vol = (2 * w[:, 0] - w[:, 1] + 0.5 * w[:, 2] + 3).reshape(60, 70, 64)
    grid = ModelGrid.around(np.array([[-10.0, -20, -8], [12, 15, 10]]), 16, 1.7)
    out = resample(vol, src_aff, grid)
    gw = grid.world_coordinates()
    expected = 2 * gw[..., 0] - gw[..., 1] + 0.5 * gw[..., 2] + 3
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-3)  # float32 rounding of values < 200


def test_resample_nearest_and_outside_is_zero():
    vol = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    grid = ModelGrid(np.eye(4), (5, 3, 3))  # extends two voxels beyond the source along i
    out = resample(vol, np.eye(4), grid, order=0)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out[:3], vol)
    np.testing.assert_array_equal(out[3:], 0)
