"""Exact distances to a triangle mesh for the voxels near it (internal module).

A scan conversion of characteristic regions, certified by first-order optimality conditions:

* if the closest mesh point ``x`` of a voxel centre ``p`` is inside face ``f``, ``p`` lies in the
  prism over ``f`` (``p - x`` is along the normal);
* if ``x`` is inside an edge, ``p - x`` is orthogonal to the edge and points away from both
  faces of the edge (into the wedge on the edge's convex side);
* if ``x`` is a vertex, that vertex is the nearest vertex of ``p`` (a KD-tree query).

Prisms and wedges are small convex polytopes (five half-spaces each) given to :func:`_scan`, which lists
the voxel centres inside it column by column. Candidates are scored with the exact
point-to-triangle distance and reduced with a minimum per voxel, so the result is the exact
distance of every voxel within ``band_mm`` of the mesh. Boundary and non-manifold edges (absent
from closed surfaces) get a cylinder of their own.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ._closest import _triangle_table, point_triangle_sqdist

_EPS = 1e-6  # mm: slack of every half-space (regions are supersets; slack only adds candidates)
_BLOCK = 1 << 18  # (region, column) pairs per vectorised block


def _unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    ok = n[..., 0] > 1e-12
    return np.where(ok[..., None], x / np.where(n > 1e-12, n, 1.0), 0.0), ok


def _edge_topology(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours across edges. Edge ``k`` of a face runs from corner ``k+1`` to ``k+2``.

    Returns ``other`` (m, 3): the face across edge k (-1 on boundary and non-manifold edges) and
    ``special`` (m, 3): True on boundary and non-manifold edges."""
    m = len(faces)
    a = faces[:, [1, 2, 0]].reshape(-1)
    b = faces[:, [2, 0, 1]].reshape(-1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * (int(faces.max(initial=0)) + 1) + hi
    order = np.argsort(key, kind="stable")
    ks = key[order]
    start = np.r_[True, ks[1:] != ks[:-1]]
    group = np.cumsum(start) - 1
    size = np.bincount(group)[group]
    other = np.full(3 * m, -1, dtype=np.int64)
    pair = size == 2
    # in a group of two, each member's partner is the other one
    first = np.flatnonzero(start)
    idx_first = order[first[size[first] == 2]]
    idx_second = order[first[size[first] == 2] + 1]
    other[idx_first] = idx_second // 3
    other[idx_second] = idx_first // 3
    special = np.zeros(3 * m, dtype=bool)
    special[order[~pair]] = True
    return other.reshape(m, 3), special.reshape(m, 3)


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
    for axis in range(3):
        sel = np.flatnonzero(valid & (col_axis == axis))
        if len(sel) == 0:
            continue
        u, v = [a for a in range(3) if a != axis]
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
            for k in range(planes.shape[1]):
                a = planes[rr, k]
                coef = a[:, axis]
                rhs = a[:, 3] - a[:, u] * cu - a[:, v] * cv
                pos, neg = coef > 1e-12, coef < -1e-12
                with np.errstate(divide="ignore", invalid="ignore"):
                    bound = rhs / coef
                np.minimum(zmax, np.where(pos, bound, np.inf), out=zmax)
                np.maximum(zmin, np.where(neg, bound, -np.inf), out=zmin)
                flat = ~pos & ~neg
                zmax[flat & (rhs < 0)] = -np.inf
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
    a = normals @ lin  # (n.M) x
    b = offsets - normals @ t
    return np.concatenate([a, b[..., None]], axis=-1)


def _world_box_to_index(lo: np.ndarray, hi: np.ndarray, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index-space bounding box of world boxes (all 8 corners mapped)."""
    out_lo = np.full(lo.shape, np.inf)
    out_hi = np.full(lo.shape, -np.inf)
    for corner in range(8):
        c = np.where([(corner >> k) & 1 for k in range(3)], hi, lo)
        x = c @ inv[:3, :3].T + inv[:3, 3]
        np.minimum(out_lo, x, out=out_lo)
        np.maximum(out_hi, x, out=out_hi)
    return out_lo, out_hi


def band_distance(
    vertices: np.ndarray,
    faces: np.ndarray,
    affine: np.ndarray,
    shape: tuple[int, int, int],
    band_mm: float,
    extra_voxels: np.ndarray | None = None,
) -> np.ndarray:
    """Exact unsigned distance (float32, flat, C order) for voxels within ``band_mm``; ``inf`` elsewhere.

    ``extra_voxels`` (flat indices) also get their nearest-vertex distance considered (the
    caller passes the voxels it believes near the surface).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    aff = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(aff)
    n_vox = int(np.prod(shape))
    out = np.full(n_vox, np.inf, dtype=np.float32)
    B = float(band_mm)
    pa, pb, pc = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    corners = np.stack([pa, pb, pc], axis=1)  # (m, 3, 3)
    nrm, ok = _unit(np.cross(pb - pa, pc - pa))
    other, special = _edge_topology(f)
    # edge k runs from corner k+1 to corner k+2, opposite corner k
    p_start = corners[:, [1, 2, 0]]
    p_end = corners[:, [2, 0, 1]]
    opp = corners
    t, _ = _unit(p_end - p_start)
    u_in, _ = _unit(opp - p_start - np.einsum("mki,mki->mk", opp - p_start, t)[..., None] * t)
    # the other face's inward direction at the shared edge, and its opposite vertex
    g = np.where(other >= 0, other, 0)
    # opposite vertex of face g across the shared edge: the vertex of g not on the edge
    fg = f[g]  # (m, 3, 3) vertex ids
    e0 = f[:, [1, 2, 0]]
    e1 = f[:, [2, 0, 1]]
    not_on_edge = (fg != e0[..., None]) & (fg != e1[..., None])
    opp_g_id = np.take_along_axis(fg, np.argmax(not_on_edge, axis=2)[..., None], axis=2)[..., 0]
    opp_g = v[opp_g_id]
    u_g, _ = _unit(opp_g - p_start - np.einsum("mki,mki->mk", opp_g - p_start, t)[..., None] * t)
    manifold = (other >= 0) & ~special
    table = _triangle_table(pa, pb, pc)
    # faces: the prism over each face, both sides, walls orthogonal to the face
    fo = np.flatnonzero(ok)
    n = nrm[fo]
    hn = np.einsum("ri,ri->r", n, pa[fo])
    ui, ps = u_in[fo], p_start[fo]
    normals = np.concatenate([n[:, None], -n[:, None], -ui], axis=1)  # (R, 5, 3)
    offs = np.concatenate(
        [(hn + B + _EPS)[:, None], (-hn + B + _EPS)[:, None], -np.einsum("rki,rki->rk", ui, ps) + _EPS], axis=1
    )
    tri = corners[fo]
    reach = B * np.abs(n) + 2 * _EPS
    ilo, ihi = _world_box_to_index(tri.min(axis=1) - reach, tri.max(axis=1) + reach, inv)
    reg, vox = _scan(_to_index_planes(normals, offs, aff), ilo, ihi, shape)
    _score(out, vox, fo[reg], table, aff, shape)
    # convex edges: the wedge between the prisms of their two faces, on the convex side
    fe, ke = np.nonzero(manifold & (other > np.arange(len(f))[:, None]))
    uf, ug = u_in[fe, ke], u_g[fe, ke]
    w, w_ok = _unit(-(uf + ug))
    fe, ke, uf, ug, w = fe[w_ok], ke[w_ok], uf[w_ok], ug[w_ok], w[w_ok]
    if len(fe):
        a0, a1, te = p_start[fe, ke], p_end[fe, ke], t[fe, ke]
        r1, _ = _unit(np.cross(te, uf))
        r1 *= np.sign(np.einsum("ri,ri->r", r1, w) + 1e-300)[:, None]
        r2, _ = _unit(np.cross(te, ug))
        r2 *= np.sign(np.einsum("ri,ri->r", r2, w) + 1e-300)[:, None]
        cos_half = np.minimum(np.einsum("ri,ri->r", r1, w), np.einsum("ri,ri->r", r2, w))
        normals = np.stack([-te, te, uf, ug, w], axis=1)
        offs = np.stack(
            [-np.einsum("ri,ri->r", te, a0), np.einsum("ri,ri->r", te, a1), np.einsum("ri,ri->r", uf, a0),
             np.einsum("ri,ri->r", ug, a0), np.einsum("ri,ri->r", w, a0) + B], axis=1) + _EPS
        cap_lo, cap_hi = np.minimum(a0, a1) - B, np.maximum(a0, a1) + B
        reach = (B / np.maximum(cos_half, 1e-3))[:, None]
        pts = np.stack([a0, a1, a0 + reach * r1, a0 + reach * r2, a1 + reach * r1, a1 + reach * r2], axis=1)
        wide = (cos_half < 0.2)[:, None]
        box_lo = np.where(wide, cap_lo, np.maximum(pts.min(axis=1), cap_lo)) - 2 * _EPS
        box_hi = np.where(wide, cap_hi, np.minimum(pts.max(axis=1), cap_hi)) + 2 * _EPS
        ilo, ihi = _world_box_to_index(box_lo, box_hi, inv)
        reg, vox = _scan(_to_index_planes(normals, offs, aff), ilo, ihi, shape)
        _score(out, vox, reg, _triangle_table(a0, a1, a1), aff, shape)
    # boundary and non-manifold edges: a cylinder each, scored as degenerate triangles
    se = np.argwhere(special)
    if len(se):
        a0, a1 = p_start[se[:, 0], se[:, 1]], p_end[se[:, 0], se[:, 1]]
        tt_, _ = _unit(a1 - a0)
        normals = np.stack([-tt_, tt_], axis=1)
        offs = np.stack([-np.einsum("ri,ri->r", tt_, a0) + _EPS, np.einsum("ri,ri->r", tt_, a1) + _EPS], axis=1)
        planes = _to_index_planes(normals, offs, aff)
        ilo, ihi = _world_box_to_index(np.minimum(a0, a1) - B, np.maximum(a0, a1) + B, inv)
        reg, vox = _scan(planes, ilo, ihi, shape)
        seg_table = _triangle_table(a0, a1, a1)
        _score(out, vox, reg, seg_table, aff, shape)
    # vertices: the nearest vertex of every voxel reached so far or suggested by the caller
    cand = np.flatnonzero(out <= B)
    if extra_voxels is not None:
        cand = np.union1d(cand, extra_voxels)
    if len(cand):
        ijk = np.stack(np.unravel_index(cand, shape), axis=1).astype(np.float64)
        world = ijk @ aff[:3, :3].T + aff[:3, 3]
        dv, _ = cKDTree(v).query(world, k=1, distance_upper_bound=B * (1 + 1e-9) + _EPS, workers=-1)
        np.minimum.at(out, cand, dv.astype(np.float32))
    out[out > B] = np.inf
    return out


def _score(out: np.ndarray, vox: np.ndarray, tri: np.ndarray, table: np.ndarray, aff: np.ndarray,
           shape: tuple[int, int, int]) -> None:
    """Exact distance of each (voxel, triangle) pair, reduced with a minimum into ``out``."""
    step = 1 << 16
    for s in range(0, len(vox), step):
        vv, tt = vox[s : s + step], tri[s : s + step]
        ijk = np.stack(np.unravel_index(vv, shape), axis=1).astype(np.float64)
        world = ijk @ aff[:3, :3].T + aff[:3, 3]
        d = np.sqrt(point_triangle_sqdist(world, table[tt])).astype(np.float32)
        np.minimum.at(out, vv, d)
