"""Signed distance fields of closed triangle meshes on voxel grids.

Sign: winding number along voxel columns. Every triangle is projected along the grid's third
axis onto the (i, j) lattice; which lattice points it covers is decided with exact integer
arithmetic (vertices snapped to a fine fixed-point grid, then simulation of simplicity for
points exactly on an edge or vertex), so a closed mesh covers each column point consistently and
the signed crossing counts accumulated along the column give the exact winding number of every
voxel centre. A voxel is inside when its winding number is not zero, which is robust to
self-intersections and to the orientation of the faces.

Distance: voxels within ``band`` voxels of the surface get the exact distance to the closest
point of the mesh, from a scan of the characteristic regions of its faces, edges and vertices
(``_regions.py``: every voxel is scored against the features whose region can hold its closest
point, not a nearest-vertex or sampled approximation). An exact Euclidean distance transform
(anisotropic spacing; ``_kernels.seed_distance``: the values of ``edt.edt`` up to float32 rounding) from
the voxels at the surface gives the distance beyond the band (error below one voxel).

The sign, band and distance-transform kernels are compiled with numba (``_kernels.py``, ``_regions.py``);
the passes over the whole grid (winding numbers, seeds, distance transform, final values) run in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

from ._closest import build_index, mesh_distance
from ._kernels import distance_seeds_free, finish_sdf, seed_distance, winding_crossings, winding_mask
from ._linalg import transform
from ._regions import band_sqdist

TASK_GRID_BYTES = 1 << 29  # memory for the band's per-task grids (float32 each)
SEED_OFFSET = 0.6  # voxels; calibrated on spheres, tori, ellipsoids (beyond-band error within +-0.7 voxel)


def _to_voxel(vertices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World coordinates -> continuous voxel indices."""
    return transform(vertices, np.linalg.inv(np.asarray(affine, dtype=np.float64)))


def winding_inside(vertices_vox: np.ndarray, faces: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean mask of voxel centres with a non-zero winding number (vertices in voxel indices)."""
    ni, nj, nk = (int(s) for s in shape)
    v = np.asarray(vertices_vox, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    # fixed point: |coordinate| * scale <= 2**29 keeps every product below 2**62
    extent = float(np.max(np.abs(v[:, :2]), initial=0.0)) + max(ni, nj) + 2.0
    scale = float(2.0 ** np.floor(np.log2(2.0**29 / extent)))
    if scale < 1.0:
        raise ValueError(f"mesh vertices lie absurdly far from the grid (|voxel index| up to {extent:.3g})")
    xy = np.ascontiguousarray(np.round(v[:, :2] * scale).astype(np.int64))
    crossings = winding_crossings(xy, np.ascontiguousarray(v[:, 2]), f, int(scale), ni, nj, nk,
                                  numba.get_num_threads())
    return winding_mask(crossings, nk)


def band_sqdistance(vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                    band_mm: float) -> np.ndarray:
    """Exact squared distance (float32, ``shape``) for voxels within ``band_mm``; ``inf`` elsewhere."""
    shape = tuple(int(s) for s in shape)
    v = np.ascontiguousarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    # one private grid per parallel task, as many as the memory budget allows
    tasks = max(1, min(numba.get_num_threads(), TASK_GRID_BYTES // max(4 * int(np.prod(shape)), 1)))
    return band_sqdist(v, f, float(band_mm), np.ascontiguousarray(affine, dtype=np.float64),
                       np.asarray(shape, dtype=np.int64), tasks)


def band_distance(vertices: np.ndarray, faces: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                  band_mm: float) -> np.ndarray:
    """Exact unsigned distance (float32, flat, C order) for voxels within ``band_mm``; ``inf`` elsewhere."""
    sq = band_sqdistance(vertices, faces, affine, shape, band_mm)
    return np.sqrt(sq, out=sq).reshape(-1)


def _surface_voxels(inside: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour on the other side of the surface."""
    edge = np.zeros_like(inside)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        diff = inside[tuple(a)] != inside[tuple(b)]
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    return edge


def signed_distance(
    vertices: np.ndarray,
    faces: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    band: float = 3,
) -> np.ndarray:
    """Signed distance (mm, float32, negative inside) of a closed mesh at the voxel centres.

    ``vertices`` (n, 3) are in the world frame of ``affine`` (voxel -> world 4x4; oblique,
    flipped and anisotropic grids are handled), ``shape`` the grid size. Voxels within ``band``
    voxels (of the largest spacing) of the surface get the exact distance to the triangles;
    farther voxels get the distance-transform estimate (error below one voxel). The mesh must
    be closed for the sign to be meaningful (open meshes get a winding number anyway).
    """
    shape = tuple(int(s) for s in shape)
    aff = np.asarray(affine, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0 or len(v) == 0:
        raise ValueError("signed_distance needs a non-empty triangle mesh")
    if f.min() < 0 or f.max() >= len(v) or not np.all(np.isfinite(v)):
        raise ValueError("signed_distance needs finite vertices and face indices in range (validate the surface)")
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    inside = winding_inside(_to_voxel(v, aff), f, shape)
    band_mm = float(band) * float(spacing.max())
    sq = band_sqdistance(v, f, aff, shape, band_mm)
    # seeds of the distance transform: voxels the surface passes within half a voxel of, and
    # voxels next to a change of sign (covers every surface, also ones between two insides);
    # one parallel pass (same voxels as _surface_voxels(inside) | (sqrt(sq) <= half a voxel) in float32)
    free = distance_seeds_free(inside, sq, np.float32(0.5 * float(spacing.max())))
    if free.all():
        # the surface is nowhere near the grid: one sign everywhere, exact distances throughout
        coords = transform(np.indices(shape).reshape(3, -1).T.astype(np.float64), aff)
        far = mesh_distance(build_index(v, f), coords)  # exact; only for meshes away from the grid
        far = far.reshape(shape).astype(np.float32)
        return np.where(inside, -far, far)
    # exact distance to the nearest seed (the Euclidean distance transform of edt.edt(free), compiled and
    # parallel; a plane without seeds is skipped until the last pass)
    dist = seed_distance(free, float(spacing[0]), float(spacing[1]), float(spacing[2]))
    # beyond the band: a seed lies on average SEED_OFFSET voxels in front of the surface; in the band the exact
    # distance; negative inside (one parallel pass, in place)
    finish_sdf(dist, sq, inside, np.float32(SEED_OFFSET * spacing.mean()))
    return dist
