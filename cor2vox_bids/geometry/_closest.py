"""Exact point-to-triangle-mesh distances, vectorised with numpy (internal module).

A :class:`TriangleIndex` keeps per-triangle constants and a KD-tree of triangle centroids.
:func:`mesh_distance` returns, for each query point, the exact Euclidean distance to the closest
point of the mesh (not the closest vertex). Candidates come from the k nearest centroids; the
answer is certified by the bound ``dist(q, t) >= |q - c_t| - R_t`` (``R_t`` = largest
centroid-to-vertex distance of triangle ``t``): when the k-th centroid is farther than
``best + R_max`` no unseen triangle can be closer, otherwise k is doubled for those points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

_CHUNK = 1 << 15  # pairs per vectorised block (fits the caches)

# columns of the packed per-triangle table
_A, _E0, _E1, _N = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
_a, _b, _c, _det = 12, 13, 14, 15


@dataclass(frozen=True)
class TriangleIndex:
    """Per-triangle constants of a mesh plus a KD-tree of its triangle centroids."""

    table: np.ndarray  # (m, 16) float64: A, E0=B-A, E1=C-A, N=E0xE1, a, b, c, |N|^2
    radius: np.ndarray  # (m,) bounding-sphere radius about the centroid
    tree: cKDTree
    r_max: float

    @property
    def n_triangles(self) -> int:
        """Number of triangles indexed."""
        return int(self.table.shape[0])


def build_index(vertices: np.ndarray, faces: np.ndarray) -> TriangleIndex:
    """Precompute the per-triangle table and the centroid KD-tree of a mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    pa, pb, pc = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    e0, e1 = pb - pa, pc - pa
    n = np.cross(e0, e1)
    a = np.einsum("ij,ij->i", e0, e0)
    b = np.einsum("ij,ij->i", e0, e1)
    c = np.einsum("ij,ij->i", e1, e1)
    det = np.einsum("ij,ij->i", n, n)
    table = np.empty((len(f), 16), dtype=np.float64)
    table[:, _A], table[:, _E0], table[:, _E1], table[:, _N] = pa, e0, e1, n
    table[:, _a], table[:, _b], table[:, _c], table[:, _det] = a, b, c, det
    cen = (pa + pb + pc) / 3.0
    rad = np.sqrt(np.max(np.stack([((p - cen) ** 2).sum(1) for p in (pa, pb, pc)]), axis=0))
    rad = rad * (1 + 1e-9) + 1e-12  # guard the bound against rounding
    return TriangleIndex(table, rad, cKDTree(cen), float(rad.max(initial=0.0)))


def point_triangle_sqdist(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Exact squared distance between ``points[k]`` and triangle ``tri[k]`` (rows of the table)."""
    d_ = tri[:, _A] - points
    d = np.einsum("ij,ij->i", tri[:, _E0], d_)
    e = np.einsum("ij,ij->i", tri[:, _E1], d_)
    f = np.einsum("ij,ij->i", d_, d_)
    a, b, c, det = tri[:, _a], tri[:, _b], tri[:, _c], tri[:, _det]
    # closest point on each edge (clamped projection), all from d, e, f, a, b, c
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip(np.where(a > 0, -d / a, 0.0), 0.0, 1.0)
        best = f + u * (2 * d + u * a)
        u = np.clip(np.where(c > 0, -e / c, 0.0), 0.0, 1.0)
        np.minimum(best, f + u * (2 * e + u * c), out=best)
        h = e - d + b - a
        w = a - 2 * b + c
        u = np.clip(np.where(w > 0, -h / w, 0.0), 0.0, 1.0)
        np.minimum(best, (f + 2 * d + a) + u * (2 * h + u * w), out=best)
        # interior: barycentric s, t (scaled by det) inside the triangle -> plane distance
        s = b * e - c * d
        t = b * d - a * e
        inside = (s >= 0) & (t >= 0) & (s + t <= det) & (det > 0)
        nd = np.einsum("ij,ij->i", tri[:, _N], d_)
        plane = np.where(inside, nd * nd / np.where(det > 0, det, 1.0), np.inf)
    np.minimum(best, plane, out=best)
    return np.maximum(best, 0.0, out=best)


def _pairs_sqdist(index: TriangleIndex, points: np.ndarray, tri_idx: np.ndarray) -> np.ndarray:
    """Squared distances for many (point, triangle) pairs, processed in cache-sized chunks."""
    out = np.empty(len(tri_idx), dtype=np.float64)
    for s in range(0, len(tri_idx), _CHUNK):
        sl = slice(s, s + _CHUNK)
        out[sl] = point_triangle_sqdist(points[sl], index.table[tri_idx[sl]])
    return out


def mesh_distance(
    index: TriangleIndex,
    queries: np.ndarray,
    max_dist: float = np.inf,
    k: int = 8,
    workers: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance from each query point to the mesh, and the closest triangle.

    Distances below ``max_dist`` are exact; points farther than ``max_dist`` get
    ``inf`` (and triangle ``-1``) unless a triangle was met on the way.
    """
    q = np.ascontiguousarray(queries, dtype=np.float64)
    nq = len(q)
    best = np.full(nq, np.inf)
    arg = np.full(nq, -1, dtype=np.int64)
    m = index.n_triangles
    if nq == 0 or m == 0:
        return best, arg
    todo = np.arange(nq)
    done_k = 0
    k = max(1, min(k, m))
    reach = max_dist + index.r_max if np.isfinite(max_dist) else np.inf
    while len(todo):
        dist, idx = index.tree.query(q[todo], k=k, workers=workers, distance_upper_bound=reach)
        dist = dist.reshape(len(todo), k)
        idx = idx.reshape(len(todo), k)
        # new candidates only (columns done_k..k), pruned by the sphere bound
        cd, ci = dist[:, done_k:], idx[:, done_k:]
        rows = np.broadcast_to(np.arange(len(todo))[:, None], cd.shape)
        valid = np.isfinite(cd)
        lb = np.where(valid, cd - index.radius[np.minimum(ci, m - 1)], np.inf)
        cur = best[todo]
        if done_k:
            valid &= lb < np.minimum(cur, max_dist)[:, None]
        r_sel, t_sel = rows[valid], ci[valid]
        if len(t_sel):
            d2 = _pairs_sqdist(index, q[todo][r_sel], t_sel)
            dd = np.sqrt(d2)
            order = np.lexsort((dd, r_sel))
            r_o, d_o, t_o = r_sel[order], dd[order], t_sel[order]
            first = np.ones(len(r_o), dtype=bool)
            first[1:] = r_o[1:] != r_o[:-1]
            r_f, d_f, t_f = r_o[first], d_o[first], t_o[first]
            better = d_f < cur[r_f]
            cur[r_f[better]] = d_f[better]
            best[todo] = cur
            arg[todo[r_f[better]]] = t_f[better]
            cur = best[todo]
        # certified when the farthest centroid looked at already rules out the rest
        kth = dist[:, -1]
        certified = (kth - index.r_max >= np.minimum(cur, max_dist)) | (k >= m)
        todo = todo[~certified]
        done_k = k
        k = min(2 * k, m)
    return best, arg
