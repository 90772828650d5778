"""Exact point-to-triangle-mesh distances (internal module).

A :class:`TriangleIndex` is a uniform grid of cubic cells over the mesh's bounding box; each cell lists
the triangles whose bounding box overlaps it. :func:`mesh_distance` searches the cells in rings around
each query with certified lower bounds (compiled kernel :func:`._kernels.query_sqdist`), so the answer
is the exact distance to the closest point of the mesh, not a nearest-vertex approximation.

:func:`point_triangle_sqdist` is a separate, vectorised numpy implementation of the point-triangle
distance (minimum over the three edges and, when the projection falls inside, the plane); the tests use
it as an independent brute-force reference for the compiled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import (
    TABLE_COLUMNS,
    build_cells,
    gather_spheres,
    mean_edge_length,
    query_sqdist,
    triangle_table,
    z_order,
)

CELL_EDGES = 4.0  # cell size in mean edge lengths (benchmarks/bench_thickness.py --cells tunes it)
MAX_CELLS = 1 << 24  # the cell size grows until the grid has at most this many cells

# columns of the packed per-triangle table of point_triangle_sqdist
_A, _E0, _E1, _N = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)
_a, _b, _c, _det = 12, 13, 14, 15


@dataclass(frozen=True)
class TriangleIndex:
    """A mesh and its uniform cell grid (cells in C order, CSR triangle lists)."""

    table: np.ndarray  # (m, 17) float64 per triangle: corners, bounding sphere, unit normal, slab (triangle_table)
    origin: np.ndarray  # (3,) world position of the grid's lower corner
    cell: float  # cell edge (mm)
    dims: np.ndarray  # (3,) int64 cells per axis
    start: np.ndarray  # (n_cells + 1,) int64
    items: np.ndarray  # int32 triangle ids
    spheres: np.ndarray  # (len(items), 8) table columns 9:17 (sphere, normal, slab) of each entry's triangle

    @property
    def n_triangles(self) -> int:
        return len(self.table)


def build_index(vertices: np.ndarray, faces: np.ndarray, cell_edges: float = CELL_EDGES) -> TriangleIndex:
    """Grid index of a triangle mesh (vertices float (n, 3), faces int (m, 3)).

    The cell edge is ``cell_edges`` mean triangle edge lengths (grown if the grid would exceed
    ``MAX_CELLS`` cells).
    """
    v = np.ascontiguousarray(vertices, dtype=np.float64).reshape(-1, 3)
    f = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        return TriangleIndex(np.zeros((0, TABLE_COLUMNS)), np.zeros(3), 1.0, np.ones(3, dtype=np.int64),
                             np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros((0, 8)))
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = np.maximum(hi - lo, 1e-9)
    edge = float(mean_edge_length(v, f))
    cell = max(cell_edges * edge, float(extent.max()) * 1e-6, 1e-9)
    while np.prod(np.floor(extent / cell) + 1) > MAX_CELLS:
        cell *= 1.25
    dims = (np.floor(extent / cell) + 1).astype(np.int64)
    start, items = build_cells(v, f, lo.astype(np.float64), float(cell), dims)
    table = triangle_table(v, f)
    spheres = gather_spheres(table, items)
    return TriangleIndex(table, lo.astype(np.float64), float(cell), dims, start, items, spheres)


def mesh_distance(index: TriangleIndex, queries: np.ndarray, max_dist: float = np.inf,
                  on_mesh: np.ndarray | None = None) -> np.ndarray:
    """Exact Euclidean distance (float64) from each query point to the mesh.

    Distances below ``max_dist`` are exact; larger ones are reported as ``max_dist`` (a finite
    ``max_dist`` prunes the search). ``on_mesh`` (optional, like ``queries``): a point of the mesh
    per query, e.g. the corresponding vertex; its distance is an upper bound that prunes the search
    (the result is exact either way).
    """
    q = np.ascontiguousarray(queries, dtype=np.float64).reshape(-1, 3)
    out = np.full(len(q), float(max_dist))
    if index.n_triangles == 0 or len(q) == 0:
        return out
    upper = np.full(len(q), float(max_dist) ** 2 if np.isfinite(max_dist) else np.inf)
    if on_mesh is not None:
        hint = np.asarray(on_mesh, dtype=np.float64).reshape(-1, 3) - q
        np.minimum(upper, np.einsum("ij,ij->i", hint, hint) * (1.0 + 1e-12), out=upper)
    # visit the queries along a Z-order curve (quarter cells): neighbours share candidate triangles (cache) and
    # the previous query's closest triangle is a tight first bound (the kernel's warm start)
    order = np.argsort(z_order(q, index.origin, index.cell / 4.0), kind="stable")
    qs, us = np.ascontiguousarray(q[order]), np.ascontiguousarray(upper[order])
    query_sqdist(qs, us, index.table, index.origin, index.cell, index.dims, index.start, index.items, index.spheres,
                 us)
    out[order] = np.minimum(np.sqrt(us, out=us), float(max_dist))
    return out


def _triangle_table(pa: np.ndarray, pb: np.ndarray, pc: np.ndarray) -> np.ndarray:
    """Pack the constants of :func:`point_triangle_sqdist` for each triangle."""
    e0, e1 = pb - pa, pc - pa
    n = np.cross(e0, e1)
    table = np.empty((len(pa), 16), dtype=np.float64)
    table[:, _A], table[:, _E0], table[:, _E1], table[:, _N] = pa, e0, e1, n
    table[:, _a] = np.einsum("ij,ij->i", e0, e0)
    table[:, _b] = np.einsum("ij,ij->i", e0, e1)
    table[:, _c] = np.einsum("ij,ij->i", e1, e1)
    table[:, _det] = np.einsum("ij,ij->i", n, n)
    return table


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
        # (near-)collinear triangles have no interior: their closest point is on an edge
        inside = (s >= 0) & (t >= 0) & (s + t <= det) & (det > 1e-24 * a * c)
        nd = tri[:, 9] * dx + tri[:, 10] * dy + tri[:, 11] * dz
        plane = nd * nd / det
    np.copyto(best, np.fmin(best, plane), where=inside)
    # a zero-length edge gives NaN above: fall back to the vertex distance
    np.copyto(best, f, where=np.isnan(best))
    return np.maximum(best, 0.0, out=best)
