"""Triangle-mesh intersection tests: self-intersections of one mesh and crossings between two meshes.

Two triangles are tested only when their bounding boxes and bounding spheres (centroid, farthest vertex) overlap;
candidate pairs come from a uniform grid of cells listing the triangles whose box overlaps each (the closest-point
index's ``build_cells``), gathered by a compiled kernel that reports each pair once. A pair is rejected at once when
the three vertices of one triangle lie strictly on one side of the other's plane; otherwise two non-coplanar
triangles intersect exactly when an edge of one crosses the other, decided by six segment–triangle tests
(Möller–Trumbore, vectorised). Coplanar pairs count as not intersecting, and triangles that share a vertex are not
tested against each other (in a mesh they always touch there); counting flipped faces (:func:`flipped_faces`) covers
what that leaves out.

:class:`NewIntersections` answers "which intersections did moving these vertices create?" repeatedly for one mesh:
candidate pairs are found once on the baseline with a margin for the largest move, so each check only tests them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from ._kernels import build_cells

__all__ = ["NewIntersections", "flipped_faces", "mesh_crossings", "self_intersections", "triangles_intersect"]

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


def _one_side(tri: NDArray, other: NDArray) -> NDArray[np.bool_]:
    """All three vertices of ``other`` strictly on one side of ``tri``'s plane (then they cannot intersect)."""
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    d = np.einsum("kij,kj->ki", other - tri[:, None, 0], n)
    return np.all(d > 0, axis=1) | np.all(d < 0, axis=1)


def triangles_intersect(t1: NDArray, t2: NDArray, eps: float = 1e-12) -> NDArray[np.bool_]:
    """For triangle pairs ``t1[i]``, ``t2[i]`` (each (k, 3, 3)): True where they intersect (non-coplanar)."""
    t1 = np.asarray(t1, dtype=np.float64)
    t2 = np.asarray(t2, dtype=np.float64)
    hit = np.zeros(len(t1), dtype=bool)
    maybe = np.flatnonzero(~(_one_side(t1, t2) | _one_side(t2, t1)))
    if maybe.size == 0:
        return hit
    a1, a2 = t1[maybe], t2[maybe]
    found = np.zeros(len(maybe), dtype=bool)
    for tri, other in ((a1, a2), (a2, a1)):
        a, b, c = other[:, 0], other[:, 1], other[:, 2]
        for i, j in ((0, 1), (1, 2), (2, 0)):
            found |= _segments_cross(tri[:, i], tri[:, j], a, b, c, eps)
    hit[maybe] = found
    return hit


def _test_pairs(v1: NDArray, f1: NDArray, v2: NDArray, f2: NDArray, pairs: NDArray) -> NDArray:
    """Subset of candidate ``pairs`` (k, 2) (face of mesh 1, face of mesh 2) that intersect."""
    out = [np.zeros((0, 2), dtype=np.int64)]
    for start in range(0, len(pairs), _CHUNK):
        pr = pairs[start:start + _CHUNK]
        hit = triangles_intersect(v1[f1[pr[:, 0]]], v2[f2[pr[:, 1]]])
        out.append(pr[hit])
    return np.concatenate(out)


@njit(cache=True, parallel=True)
def _grid_pairs(qlo, qhi, qc, qr, tlo, thi, tc, tr, origin, cell, dims, start, items, margin, qid, tq, offsets,
                out):
    """Pairs (query, target) with overlapping boxes and spheres (grown by ``margin``), each found once: in the
    cell holding the low corner of the two boxes' overlap. Within one mesh (``qid[q]`` = the query's face number,
    ``tq[t]`` = target t is also a query) a pair of two queries is kept from the lower face only, and a face is not
    paired with itself. Counts into ``offsets[q]`` when ``out`` is empty, else writes from ``offsets[q]`` on."""
    count_only = out.shape[0] == 0
    ny, nz = dims[1], dims[2]
    for q in prange(qlo.shape[0]):
        lo = np.empty(3, dtype=np.int64)
        hi = np.empty(3, dtype=np.int64)
        for ax in range(3):
            lo[ax] = min(max(int(math.floor((qlo[q, ax] - margin - origin[ax]) / cell)), 0), dims[ax] - 1)
            hi[ax] = min(max(int(math.floor((qhi[q, ax] + margin - origin[ax]) / cell)), 0), dims[ax] - 1)
        n = 0
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for k in range(lo[2], hi[2] + 1):
                    c = (i * ny + j) * nz + k
                    for s in range(start[c], start[c + 1]):
                        t = items[s]
                        if t == qid[q] or (tq[t] and t < qid[q]):
                            continue
                        ok = True
                        home = (i, j, k)
                        for ax in range(3):
                            a = max(qlo[q, ax] - margin, tlo[t, ax])
                            b = min(qhi[q, ax] + margin, thi[t, ax])
                            if a > b:
                                ok = False
                                break
                            cell_ax = min(max(int(math.floor((a - origin[ax]) / cell)), 0), dims[ax] - 1)
                            if cell_ax != home[ax]:
                                ok = False
                                break
                        if not ok:
                            continue
                        d2 = 0.0
                        for ax in range(3):
                            g = qc[q, ax] - tc[t, ax]
                            d2 += g * g
                        reach = qr[q] + tr[t] + 2.0 * margin
                        if d2 > reach * reach:
                            continue
                        if not count_only:
                            out[offsets[q] + n, 0] = q
                            out[offsets[q] + n, 1] = t
                        n += 1
        if count_only:
            offsets[q] = n


#: the most grid cells of a candidate search
_MAX_CELLS = 4_000_000


def _candidates(qv: NDArray, qf: NDArray, tv: NDArray, tf: NDArray, margin: float = 0.0,
                query: NDArray | None = None) -> NDArray:
    """Pairs (query face, target face) whose bounding boxes and bounding spheres, grown by ``margin``, overlap.

    ``query``: within one mesh (``qf = tf[query]``), the queries' face numbers: each unordered pair once, no face
    with itself."""
    if len(qf) == 0 or len(tf) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    qt, tt = qv[qf], tv[tf]
    qc, qr = _spheres(qv, qf)
    tc, tr = _spheres(tv, tf)
    qlo, qhi, tlo, thi = qt.min(axis=1), qt.max(axis=1), tt.min(axis=1), tt.max(axis=1)
    origin = np.minimum(qlo.min(axis=0) - margin, tlo.min(axis=0))
    extent = np.maximum(np.maximum(qhi.max(axis=0) + margin, thi.max(axis=0)) - origin, 1e-9)
    cell = max(2.0 * float(np.median(thi - tlo)), float(extent.max()) * 1e-6, 1e-9)
    while np.prod(np.floor(extent / cell) + 1) > _MAX_CELLS:
        cell *= 1.25
    dims = (np.floor(extent / cell) + 1).astype(np.int64)
    cells_start, cells_items = build_cells(np.ascontiguousarray(tv, dtype=np.float64),
                                           np.ascontiguousarray(tf, dtype=np.int64), origin, float(cell), dims)
    qid = np.full(len(qf), -1, dtype=np.int64) if query is None else np.asarray(query, dtype=np.int64)
    tq = np.zeros(len(tf), dtype=np.bool_)
    if query is not None:
        tq[qid] = True
    args = (qlo, qhi, qc, qr, tlo, thi, tc, tr, origin, float(cell), dims, cells_start, cells_items, float(margin),
            qid, tq)
    counts = np.zeros(len(qf), dtype=np.int64)
    _grid_pairs(*args, counts, np.zeros((0, 2), dtype=np.int64))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = np.empty((int(counts.sum()), 2), dtype=np.int64)
    _grid_pairs(*args, offsets, out)
    return out


def _self_candidates(vertices: NDArray, faces: NDArray, query: NDArray, margin: float = 0.0) -> NDArray:
    """Unordered pairs of one mesh, at least one face in ``query``, not sharing a vertex, boxes and spheres
    overlapping."""
    pairs = _candidates(vertices, faces[query], vertices, faces, margin, query)
    pairs[:, 0] = query[pairs[:, 0]]
    pairs = np.sort(pairs, axis=1)
    fa, fb = faces[pairs[:, 0]], faces[pairs[:, 1]]
    share = (fa[:, :, None] == fb[:, None, :]).any(axis=(1, 2))
    return pairs[~share]


def _cross_candidates(v1: NDArray, f1: NDArray, v2: NDArray, f2: NDArray, query: NDArray,
                      margin: float = 0.0) -> NDArray:
    pairs = _candidates(v1, f1[query], v2, f2, margin)
    pairs[:, 0] = query[pairs[:, 0]]
    return pairs


def self_intersections(
    vertices: NDArray, faces: NDArray, only_faces: NDArray | None = None
) -> NDArray[np.int64]:
    """Pairs of faces (k, 2), ``i < j``, of one mesh that intersect without sharing a vertex.

    With ``only_faces`` (indices or a boolean mask) only pairs with at least one of those faces are tested —
    enough to compare a mesh before and after moving some vertices.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    query = np.arange(len(f)) if only_faces is None else _indices(only_faces, len(f))
    return _test_pairs(v, f, v, f, _self_candidates(v, f, query))


def mesh_crossings(
    vertices1: NDArray, faces1: NDArray, vertices2: NDArray, faces2: NDArray, only_faces: NDArray | None = None
) -> NDArray[np.int64]:
    """Pairs (k, 2) (face of mesh 1, face of mesh 2) that intersect; ``only_faces`` restricts mesh 1's faces."""
    v1 = np.asarray(vertices1, dtype=np.float64)
    f1 = np.asarray(faces1, dtype=np.int64)
    v2 = np.asarray(vertices2, dtype=np.float64)
    f2 = np.asarray(faces2, dtype=np.int64)
    query = np.arange(len(f1)) if only_faces is None else _indices(only_faces, len(f1))
    return _test_pairs(v1, f1, v2, f2, _cross_candidates(v1, f1, v2, f2, query))


class NewIntersections:
    """Intersections that moving some vertices of a mesh creates (self-intersections and crossings of a fixed
    second mesh), for repeated checks of moves of the vertices in ``movable``.

    The baseline's intersecting pairs among the faces that can move are found once; each :meth:`check` searches
    the candidates of the moved faces in their current positions and reports the intersecting pairs that the
    baseline did not have.
    """

    def __init__(self, vertices: NDArray, faces: NDArray, movable: NDArray[np.bool_],
                 other_vertices: NDArray | None = None, other_faces: NDArray | None = None) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.query = np.flatnonzero(np.asarray(movable, dtype=bool)[self.faces].any(axis=1))
        self.other = None
        if other_vertices is not None:
            self.other = (np.asarray(other_vertices, dtype=np.float64), np.asarray(other_faces, dtype=np.int64))
        self.base_self, self.base_cross = (self._keys(p) for p in self._pairs(self.vertices))

    def _pairs(self, vertices: NDArray, query: NDArray | None = None) -> tuple[NDArray, NDArray]:
        v, f = vertices, self.faces
        query = self.query if query is None else query
        own = _test_pairs(v, f, v, f, _self_candidates(v, f, query))
        if self.other is None:
            return own, np.zeros((0, 2), dtype=np.int64)
        return own, _test_pairs(v, f, *self.other, _cross_candidates(v, f, *self.other, query))

    @staticmethod
    def _keys(pairs: NDArray) -> NDArray[np.int64]:
        return pairs[:, 0].astype(np.int64) * (1 << 32) + pairs[:, 1]

    @property
    def baseline_counts(self) -> tuple[int, int]:
        """(self-intersections, crossings) of the baseline involving a movable face."""
        return len(self.base_self), len(self.base_cross)

    def check(self, moved_vertices: NDArray, changed: NDArray[np.bool_] | None = None) -> tuple[NDArray, NDArray]:
        """New self-intersecting face pairs (k, 2) and new crossing pairs (face, other face).

        ``changed`` (per vertex): only pairs with a face touching a changed vertex are searched — for a repeated
        check after a previous one found no new intersection elsewhere (pairs away from changed vertices keep
        their state)."""
        query = None
        if changed is not None:
            touch = np.asarray(changed, dtype=bool)[self.faces].any(axis=1)
            query = self.query[touch[self.query]]
        own, cross = self._pairs(np.asarray(moved_vertices, dtype=np.float64), query)
        return (own[~np.isin(self._keys(own), self.base_self)],
                cross[~np.isin(self._keys(cross), self.base_cross)])


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
