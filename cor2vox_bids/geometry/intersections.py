"""Triangle-mesh intersection tests: self-intersections of one mesh and crossings between two meshes.

Two triangles are tested only when their bounding spheres (centroid, farthest vertex) overlap; candidate pairs
come from a k-d tree on the centroids. Two non-coplanar triangles intersect exactly when an edge of one crosses
the other, so each candidate pair is decided by six segment–triangle tests (Möller–Trumbore, vectorised).
Coplanar pairs count as not intersecting, and triangles that share a vertex are not tested against each other
(in a mesh they always touch there). Counting flipped faces (:func:`flipped_faces`) covers what that leaves out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

__all__ = ["flipped_faces", "mesh_crossings", "self_intersections", "triangles_intersect"]

#: candidate pairs processed at once (bounds memory)
_CHUNK = 200_000


def _spheres(vertices: NDArray, faces: NDArray) -> tuple[NDArray, NDArray]:
    tri = vertices[faces]
    centre = tri.mean(axis=1)
    radius = np.sqrt(((tri - centre[:, None, :]) ** 2).sum(axis=2).max(axis=1))
    return centre, radius


def _segments_cross(p: NDArray, q: NDArray, a: NDArray, b: NDArray, c: NDArray, eps: float) -> NDArray:
    """Segment p→q crosses triangle abc (all (k, 3)); parallel segments never cross."""
    e1, e2 = b - a, c - a
    d = q - p
    h = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, h)
    ok = np.abs(det) > eps * np.linalg.norm(d, axis=1) * np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
    inv = np.divide(1.0, det, out=np.zeros_like(det), where=ok)
    s = p - a
    u = inv * np.einsum("ij,ij->i", s, h)
    qv = np.cross(s, e1)
    v = inv * np.einsum("ij,ij->i", d, qv)
    t = inv * np.einsum("ij,ij->i", e2, qv)
    return ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t >= 0) & (t <= 1)


def triangles_intersect(t1: NDArray, t2: NDArray, eps: float = 1e-12) -> NDArray[np.bool_]:
    """For triangle pairs ``t1[i]``, ``t2[i]`` (each (k, 3, 3)): True where they intersect (non-coplanar)."""
    t1 = np.asarray(t1, dtype=np.float64)
    t2 = np.asarray(t2, dtype=np.float64)
    hit = np.zeros(len(t1), dtype=bool)
    for tri, other in ((t1, t2), (t2, t1)):
        a, b, c = other[:, 0], other[:, 1], other[:, 2]
        for i, j in ((0, 1), (1, 2), (2, 0)):
            hit |= _segments_cross(tri[:, i], tri[:, j], a, b, c, eps)
    return hit


def _test_pairs(v1: NDArray, f1: NDArray, v2: NDArray, f2: NDArray, pairs: NDArray, shared_ok: bool) -> NDArray:
    """Subset of candidate ``pairs`` (k, 2) (face of mesh 1, face of mesh 2) that intersect."""
    out = []
    for start in range(0, len(pairs), _CHUNK):
        pr = pairs[start:start + _CHUNK]
        fa, fb = f1[pr[:, 0]], f2[pr[:, 1]]
        if not shared_ok:  # same mesh: skip triangles that share a vertex
            share = (fa[:, :, None] == fb[:, None, :]).any(axis=(1, 2))
            pr, fa, fb = pr[~share], fa[~share], fb[~share]
        hit = triangles_intersect(v1[fa], v2[fb])
        out.append(pr[hit])
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def _candidates(centre_q: NDArray, radius_q: NDArray, tree: cKDTree, radius_t: NDArray) -> NDArray:
    """Pairs (query index, tree index) whose bounding spheres overlap."""
    if len(centre_q) == 0 or len(radius_t) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    rmax = float(radius_t.max())
    neigh = tree.query_ball_point(centre_q, radius_q + rmax)
    counts = np.fromiter((len(n) for n in neigh), dtype=np.int64, count=len(neigh))
    qi = np.repeat(np.arange(len(centre_q)), counts)
    ti = np.fromiter((j for n in neigh for j in n), dtype=np.int64, count=int(counts.sum()))
    dist = np.linalg.norm(centre_q[qi] - tree.data[ti], axis=1)
    keep = dist <= radius_q[qi] + radius_t[ti]
    return np.stack([qi[keep], ti[keep]], axis=1)


def self_intersections(
    vertices: NDArray, faces: NDArray, only_faces: NDArray | None = None
) -> NDArray[np.int64]:
    """Pairs of faces (k, 2), ``i < j``, of one mesh that intersect without sharing a vertex.

    With ``only_faces`` (indices or a boolean mask) only pairs with at least one of those faces are tested —
    enough to compare a mesh before and after moving some vertices.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    centre, radius = _spheres(v, f)
    tree = cKDTree(centre)
    query = np.arange(len(f)) if only_faces is None else _indices(only_faces, len(f))
    pairs = _candidates(centre[query], radius[query], tree, radius)
    pairs[:, 0] = query[pairs[:, 0]]
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    return _test_pairs(v, f, v, f, pairs, shared_ok=False)


def mesh_crossings(
    vertices1: NDArray, faces1: NDArray, vertices2: NDArray, faces2: NDArray, only_faces: NDArray | None = None
) -> NDArray[np.int64]:
    """Pairs (k, 2) (face of mesh 1, face of mesh 2) that intersect; ``only_faces`` restricts mesh 1's faces."""
    v1 = np.asarray(vertices1, dtype=np.float64)
    f1 = np.asarray(faces1, dtype=np.int64)
    v2 = np.asarray(vertices2, dtype=np.float64)
    f2 = np.asarray(faces2, dtype=np.int64)
    c1, r1 = _spheres(v1, f1)
    c2, r2 = _spheres(v2, f2)
    query = np.arange(len(f1)) if only_faces is None else _indices(only_faces, len(f1))
    pairs = _candidates(c1[query], r1[query], cKDTree(c2), r2)
    pairs[:, 0] = query[pairs[:, 0]]
    return _test_pairs(v1, f1, v2, f2, pairs, shared_ok=True)


def flipped_faces(before: NDArray, after: NDArray, faces: NDArray) -> NDArray[np.bool_]:
    """Faces whose normal turned by more than 90° between two vertex sets of one mesh (folded over)."""
    f = np.asarray(faces, dtype=np.int64)

    def normals(v: NDArray) -> NDArray:
        v = np.asarray(v, dtype=np.float64)
        return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])

    return np.einsum("ij,ij->i", normals(before), normals(after)) < 0


def _indices(selection: NDArray, n: int) -> NDArray[np.int64]:
    sel = np.asarray(selection)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ValueError(f"face mask must have shape ({n},), got {sel.shape}")
        return np.flatnonzero(sel)
    return np.unique(sel.astype(np.int64))
