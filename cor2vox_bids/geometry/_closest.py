"""Exact point-to-triangle-mesh distances, vectorised with numpy (internal module).

A :class:`TriangleIndex` is a linear bounding-volume hierarchy: triangles sorted along a Morton
curve of their centroids, grouped in leaves of ``LEAF`` triangles, with an implicit complete
binary tree above the leaves; each node is bounded by a box and, on the lowest levels, by a
cylinder (slab along the node's mean normal x disc). :func:`mesh_distance` starts from the
triangles of the nearest centroids (an upper bound) and traverses the tree for all query points
at once (breadth first, one numpy step per level): a (query, node) pair survives while its lower
bound is below the query's upper bound, so the answer is the exact, certified distance to the
closest point on the mesh (not a nearest-vertex approximation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

LEAF = 4  # triangles per leaf
GUESSES = 2  # nearest centroids whose triangles give the first upper bound
CYLINDER_LEVELS = 6  # tree levels (from the leaves up) that carry cylinder bounds
_CHUNK = 1 << 15  # rows per vectorised block (keeps the temporaries in cache)

# columns of the packed per-triangle table
_A, _E0, _E1, _N = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
_a, _b, _c, _det = 12, 13, 14, 15


@dataclass(frozen=True)
class TriangleIndex:
    """Per-triangle constants (Morton order) and the box tree above them."""

    table: np.ndarray  # (m_padded, 16): A, E0=B-A, E1=C-A, N=E0xE1, a, b, c, |N|^2
    nodes: np.ndarray  # (14, n_nodes) float32 bounds, implicit heap layout (children 2i+1, 2i+2):
    # box lo (3), box hi (3), cylinder centre (3), unit axis (3), slab half-width, radius
    depth: int  # number of levels below the root; leaves are the last level
    n_triangles: int
    tree: cKDTree | None  # centroids of the table's first n_triangles rows (first guesses)
    discs: np.ndarray  # (7, m_padded) float32: centroid (3), unit normal (3), radius of each triangle


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
            return TriangleIndex(np.zeros((0, 16)), np.zeros((14, 1), dtype=np.float32), 0, 0, None, np.zeros((7, 0), np.float32))
    pa, pb, pc = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    order = _morton_order((pa + pb + pc) / 3.0)
    n_leaves = -(-m // LEAF)
    depth = max(0, int(np.ceil(np.log2(n_leaves))))
    n_pad = (1 << depth) * LEAF
    # pad with copies of the last triangle: duplicates never change a minimum
    order = np.concatenate([order, np.full(n_pad - m, order[-1])])
    pa, pb, pc = pa[order], pb[order], pc[order]
    table = _triangle_table(pa, pb, pc)
    # boxes bottom-up; cylinders (slab x disc around the mean normal) on the lowest levels only,
    # where they prune (higher up the surface is too folded for a slab to help)
    lo = [np.minimum(np.minimum(pa, pb), pc).reshape(-1, LEAF, 3).min(axis=1)]
    hi = [np.maximum(np.maximum(pa, pb), pc).reshape(-1, LEAF, 3).max(axis=1)]
    while len(lo[-1]) > 1:
        lo.append(lo[-1].reshape(-1, 2, 3).min(axis=1))
        hi.append(hi[-1].reshape(-1, 2, 3).max(axis=1))
    lo, hi = lo[::-1], hi[::-1]  # index = level
    corners = np.stack([pa, pb, pc], axis=1)  # (n_pad, 3, 3)
    normals = table[:, _N]
    levels = []
    for level in range(depth + 1):
        n_nodes = 1 << level
        node = np.empty((14, n_nodes), dtype=np.float64)
        node[0:3], node[3:6] = lo[level].T, hi[level].T
        if level < depth + 1 - CYLINDER_LEVELS:
            node[6:9], node[9:12] = 0.0, 0.0
            node[12:14] = np.inf  # no cylinder: the bound is the box's
        else:
            pts = corners.reshape(n_nodes, -1, 3)
            centre = 0.5 * (lo[level] + hi[level])
            axis = normals.reshape(n_nodes, -1, 3).sum(axis=1)
            norm = np.linalg.norm(axis, axis=1, keepdims=True)
            axis = np.where(norm > 0, axis / np.where(norm > 0, norm, 1.0), [[0.0, 0.0, 1.0]])
            rel = pts - centre[:, None, :]
            h = np.einsum("kpi,ki->kp", rel, axis)
            mid = 0.5 * (h.min(axis=1) + h.max(axis=1))
            radial = np.sqrt(np.maximum(np.einsum("kpi,kpi->kp", rel, rel) - h * h, 0.0)).max(axis=1)
            node[6:9] = (centre + mid[:, None] * axis).T  # centre moved to the middle of the slab
            node[9:12] = axis.T
            node[12] = 0.5 * (h.max(axis=1) - h.min(axis=1)) * (1 + 1e-6) + 1e-6
            node[13] = radial * (1 + 1e-6) + 1e-6
        levels.append(node)
    nodes = np.concatenate(levels, axis=1).astype(np.float32)
    cen = (pa + pb + pc) / 3.0
    unit_n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
    rad = np.sqrt(np.max([((p - cen) ** 2).sum(axis=1) for p in (pa, pb, pc)], axis=0))
    discs = np.concatenate([cen.T, unit_n.T, (rad * (1 + 1e-6) + 1e-6)[None]]).astype(np.float32)
    tree = cKDTree((pa[:m] + pb[:m] + pc[:m]) / 3.0)
    return TriangleIndex(table, nodes, depth, m, tree, discs)


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


def _node_sqdist(
    qx: np.ndarray, qy: np.ndarray, qz: np.ndarray, nodes: np.ndarray, node: np.ndarray, cylinder: bool
) -> np.ndarray:
    """Lower bound (float32) of the squared distance from points to the triangles under ``node``:
    the larger of the distances to the node's box and (with ``cylinder``) to its slab x disc."""
    p = (qx, qy, qz)
    box = np.zeros(len(node), dtype=np.float32)
    for k in range(3):
        g = nodes[k].take(node) - p[k]
        np.maximum(g, p[k] - nodes[3 + k].take(node), out=g)
        np.maximum(g, 0.0, out=g)
        box += g * g
    if not cylinder:
        return box
    rx, ry, rz = (p[k] - nodes[6 + k].take(node) for k in range(3))
    h = rx * nodes[9].take(node) + ry * nodes[10].take(node) + rz * nodes[11].take(node)
    rho2 = rx * rx + ry * ry + rz * rz - h * h
    np.maximum(rho2, 0.0, out=rho2)
    dr = np.sqrt(rho2) - nodes[13].take(node)
    np.maximum(dr, 0.0, out=dr)
    dh = np.abs(h) - nodes[12].take(node)
    np.maximum(dh, 0.0, out=dh)
    cyl = dh * dh + dr * dr
    return np.maximum(box, cyl, out=cyl)


def _distance_block(index: TriangleIndex, q: np.ndarray, start_sq: np.ndarray) -> np.ndarray:
    """Squared mesh distance of a block of query points, given upper bounds ``start_sq``."""
    best = start_sq.copy()
    # float32 bounds may round up by a few ulps: compare with a margin so nothing is lost
    limit = (best * (1 + 1e-4) + 1e-6).astype(np.float32)
    q32 = np.ascontiguousarray(q.T, dtype=np.float32)
    qi = np.arange(len(q))
    node = np.zeros(len(q), dtype=np.int64)
    first_leaf = (1 << index.depth) - 1
    for level in range(index.depth + 1):
        cyl = level >= index.depth + 1 - CYLINDER_LEVELS
        lb = _node_sqdist(q32[0].take(qi), q32[1].take(qi), q32[2].take(qi), index.nodes, node, cyl)
        keep = lb < limit.take(qi)
        qi, node = qi[keep], node[keep]
        if level < index.depth:
            qi = np.repeat(qi, 2)
            node = np.repeat(2 * node + 1, 2)
            node[1::2] += 1
    # leaves: each triangle's own slab x disc bound first, then the exact distance
    tri = (((node - first_leaf) * LEAF)[:, None] + np.arange(LEAF)).ravel()
    qi = np.repeat(qi, LEAF)
    dc = index.discs
    rx, ry, rz = (q32[k].take(qi) - dc[k].take(tri) for k in range(3))
    h = rx * dc[3].take(tri) + ry * dc[4].take(tri) + rz * dc[5].take(tri)
    rho2 = np.maximum(rx * rx + ry * ry + rz * rz - h * h, 0.0)
    dr = np.maximum(np.sqrt(rho2) - dc[6].take(tri), 0.0)
    keep = h * h + dr * dr < limit.take(qi)
    qi, tri = qi[keep], tri[keep]
    for s in range(0, len(tri), _CHUNK):
        sl = slice(s, s + _CHUNK)
        d2 = point_triangle_sqdist(q[qi[sl]], index.table[tri[sl]])
        np.minimum.at(best, qi[sl], d2)
    return best


def mesh_distance(
    index: TriangleIndex, queries: np.ndarray, max_dist: float = np.inf, workers: int = 1
) -> np.ndarray:
    """Exact Euclidean distance from each query point to the mesh.

    Distances below ``max_dist`` are exact; larger ones are reported as ``max_dist``
    (so a finite ``max_dist`` prunes the search).
    """
    q = np.ascontiguousarray(queries, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(q), float(max_dist))
    if index.n_triangles == 0 or len(q) == 0:
        return out
    max_sq = float(max_dist) ** 2 if np.isfinite(max_dist) else np.inf
    k = min(GUESSES, index.n_triangles)
    order = _morton_order(q)  # neighbouring queries visit the same nodes: cache friendly
    qs = q[order]
    res = np.empty(len(q))
    for s in range(0, len(q), _CHUNK):
        block = qs[s : s + _CHUNK]
        # upper bound from the triangles of the k nearest centroids, then the certified search
        _, near = index.tree.query(block, k=k, workers=workers)
        near = near.reshape(len(block), k)
        start = np.full(len(block), max_sq)
        for j in range(k):
            np.fmin(start, point_triangle_sqdist(block, index.table[near[:, j]]), out=start)
        res[s : s + _CHUNK] = _distance_block(index, block, start)
    out[order] = np.sqrt(np.minimum(res, max_sq))
    return out
