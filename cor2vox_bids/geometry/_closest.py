"""Exact point-to-triangle-mesh distances, vectorised with numpy (internal module).

A :class:`TriangleIndex` is a linear bounding-volume hierarchy: triangles sorted along a Morton
curve of their centroids, grouped in leaves of ``LEAF`` triangles, with an implicit complete
binary tree of axis-aligned boxes above the leaves. :func:`mesh_distance` traverses that tree
for all query points at once (breadth first, one numpy step per level): a (query, node) pair
survives while the box's distance to the query is below the query's current best, so the
answer is exact (a certified global minimum), not a nearest-vertex approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEAF = 4  # triangles per leaf
_CHUNK = 1 << 15  # rows per vectorised block (keeps the temporaries in cache)

# columns of the packed per-triangle table
_A, _E0, _E1, _N = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
_a, _b, _c, _det = 12, 13, 14, 15


@dataclass(frozen=True)
class TriangleIndex:
    """Per-triangle constants (Morton order) and the box tree above them."""

    table: np.ndarray  # (m_padded, 16): A, E0=B-A, E1=C-A, N=E0xE1, a, b, c, |N|^2
    lo: np.ndarray  # (n_nodes, 3) box minima, implicit heap layout (children 2i+1, 2i+2)
    hi: np.ndarray  # (n_nodes, 3) box maxima
    depth: int  # number of levels below the root; leaves are the last level
    n_triangles: int


def _morton_order(points: np.ndarray) -> np.ndarray:
    """Indices sorting ``points`` along a 3D Morton (Z-order) curve, 10 bits per axis."""
    lo = points.min(axis=0)
    ext = np.maximum(points.max(axis=0) - lo, 1e-12)
    cell = np.minimum((points - lo) / ext * 1023.0, 1023.0).astype(np.uint64)
    code = np.zeros(len(points), dtype=np.uint64)
    for bit in range(10):
        for ax in range(3):
            code |= ((cell[:, ax] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + ax)
    return np.argsort(code, kind="stable")


def _triangle_table(pa: np.ndarray, pb: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """Pack the constants of the point-triangle distance for each triangle."""
    e0, e1 = pb - pa, pc - pa
    n = np.cross(e0, e1)
    table = np.empty((len(pa), 16), dtype=np.float64)
    table[:, _A], table[:, _E0], table[:, _E1], table[:, _N] = pa, e0, e1, n
    table[:, _a] = np.einsum("ij,ij->i", e0, e0)
    table[:, _b] = np.einsum("ij,ij->i", e0, e1)
    table[:, _c] = np.einsum("ij,ij->i", e1, e1)
    table[:, _det] = np.einsum("ij,ij->i", n, n)
    return table


def build_index(vertices: np.ndarray, faces: np.ndarray) -> TriangleIndex:
    """Build the box tree of a triangle mesh (vertices float (n, 3), faces int (m, 3))."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    m = len(f)
    if m == 0:
        empty = np.zeros((1, 3))
        return TriangleIndex(np.zeros((0, 16)), empty + np.inf, empty - np.inf, 0, 0)
    pa, pb, pc = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    order = _morton_order((pa + pb + pc) / 3.0)
    n_leaves = -(-m // LEAF)
    depth = max(0, int(np.ceil(np.log2(n_leaves))))
    n_pad = (1 << depth) * LEAF
    # pad with copies of the last triangle: duplicates never change a minimum
    order = np.concatenate([order, np.full(n_pad - m, order[-1])])
    pa, pb, pc = pa[order], pb[order], pc[order]
    table = _triangle_table(pa, pb, pc)
    tri_lo = np.minimum(np.minimum(pa, pb), pc).reshape(-1, LEAF, 3).min(axis=1)
    tri_hi = np.maximum(np.maximum(pa, pb), pc).reshape(-1, LEAF, 3).max(axis=1)
    levels_lo, levels_hi = [tri_lo], [tri_hi]
    while len(levels_lo[-1]) > 1:
        levels_lo.append(levels_lo[-1].reshape(-1, 2, 3).min(axis=1))
        levels_hi.append(levels_hi[-1].reshape(-1, 2, 3).max(axis=1))
    lo = np.concatenate(levels_lo[::-1])
    hi = np.concatenate(levels_hi[::-1])
    return TriangleIndex(table, lo, hi, depth, m)


def point_triangle_sqdist(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Exact squared distance between ``points[k]`` and triangle ``tri[k]`` (rows of the table)."""
    d_ = tri[:, _A] - points
    dx, dy, dz = d_[:, 0], d_[:, 1], d_[:, 2]
    d = tri[:, 3] * dx + tri[:, 4] * dy + tri[:, 5] * dz
    e = tri[:, 6] * dx + tri[:, 7] * dy + tri[:, 8] * dz
    f = dx * dx + dy * dy + dz * dz
    a, b, c, det = tri[:, _a], tri[:, _b], tri[:, _c], tri[:, _det]
    # closest point on each edge (clamped projection), all from d, e, f, a, b, c
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip(-d / a, 0.0, 1.0)
        best = f + u * (2 * d + u * a)
        u = np.clip(-e / c, 0.0, 1.0)
        np.fmin(best, f + u * (2 * e + u * c), out=best)
        h = e - d + b - a
        w = a - 2 * b + c
        u = np.clip(-h / w, 0.0, 1.0)
        np.fmin(best, (f + 2 * d + a) + u * (2 * h + u * w), out=best)
        # interior: barycentric s, t (scaled by det) inside the triangle -> plane distance
        s = b * e - c * d
        t = b * d - a * e
        inside = (s >= 0) & (t >= 0) & (s + t <= det) & (det > 0)
        nd = tri[:, 9] * dx + tri[:, 10] * dy + tri[:, 11] * dz
        plane = nd * nd / det
    np.copyto(best, np.fmin(best, plane), where=inside)
    # a zero-length edge gives NaN above: fall back to the vertex distance
    np.copyto(best, f, where=np.isnan(best))
    return np.maximum(best, 0.0, out=best)


def _box_sqdist(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Squared distance from each point to its axis-aligned box."""
    g = np.maximum(np.maximum(lo - points, points - hi), 0.0)
    return np.einsum("ij,ij->i", g, g)


def _descend(index: TriangleIndex, q: np.ndarray) -> np.ndarray:
    """Greedy root-to-leaf descent (nearer box first): an upper bound on the squared distance."""
    node = np.zeros(len(q), dtype=np.int64)
    for _ in range(index.depth):
        left = 2 * node + 1
        dl = _box_sqdist(q, index.lo[left], index.hi[left])
        dr = _box_sqdist(q, index.lo[left + 1], index.hi[left + 1])
        node = np.where(dl <= dr, left, left + 1)
    leaf = node - ((1 << index.depth) - 1)
    best = np.full(len(q), np.inf)
    for j in range(LEAF):
        np.fmin(best, point_triangle_sqdist(q, index.table[leaf * LEAF + j]), out=best)
    return best


def _distance_block(index: TriangleIndex, q: np.ndarray, max_sq: float) -> np.ndarray:
    """Squared mesh distance of a block of query points (exact where below ``max_sq``)."""
    best = np.minimum(_descend(index, q), max_sq)
    qi = np.arange(len(q))
    node = np.zeros(len(q), dtype=np.int64)
    first_leaf = (1 << index.depth) - 1
    for level in range(index.depth + 1):
        keep = _box_sqdist(q[qi], index.lo[node], index.hi[node]) < best[qi]
        qi, node = qi[keep], node[keep]
        if level < index.depth:
            qi = np.repeat(qi, 2)
            node = (2 * node[:, None] + np.array([1, 2])).ravel()
    # leaves: exact distance to each of their triangles
    tri = ((node - first_leaf) * LEAF)[:, None] + np.arange(LEAF)
    qi = np.repeat(qi, LEAF)
    tri = tri.ravel()
    for s in range(0, len(tri), _CHUNK):
        sl = slice(s, s + _CHUNK)
        d2 = point_triangle_sqdist(q[qi[sl]], index.table[tri[sl]])
        np.minimum.at(best, qi[sl], d2)
    return best


def mesh_distance(index: TriangleIndex, queries: np.ndarray, max_dist: float = np.inf) -> np.ndarray:
    """Exact Euclidean distance from each query point to the mesh.

    Distances below ``max_dist`` are exact; larger ones are reported as ``max_dist``
    (so a finite ``max_dist`` prunes the search).
    """
    q = np.ascontiguousarray(queries, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(q), float(max_dist))
    if index.n_triangles == 0 or len(q) == 0:
        return out
    max_sq = float(max_dist) ** 2 if np.isfinite(max_dist) else np.inf
    for s in range(0, len(q), _CHUNK):
        out[s : s + _CHUNK] = np.sqrt(_distance_block(index, q[s : s + _CHUNK], max_sq))
    return out
