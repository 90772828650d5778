"""Exact distances to a triangle mesh for the voxels near it (internal module).

A scan conversion of characteristic regions, certified by first-order optimality conditions:

* if the closest mesh point ``x`` of a voxel centre ``p`` is inside face ``f``, ``p`` lies in the
  prism over ``f`` (``p - x`` is along the normal);
* if ``x`` is inside an edge, ``p - x`` is orthogonal to the edge and points away from both
  faces of the edge (into the wedge on the edge's convex side);
* if ``x`` is a vertex, ``p - x`` makes an obtuse angle with every edge leaving the vertex
  (a polyhedral cone, bounded for scanning by the cone of three well-spread edges).

Prisms, wedges and cones are small convex polytopes given to :func:`_scan`, which lists
the voxel centres inside it column by column. Candidates are scored with the exact
point-to-triangle distance and reduced with a minimum per voxel, so the result is the exact
distance of every voxel within ``band_mm`` of the mesh. Boundary and non-manifold edges (absent
from closed surfaces) get a cylinder of their own.
"""

from __future__ import annotations

import numpy as np

from ._closest import _triangle_table, point_triangle_sqdist
from ._linalg import transform, voxel_centres

_EPS = 1e-6  # mm: slack of every half-space (regions are supersets; slack only adds candidates)
_BLOCK = 1 << 18  # (region, column) pairs per vectorised block


def _unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    ok = n[..., 0] > 1e-12
    return np.where(ok[..., None], x / np.where(n > 1e-12, n, 1.0), 0.0), ok


def _edge_topology(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours across edges. Edge ``k`` of face ``i`` (directed edge ``3 i + k``) runs from
    corner ``k+1`` to ``k+2``.

    Returns ``partner`` (3m,): the directed edge of the other face on the same edge (-1 on
    boundary and non-manifold edges) and ``unique`` (E, 2): the undirected edges (low, high)."""
    a = faces[:, [1, 2, 0]].reshape(-1)
    b = faces[:, [2, 0, 1]].reshape(-1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * (int(faces.max(initial=0)) + 1) + hi
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    size = np.diff(np.r_[first, len(ks)])
    partner = np.full(len(key), -1, dtype=np.int64)
    two = first[size == 2]
    partner[order[two]] = order[two + 1]
    partner[order[two + 1]] = order[two]
    unique = np.stack([lo[order[first]], hi[order[first]]], axis=1)
    return partner, unique[unique[:, 0] != unique[:, 1]]


def _scan(
    planes: np.ndarray, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels inside convex regions ``{x : a.x <= b}`` (index space).

    ``planes`` (R, K, 4) rows ``(a, b)``, ``lo``/``hi`` (R, 3) index-space bounding boxes.
    Returns (region id, flat voxel index) pairs. Columns run along the axis of the largest
    bounding-box extent of each region.
    """
    shp = np.asarray(shape)
    i_lo = np.maximum(np.ceil(lo - 1e-9), 0).astype(np.int64)
    i_hi = np.minimum(np.floor(hi + 1e-9), shp - 1).astype(np.int64)
    ext = i_hi - i_lo + 1
    valid = np.all(ext > 0, axis=1)
    reg_out, vox_out = [], []
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    col_axis = np.argmax(np.where(valid[:, None], ext, 0), axis=1)
    soa = np.ascontiguousarray(planes.transpose(2, 1, 0))  # (4, K, R): one contiguous row per gather
    for axis in range(3):
        sel = np.flatnonzero(valid & (col_axis == axis))
        if len(sel) == 0:
            continue
        u, v = [a for a in range(3) if a != axis]
        coefs, us, vs, rhss = soa[axis], soa[u], soa[v], soa[3]
        ncol = ext[sel, u] * ext[sel, v]
        block_id = (np.cumsum(ncol) - 1) // _BLOCK
        for r in np.split(sel, np.flatnonzero(np.diff(block_id)) + 1):
            nc = ext[r, u] * ext[r, v]
            rr = np.repeat(r, nc)
            off = np.arange(int(nc.sum())) - np.repeat(np.cumsum(nc) - nc, nc)
            wv = ext[rr, v]
            cu = i_lo[rr, u] + off // wv
            cv = i_lo[rr, v] + off % wv
            zmin = i_lo[rr, axis].astype(np.float64)
            zmax = i_hi[rr, axis].astype(np.float64)
            cuf, cvf = cu.astype(np.float64), cv.astype(np.float64)
            for k in range(planes.shape[1]):
                coef = coefs[k].take(rr)
                rhs = rhss[k].take(rr) - us[k].take(rr) * cuf - vs[k].take(rr) * cvf
                with np.errstate(divide="ignore", invalid="ignore"):
                    bound = rhs / coef
                pos = coef > 1e-12
                np.minimum(zmax, bound, out=zmax, where=pos)
                neg = coef < -1e-12
                np.maximum(zmin, bound, out=zmin, where=neg)
                zmax[~pos & ~neg & (rhs < 0)] = -np.inf
            z0 = np.ceil(zmin - 1e-9)
            z1 = np.floor(zmax + 1e-9)
            nz = np.where(z1 >= z0, z1 - z0 + 1, 0).astype(np.int64)
            keep = nz > 0
            rr, cu, cv, z0, nz = rr[keep], cu[keep], cv[keep], z0[keep].astype(np.int64), nz[keep]
            zz = np.repeat(z0, nz) + (np.arange(int(nz.sum())) - np.repeat(np.cumsum(nz) - nz, nz))
            base = cu * strides[u] + cv * strides[v]
            reg_out.append(np.repeat(rr, nz))
            vox_out.append(np.repeat(base, nz) + zz * strides[axis])
    if not reg_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(reg_out), np.concatenate(vox_out)


def _to_index_planes(normals: np.ndarray, offsets: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World half-spaces ``n.p <= c`` -> index-space rows ``(a, b)`` with ``a.x <= b``."""
    lin, t = affine[:3, :3], affine[:3, 3]
    a = np.einsum("...j,jk->...k", normals, lin)  # (n.M) x
    b = offsets - np.einsum("...j,j->...", normals, t)
    return np.concatenate([a, b[..., None]], axis=-1)


def _world_box_to_index(lo: np.ndarray, hi: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index-space bounding box of world boxes (all 8 corners mapped)."""
    centre = transform(0.5 * (lo + hi), inv)
    half = np.einsum("...j,ij->...i", 0.5 * (hi - lo), np.abs(inv[:3, :3]))
    return centre - half, centre + half


MAX_DEGREE = 16  # vertex cones keep at most this many edge constraints (fewer = a superset)


def _vertex_regions(v: np.ndarray, ids: np.ndarray, edges: np.ndarray, B: float):
    """Half-spaces (n, D+1, 3), offsets (n, D+1) and world boxes of the cones of vertices
    ``ids`` capped at ``B``; ``edges`` (n, D, 3) their edge vectors, zero-padded."""
    nv = len(ids)
    D = edges.shape[1]
    v = v[ids]
    unit, _ = _unit(edges)
    # three edges spread around the vertex (about 120 degrees apart in its tangent plane): their
    # cone is narrow when the vertex is convex
    valid = np.einsum("nki,nki->nk", unit, unit) > 0.5
    normal, _ = _unit(-unit.sum(axis=1))
    x_ax, _ = _unit(unit[:, 0] - np.einsum("ni,ni->n", unit[:, 0], normal)[:, None] * normal)
    y_ax = np.cross(normal, x_ax)
    ang = np.arctan2(np.einsum("nki,ni->nk", unit, y_ax), np.einsum("nki,ni->nk", unit, x_ax))
    picks = [np.zeros(nv, dtype=np.int64)]
    for target in (2 * np.pi / 3, 4 * np.pi / 3):
        gap = np.abs(np.angle(np.exp(1j * (ang - target))))
        picks.append(np.argmin(np.where(valid, gap, np.inf), axis=1))
    rows = np.arange(nv)
    a, b, c = (unit[rows, k] for k in picks)
    rays = []
    for x, y, z in ((a, b, c), (b, c, a), (c, a, b)):
        r, _ = _unit(np.cross(x, y))
        rays.append(r * np.where(np.einsum("ni,ni->n", r, z) > 0, -1.0, 1.0)[:, None])
    rays = np.stack(rays, axis=1)  # (n, 3, 3) extreme rays of the 3-edge cone
    pn, pok = _unit(np.cross(rays[:, 1] - rays[:, 0], rays[:, 2] - rays[:, 0]))
    h = np.abs(np.einsum("ni,ni->n", pn, rays[:, 0]))
    indep = np.abs(np.einsum("ni,ni->n", np.cross(a, b), c)) > 1e-9
    tight = pok & indep & (h > 0.05)
    hi = rays.max(axis=1)
    lo = rays.min(axis=1)
    hi = np.where(hi > 0, hi / np.where(tight, h, 1.0)[:, None], hi)
    lo = np.where(lo < 0, lo / np.where(tight, h, 1.0)[:, None], lo)
    hi = np.where(tight[:, None], np.clip(hi, 0.0, 1.0), 1.0)
    lo = np.where(tight[:, None], np.clip(lo, -1.0, 0.0), -1.0)
    axis, axis_ok = _unit(rays.sum(axis=1))
    axis[~(tight & axis_ok)] = 0.0  # no cap: 0 <= B always holds
    normals = np.concatenate([unit[:, :D], axis[:, None]], axis=1)
    offs = np.concatenate(
        [np.einsum("nki,ni->nk", unit[:, :D], v) + _EPS, (np.einsum("ni,ni->n", axis, v) + B + _EPS)[:, None]], axis=1
    )
    return normals, offs, v + B * lo - 2 * _EPS, v + B * hi + 2 * _EPS


def _inward(v: np.ndarray, f: np.ndarray, dedge: np.ndarray):
    """Start, end, unit direction and unit inward normal (in the face, orthogonal to the edge)
    of directed edges ``3 * face + k`` (edge k runs from corner k+1 to corner k+2)."""
    face, k = dedge // 3, dedge % 3
    p0 = v[f[face, (k + 1) % 3]]
    p1 = v[f[face, (k + 2) % 3]]
    rel = v[f[face, k]] - p0
    t, _ = _unit(p1 - p0)
    u, _ = _unit(rel - np.einsum("ri,ri->r", rel, t)[:, None] * t)
    return p0, p1, t, u


def _chunks(n: int, size: int = 1 << 15):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def band_distance(
    vertices: np.ndarray,
    faces: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    band_mm: float,
) -> np.ndarray:
    """Exact unsigned distance (float32, flat, C order) for voxels within ``band_mm``; ``inf`` elsewhere."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    aff = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(aff)
    out = np.full(int(np.prod(shape)), np.inf, dtype=np.float32)
    B = float(band_mm)
    partner, unique_edges = _edge_topology(f)

    def scan_score(normals, offs, box_lo, box_hi, table, ids):
        ilo, ihi = _world_box_to_index(box_lo - 2 * _EPS, box_hi + 2 * _EPS, inv)
        reg, vox = _scan(_to_index_planes(normals, offs, aff), ilo, ihi, shape)
        _score(out, vox, ids[reg], table, aff, shape)

    # faces: the prism over each face, both sides, walls orthogonal to the face
    for sl in _chunks(len(f)):
        fb = np.arange(sl.start, sl.stop)
        pa, pb, pc = v[f[fb, 0]], v[f[fb, 1]], v[f[fb, 2]]
        n, ok = _unit(np.cross(pb - pa, pc - pa))
        fb, pa, pb, pc, n = fb[ok], pa[ok], pb[ok], pc[ok], n[ok]
        walls = [_inward(v, f, 3 * fb + k) for k in range(3)]
        ui = np.stack([w[3] for w in walls], axis=1)
        p0 = np.stack([w[0] for w in walls], axis=1)
        hn = np.einsum("ri,ri->r", n, pa)
        normals = np.concatenate([n[:, None], -n[:, None], -ui], axis=1)
        offs = np.concatenate(
            [(hn + B)[:, None], (B - hn)[:, None], -np.einsum("rki,rki->rk", ui, p0)], axis=1) + _EPS
        tri = np.stack([pa, pb, pc], axis=1)
        reach = B * np.abs(n)
        table = _triangle_table(pa, pb, pc)
        scan_score(normals, offs, tri.min(axis=1) - reach, tri.max(axis=1) + reach, table, np.arange(len(fb)))
    # convex edges: the wedge between the prisms of their two faces, on the convex side
    rep = np.flatnonzero(partner > np.arange(len(partner)))  # each manifold edge once
    for sl in _chunks(len(rep)):
        de = rep[sl]
        a0, a1, te, uf = _inward(v, f, de)
        ug = _inward(v, f, partner[de])[3]
        w, w_ok = _unit(-(uf + ug))
        a0, a1, te, uf, ug, w = a0[w_ok], a1[w_ok], te[w_ok], uf[w_ok], ug[w_ok], w[w_ok]
        r1, _ = _unit(np.cross(te, uf))
        r1 *= np.where(np.einsum("ri,ri->r", r1, w) < 0, -1.0, 1.0)[:, None]
        r2, _ = _unit(np.cross(te, ug))
        r2 *= np.where(np.einsum("ri,ri->r", r2, w) < 0, -1.0, 1.0)[:, None]
        cos_half = np.minimum(np.einsum("ri,ri->r", r1, w), np.einsum("ri,ri->r", r2, w))
        normals = np.stack([-te, te, uf, ug, w], axis=1)
        offs = np.stack(
            [-np.einsum("ri,ri->r", te, a0), np.einsum("ri,ri->r", te, a1), np.einsum("ri,ri->r", uf, a0),
             np.einsum("ri,ri->r", ug, a0), np.einsum("ri,ri->r", w, a0) + B], axis=1) + _EPS
        cap_lo, cap_hi = np.minimum(a0, a1) - B, np.maximum(a0, a1) + B
        reach = (B / np.maximum(cos_half, 1e-3))[:, None]
        pts = np.stack([a0, a1, a0 + reach * r1, a0 + reach * r2, a1 + reach * r1, a1 + reach * r2], axis=1)
        wide = (cos_half < 0.2)[:, None]  # wedges wider than ~156 degrees: the cap's box
        box_lo = np.where(wide, cap_lo, np.maximum(pts.min(axis=1), cap_lo))
        box_hi = np.where(wide, cap_hi, np.minimum(pts.max(axis=1), cap_hi))
        scan_score(normals, offs, box_lo, box_hi, _triangle_table(a0, a1, a1), np.arange(len(a0)))
    # boundary and non-manifold edges: a cylinder each, scored as degenerate triangles
    special = np.flatnonzero(partner < 0)
    for sl in _chunks(len(special)):
        a0, a1, te, _ = _inward(v, f, special[sl])
        normals = np.stack([-te, te], axis=1)
        offs = np.stack([-np.einsum("ri,ri->r", te, a0), np.einsum("ri,ri->r", te, a1)], axis=1) + _EPS
        scan_score(normals, offs, np.minimum(a0, a1) - B, np.maximum(a0, a1) + B,
                   _triangle_table(a0, a1, a1), np.arange(len(a0)))
    # vertices: the cone of directions pointing away from every incident edge
    src = np.concatenate([unique_edges[:, 0], unique_edges[:, 1]])
    dst = np.concatenate([unique_edges[:, 1], unique_edges[:, 0]])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    deg = np.bincount(src, minlength=len(v))
    start = np.cumsum(deg) - deg
    D = int(max(3, min(deg.max(initial=0), MAX_DEGREE)))
    for sl in _chunks(len(v)):
        ids = np.arange(sl.start, sl.stop)
        dg = np.minimum(deg[ids], D)
        row = np.repeat(np.arange(len(ids)), dg)
        rank = np.arange(int(dg.sum())) - np.repeat(np.cumsum(dg) - dg, dg)
        edges = np.zeros((len(ids), D, 3))
        edges[row, rank] = v[dst[start[ids][row] + rank]] - v[ids][row]
        normals, offs, box_lo, box_hi = _vertex_regions(v, ids, edges, B)
        scan_score(normals, offs, box_lo, box_hi, _triangle_table(v[ids], v[ids], v[ids]), np.arange(len(ids)))
    out[out > B] = np.inf
    return out


def _score(out: np.ndarray, vox: np.ndarray, tri: np.ndarray, table: np.ndarray, aff: np.ndarray,
           shape: tuple[int, int, int]) -> None:
    """Exact distance of each (voxel, triangle) pair, reduced with a minimum into ``out``."""
    step = 1 << 16
    for s in range(0, len(vox), step):
        vv, tt = vox[s : s + step], tri[s : s + step]
        world = voxel_centres(vv, shape, aff)
        d = np.sqrt(point_triangle_sqdist(world, table[tt])).astype(np.float32)
        np.minimum.at(out, vv, d)
