"""The band is exact on meshes that look like real reconstructions, voxel by voxel, against a numpy oracle.

Each case is a patch of fsaverage5's white surface (shipped with the demo data), smoothly warped like the
demo's pseudo-participants and then varied the way real reconstructions differ from a template: subdivision to ~1 mm
edges with random vertex jitter of 0.01-0.1 mm, decimation, local refinement (1-to-3 splits: vertices of high
valence, slivers and needles), near-degenerate slivers and needles, sharp creases. A sub-volume around a random
vertex (conformed LIA or oblique axes, 0.5-1.2 mm voxels) is scored by ``band_sqdist`` and every voxel whose
exact distance is within the band is compared with ``meshes.exact_distance`` (numpy, a different algorithm);
voxels beyond the band must stay empty. Only the faces around the vertices near the sub-volume are passed (so
those vertices keep their whole fans and the test stays fast).
"""

from __future__ import annotations

import zlib

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cor2vox_bids.geometry import signed_distance
from cor2vox_bids.geometry._regions import band_sqdist
from meshes import collapse_edges, creases, exact_distance, needles, slivers, smooth_warp, split_faces, subdivide

TOLERANCE = 1e-4  # mm (float32 output: the rounding is ~2e-7 mm in a 3 mm band)
LIA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@pytest.fixture(scope="module")
def white(fsaverage5):
    v, f = nib.freesurfer.read_geometry(str(fsaverage5 / "surf" / "lh.white"))
    return v.astype(np.float64), f.astype(np.int64)


def _patch(v, f, centre, radius):
    """The faces whose corners all lie within ``radius`` of ``centre`` (vertices renumbered)."""
    keep = np.all(np.linalg.norm(v[f] - centre, axis=2) < radius, axis=1)
    used, inverse = np.unique(f[keep], return_inverse=True)
    return v[used], inverse.reshape(-1, 3)


def _variant(kind, v, f, rng):
    if kind == "warp":
        return v, f
    v, f = subdivide(v, f)  # ~2 mm edges
    if kind == "fine-jitter":
        v, f = subdivide(v, f)  # ~1 mm edges, as in real reconstructions
        return v + rng.normal(scale=rng.uniform(0.01, 0.1), size=v.shape), f
    if kind == "decimated":
        return collapse_edges(v, f, rng, 0.3)
    if kind == "refined":
        return split_faces(v, f, rng, 0.25, 2)
    if kind == "slivers":
        return slivers(v, f, rng, 0.15, eps=10 ** rng.uniform(-7, -3))
    if kind == "needles":
        return needles(v, f, rng, 0.15, eps=10 ** rng.uniform(-7, -3))
    if kind == "creases":
        return creases(v, rng, period=rng.uniform(2, 6), depth=rng.uniform(0.5, 2)), f
    if kind == "mixed":
        v, f = split_faces(v, f, rng, 0.1, 1)
        v, f = collapse_edges(v, f, rng, 0.1)
        return v + rng.normal(scale=0.05, size=v.shape), f
    raise ValueError(kind)


def _crop(v, f, rng, centre, n=16, band=3.0):
    """(got, reference, band) for every voxel of an n^3 sub-volume around ``centre``."""
    spacing = rng.uniform(0.5, 1.0)
    rot = LIA if rng.random() < 0.5 else Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
    lin = rot * spacing
    aff = np.eye(4)
    aff[:3, :3], aff[:3, 3] = lin, centre - lin @ np.full(3, (n - 1) / 2)
    pts = np.indices((n,) * 3).reshape(3, -1).T @ lin.T + aff[:3, 3]
    lo, hi = pts.min(0) - band - 0.1, pts.max(0) + band + 0.1
    near = np.all((v > lo) & (v < hi), axis=1)
    fc = f[near[f].any(axis=1)]  # the whole fan of every vertex that can be closest
    got = band_sqdist(v, fc, band, aff, np.array((n,) * 3, dtype=np.int64), 2).reshape(-1)
    return np.sqrt(got.astype(np.float64)), exact_distance(pts, v, fc), band


@pytest.mark.parametrize("kind", ["warp", "fine-jitter", "decimated", "refined", "slivers", "needles", "creases",
                                  "mixed"])
def test_band_is_exact_on_reconstruction_like_meshes(white, kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))
    checked = 0
    for _ in range(3):
        # a patch of the cortex around a random vertex (radius: the sub-volume, the band and a margin), varied
        warped = smooth_warp(white[0], rng)  # a demo-like pseudo-participant
        centre = warped[rng.integers(len(warped))]
        v, f = _variant(kind, *_patch(warped, white[1], centre, 22.0), rng)
        got, ref, band = _crop(v, f, rng, centre + rng.normal(size=3))
        inside = ref <= band * (1 - 1e-7)
        assert np.all(np.isfinite(got[inside])), "a band voxel was reached by no region"
        assert np.abs(got[inside] - ref[inside]).max() <= TOLERANCE
        assert not np.isfinite(got[ref > band * (1 + 1e-7)]).any()
        checked += int(inside.sum())
    assert checked > 5000


def test_whole_warped_hemisphere_on_a_conformed_grid(white):
    """signed_distance of a whole warped, jittered hemisphere on a 1.5 mm LIA grid: every band voxel exact."""
    rng = np.random.default_rng(5)
    v = smooth_warp(white[0], rng) + rng.normal(scale=0.05, size=white[0].shape)
    f = white[1]
    shape = (128, 128, 128)
    aff = np.eye(4)
    aff[:3, :3] = 1.5 * LIA
    aff[:3, 3] = v.mean(0) - aff[:3, :3] @ (np.asarray(shape) / 2.0)
    sdf = signed_distance(v, f, aff, shape).reshape(-1)
    near = rng.choice(np.flatnonzero(np.abs(sdf) <= 3 * 1.5 + 0.5), 30_000, replace=False)
    pts = near[:, None] // np.array([shape[1] * shape[2], shape[2], 1]) % np.array(shape)
    ref = exact_distance(pts @ aff[:3, :3].T + aff[:3, 3], v, f)
    band = ref <= 4.5 * (1 - 1e-7)
    assert band.sum() > 20_000
    assert np.abs(np.abs(sdf[near][band]) - ref[band]).max() <= TOLERANCE
