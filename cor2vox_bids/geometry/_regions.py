"""Exact distances near a triangle mesh by scanning characteristic regions (compiled, internal module).

The closest point of the mesh to a point ``x`` lies in the interior of a face, the interior of an edge
or at a vertex, and ``x`` then satisfies that feature's necessary conditions:

* face ``abc``: ``x`` projects into the triangle (three half-spaces through its edges, along its normal);
* edge ``ab``: ``x`` projects onto the open segment (two half-spaces across its ends) and, for every
  face ``abc`` on the edge, not into that face across ``ab`` (``(x - a) . m <= 0``, ``m`` the direction
  in the face perpendicular to ``ab``, towards ``c``);
* vertex ``v``: ``(x - v) . (w - v) <= 0`` for the neighbours ``w`` (moving along an edge would help).

Each condition set is a convex polyhedron, cut here to the band ``|x - feature| <= R``: caps for a
face; for an edge or a vertex an index box around a circular cone that holds the region (found from the
region's extreme rays), or around the whole cylinder or ball when the region has no pointed bound.
Every voxel centre inside a feature's polyhedron gets the exact distance to that feature (the whole triangle,
segment or point, so it is never below the distance to the mesh) and keeps the minimum. The true closest
feature of a voxel within ``R`` always contains it, so the minimum is the exact distance to the mesh. Leaving
out a condition (a degenerate face, a boundary or non-manifold edge, a neighbour that is not found) only
enlarges a region, which costs time, never accuracy; the half-spaces are also widened by a rounding margin.

Regions are scanned column by column (the k-range of a column is clipped by every half-space). Parallel
tasks take the regions round-robin and keep their minimum in grids of their own (over the index box of the
mesh widened by the band, not the whole grid), reduced at the end, so the result does not depend on the
number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._kernels import _seg_sqdist, point_triangle_sqdist1

FACE, EDGE, VERTEX = 0, 1, 2
MAX_CONE = 32  # more half-spaces than this at a vertex: its region's box is the whole ball


@njit(cache=True)
def _vertex_faces(f, n):
    """CSR (start (n + 1,), faces) of the faces around each vertex."""
    counts = np.zeros(n + 1, dtype=np.int64)
    for t in range(f.shape[0]):
        for c in range(3):
            counts[f[t, c] + 1] += 1
    start = np.cumsum(counts)
    fill = start[:-1].copy()
    faces = np.empty(start[-1], dtype=np.int64)
    for t in range(f.shape[0]):
        for c in range(3):
            v = f[t, c]
            faces[fill[v]] = t
            fill[v] += 1
    return start, faces


@njit(cache=True)
def _unit(x, y, z):
    n = math.sqrt(x * x + y * y + z * z)
    if n == 0.0:
        return 0.0, 0.0, 0.0
    return x / n, y / n, z / n


@njit("void(float64[:, ::1], int64, float64, float64, float64, float64, float64, float64, float64, "
       "float64[:, ::1], float64[::1])", cache=True)
def _add_plane(planes, p, gx, gy, gz, px, py, pz, slack, lin, off):
    """Row p: the world half-space ``g . (x - p) <= slack`` as ``G . (i, j, k) <= C`` in index space."""
    planes[p, 0] = lin[0, 0] * gx + lin[1, 0] * gy + lin[2, 0] * gz
    planes[p, 1] = lin[0, 1] * gx + lin[1, 1] * gy + lin[2, 1] * gz
    planes[p, 2] = lin[0, 2] * gx + lin[1, 2] * gy + lin[2, 2] * gz
    planes[p, 3] = gx * (px - off[0]) + gy * (py - off[1]) + gz * (pz - off[2]) + slack


@njit("Tuple((boolean, int64))(int64[:, :], int64[::1], int64[::1], int64, int64, int64)", cache=True)
def _edge_other(f, vf_start, vf_faces, t, a, b):
    """(owner, other): ``owner`` False when a face with a smaller index also has edge ab (it scans the
    edge); ``other`` the third vertex of one other face on the edge, or -1."""
    other = -1
    for s in range(vf_start[a], vf_start[a + 1]):
        u = vf_faces[s]
        if u == t:
            continue
        for c in range(3):
            if f[u, c] == b:
                if u < t:
                    return False, -1
                if other < 0:
                    other = f[u, 0] + f[u, 1] + f[u, 2] - a - b
    return True, other


@njit(cache=True, parallel=True)
def _edges(f, vf_start, vf_faces):
    """Each undirected edge once (scanned by its lowest-numbered face): rows (a, b, c, d) with c the third
    vertex of that face and d the third vertex of another face on the edge (-1 on a boundary)."""
    m = f.shape[0]
    owns = np.zeros((m, 3), dtype=np.bool_)
    others = np.full((m, 3), -1, dtype=np.int64)
    for t in prange(m):
        for c in range(3):
            a, b = f[t, c], f[t, (c + 1) % 3]
            if a != b:
                owns[t, c], others[t, c] = _edge_other(f, vf_start, vf_faces, t, a, b)
    first = np.zeros(m + 1, dtype=np.int64)
    for t in range(m):
        first[t + 1] = first[t] + owns[t, 0] + owns[t, 1] + owns[t, 2]
    out = np.empty((first[m], 4), dtype=np.int64)
    for t in prange(m):
        r = first[t]
        for c in range(3):
            if owns[t, c]:
                out[r, 0], out[r, 1], out[r, 2], out[r, 3] = f[t, c], f[t, (c + 1) % 3], f[t, (c + 2) % 3], others[t, c]
                r += 1
    return out


@njit(cache=True, parallel=True)
def band_sqdist(v, f, band, affine, shape, n_tasks):
    """float32 grid of ``shape``: squared distance from each voxel centre to the mesh where it is at most
    ``band**2`` (exact), ``inf`` elsewhere (``affine``: voxel -> world, the frame of ``v``).

    The regions are dealt round-robin to ``n_tasks`` parallel tasks; each keeps the minimum in a grid of its
    own and the grids are reduced at the end, so the result does not depend on the number of tasks."""
    nv, m = v.shape[0], f.shape[0]
    ni, nj, nk = shape[0], shape[1], shape[2]
    lin = np.ascontiguousarray(affine[:3, :3])
    off = np.ascontiguousarray(affine[:3, 3])
    inv = np.linalg.inv(lin)
    reach = np.empty(3)
    for ax in range(3):
        reach[ax] = math.sqrt(inv[ax, 0] ** 2 + inv[ax, 1] ** 2 + inv[ax, 2] ** 2)
    scale = 0.0
    for q in range(nv):
        for ax in range(3):
            scale = max(scale, abs(v[q, ax]))
    slack = 1e-9 * (scale + band) + 1e-12
    band2 = band * band
    vf_start, vf_faces = _vertex_faces(f, nv)
    edges = _edges(f, vf_start, vf_faces)
    n = m + edges.shape[0] + nv
    # the private grids cover only the index box of the mesh widened by the band (every region's box lies in it)
    lo = np.empty(3, dtype=np.int64)
    sub = np.empty(3, dtype=np.int64)
    for ax in range(3):
        lo_x, hi_x = np.inf, -np.inf
        for q in range(nv):
            x = (inv[ax, 0] * (v[q, 0] - off[0]) + inv[ax, 1] * (v[q, 1] - off[1])
                 + inv[ax, 2] * (v[q, 2] - off[2]))
            lo_x, hi_x = min(lo_x, x), max(hi_x, x)
        g = band * reach[ax]
        b0 = int(math.floor(min(max(lo_x - g, -2.0), shape[ax] + 1.0))) - 1
        b1 = int(math.ceil(min(max(hi_x + g, -2.0), shape[ax] + 1.0))) + 1
        b0, b1 = max(b0, 0), min(b1, shape[ax] - 1)
        lo[ax], sub[ax] = b0, max(b1 - b0 + 1, 0)
    grids = np.empty((n_tasks, sub[0], sub[1], sub[2]), dtype=np.float32)
    for task in prange(n_tasks):
        grid = grids[task]
        grid[:] = np.inf
        planes = np.empty((MAX_CONE + 5, 4))
        normals = np.empty((MAX_CONE, 3))
        rays = np.empty((MAX_CONE * (MAX_CONE - 1), 3))
        offsets = np.empty((2, 3))
        box = np.empty(6, dtype=np.int64)
        for q in range(task, n, n_tasks):
            kd, a, b, c, n_planes = _region(q, m, v, f, edges, vf_start, vf_faces, band, slack, lin, off, inv, reach,
                                            shape, planes, normals, rays, offsets, box)
            if n_planes >= 0 and _clip_box(box, lo, sub):
                _scan(kd, a, b, c, v, planes, n_planes, box, band2, lin, off, lo, grid)
    out = np.empty((ni, nj, nk), dtype=np.float32)
    for i in prange(ni):
        si = i - lo[0]
        for j in range(nj):
            sj = j - lo[1]
            if si < 0 or si >= sub[0] or sj < 0 or sj >= sub[1]:
                out[i, j, :] = np.inf
                continue
            for k in range(nk):
                sk = k - lo[2]
                if sk < 0 or sk >= sub[2]:
                    out[i, j, k] = np.inf
                    continue
                x = grids[0, si, sj, sk]
                for t in range(1, n_tasks):
                    x = min(x, grids[t, si, sj, sk])
                out[i, j, k] = x
    return out


@njit(cache=True)
def _clip_box(box, lo, sub):
    """Clip an index box to the private grids' box (``lo``, size ``sub``; a safeguard: regions lie inside it);
    False when nothing is left."""
    for ax in range(3):
        box[ax] = max(box[ax], lo[ax])
        box[3 + ax] = min(box[3 + ax], lo[ax] + sub[ax] - 1)
        if box[ax] > box[3 + ax]:
            return False
    return True


@njit(cache=True)
def _set_box(box, lo, hi, shape):
    """Index box (i0, j0, k0, i1, j1, k1) from the corners lo, hi, clipped to the grid; False when empty."""
    empty = not (lo[0] <= hi[0])
    for ax in range(3):
        b0 = int(math.ceil(min(max(lo[ax] - 1e-9, -1.0), shape[ax]))) if not empty else 0
        b1 = int(math.floor(min(max(hi[ax] + 1e-9, -1.0), shape[ax]))) if not empty else -1
        b0, b1 = max(b0, 0), min(b1, shape[ax] - 1)
        empty = empty or b0 > b1
        box[ax], box[3 + ax] = b0, b1
    return not empty


@njit(cache=True)
def _to_index(inv, off, x, y, z):
    x, y, z = x - off[0], y - off[1], z - off[2]
    return (inv[0, 0] * x + inv[0, 1] * y + inv[0, 2] * z, inv[1, 0] * x + inv[1, 1] * y + inv[1, 2] * z,
            inv[2, 0] * x + inv[2, 1] * y + inv[2, 2] * z)


@njit(cache=True)
def _ball_box(reach, band, offsets):
    """Index-space offsets (``offsets`` rows lo, hi) of the ball of radius ``band``; returns False."""
    for ax in range(3):
        offsets[0, ax], offsets[1, ax] = -band * reach[ax], band * reach[ax]
    return False


@njit("boolean(float64[:, ::1], int64, float64[:, :], float64[::1], float64, float64[:, ::1])", cache=True)
def _cone_box(rays, n_rays, inv, reach, band, offsets):
    """Index-space offsets (``offsets`` rows lo, hi) bounding the cone spanned by ``rays[:n_rays]`` (unit,
    all in the cone) cut to length ``band``; where no pointed bound exists, those of the whole ball (returns
    False then). The cone lies in the circular cone around the rays' mean ``w`` with half-angle ``psi``,
    the largest angle between ``w`` and a ray; along a unit direction at angle ``theta`` from ``w`` such
    a cone reaches ``band * cos(max(theta - psi, 0))`` (or 0 beyond a right angle)."""
    lo, hi = offsets[0], offsets[1]
    wx = wy = wz = 0.0
    for r in range(n_rays):
        wx, wy, wz = wx + rays[r, 0], wy + rays[r, 1], wz + rays[r, 2]
    wn = math.sqrt(wx * wx + wy * wy + wz * wz)
    if n_rays == 0 or wn < 1e-6 * n_rays:
        return _ball_box(reach, band, offsets)
    wx, wy, wz = wx / wn, wy / wn, wz / wn
    cos_psi = 1.0
    for r in range(n_rays):
        cos_psi = min(cos_psi, rays[r, 0] * wx + rays[r, 1] * wy + rays[r, 2] * wz)
    cos_psi = cos_psi * (1.0 - 1e-9) - 1e-9  # a hair wider (rounding)
    if cos_psi < 1e-6:
        return _ball_box(reach, band, offsets)
    sin_psi = math.sqrt(1.0 - cos_psi * cos_psi)
    for ax in range(3):
        g = reach[ax]
        ct = (inv[ax, 0] * wx + inv[ax, 1] * wy + inv[ax, 2] * wz) / g
        st = math.sqrt(max(1.0 - ct * ct, 0.0))
        # cos(max(theta - psi, 0)) towards +axis and cos(max(pi - theta - psi, 0)) towards -axis, 0 past 90 deg
        hi[ax] = band * g * (1.0 if ct >= cos_psi else max(ct * cos_psi + st * sin_psi, 0.0))
        lo[ax] = -band * g * (1.0 if -ct >= cos_psi else max(-ct * cos_psi + st * sin_psi, 0.0))
    return True


@njit("int64(float64[:, ::1], int64, float64[:, ::1], int64, float64, float64, float64)", cache=True)
def _valid_rays(normals, n_normals, rays, n_rays, x, y, z):
    """Append +-(x, y, z) (normalised) to ``rays`` when it satisfies every ``u . normal <= 0`` (tolerant)."""
    nn = math.sqrt(x * x + y * y + z * z)
    if nn < 1e-9:
        return n_rays
    x, y, z = x / nn, y / nn, z / nn
    for sign in (1.0, -1.0):
        ok = True
        for r in range(n_normals):
            if sign * (x * normals[r, 0] + y * normals[r, 1] + z * normals[r, 2]) > 1e-9:
                ok = False
                break
        if ok:
            rays[n_rays, 0], rays[n_rays, 1], rays[n_rays, 2] = sign * x, sign * y, sign * z
            n_rays += 1
    return n_rays


@njit(cache=True)
def _region(q, m, v, f, edges, vf_start, vf_faces, band, slack, lin, off, inv, reach, shape, planes, normals, rays,
            offsets, box):
    """Region q (faces, then edges, then vertices): fills ``planes`` (index-space half-spaces) and ``box``;
    returns (kind, a, b, c, number of half-spaces), the count -1 when the region is empty."""
    inf = np.inf
    l0, l1, l2, h0, h1, h2 = inf, inf, inf, -inf, -inf, -inf
    a = b = c = -1
    n_edges = edges.shape[0]
    if q < m:
        kd = FACE
        a, b, c = f[q, 0], f[q, 1], f[q, 2]
        e0x, e0y, e0z = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        e1x, e1y, e1z = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        nx, ny, nz = e0y * e1z - e0z * e1y, e0z * e1x - e0x * e1z, e0x * e1y - e0y * e1x
        nn = nx * nx + ny * ny + nz * nz
        if nn <= 1e-24 * (e0x * e0x + e0y * e0y + e0z * e0z) * (e1x * e1x + e1y * e1y + e1z * e1z):
            return kd, a, b, c, -1  # degenerate: no interior, its edges and vertices cover it
        nx, ny, nz = _unit(nx, ny, nz)
        corners = (a, b, c)
        for s in range(3):
            u, w = corners[s], corners[(s + 1) % 3]
            dx, dy, dz = v[w, 0] - v[u, 0], v[w, 1] - v[u, 1], v[w, 2] - v[u, 2]
            gx, gy, gz = _unit(dy * nz - dz * ny, dz * nx - dx * nz, dx * ny - dy * nx)  # outward, in the plane
            _add_plane(planes, s, gx, gy, gz, v[u, 0], v[u, 1], v[u, 2], slack, lin, off)
        _add_plane(planes, 3, nx, ny, nz, v[a, 0], v[a, 1], v[a, 2], band + slack, lin, off)
        _add_plane(planes, 4, -nx, -ny, -nz, v[a, 0], v[a, 1], v[a, 2], band + slack, lin, off)
        for s in range(3):
            u = corners[s]
            for sign in (-1.0, 1.0):
                i, j, k = _to_index(inv, off, v[u, 0] + sign * band * nx, v[u, 1] + sign * band * ny,
                                    v[u, 2] + sign * band * nz)
                l0, l1, l2 = min(l0, i), min(l1, j), min(l2, k)
                h0, h1, h2 = max(h0, i), max(h1, j), max(h2, k)
        n_planes = 5
    elif q < m + n_edges:
        kd = EDGE
        a, b, c = edges[q - m, 0], edges[q - m, 1], edges[q - m, 2]
        ex, ey, ez = _unit(v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2])
        _add_plane(planes, 0, -ex, -ey, -ez, v[a, 0], v[a, 1], v[a, 2], slack, lin, off)
        _add_plane(planes, 1, ex, ey, ez, v[b, 0], v[b, 1], v[b, 2], slack, lin, off)
        thirds = (c, edges[q - m, 3])
        n_faces = 2 if thirds[1] >= 0 else 1
        for s in range(n_faces):
            w = thirds[s]
            dx, dy, dz = v[w, 0] - v[a, 0], v[w, 1] - v[a, 1], v[w, 2] - v[a, 2]
            h = dx * ex + dy * ey + dz * ez
            gx, gy, gz = _unit(dx - h * ex, dy - h * ey, dz - h * ez)
            normals[s, 0], normals[s, 1], normals[s, 2] = gx, gy, gz
            _add_plane(planes, 2 + s, gx, gy, gz, v[a, 0], v[a, 1], v[a, 2], slack, lin, off)
        # the wedge's rays lie along the faces' normals (perpendicular to the edge and to one m)
        n_rays = 0
        if n_faces == 2:
            for s in range(2):
                n_rays = _valid_rays(normals, 2, rays, n_rays, ey * normals[s, 2] - ez * normals[s, 1],
                                     ez * normals[s, 0] - ex * normals[s, 2], ex * normals[s, 1] - ey * normals[s, 0])
        _cone_box(rays, n_rays, inv, reach, band, offsets)
        clo, chi = offsets[0], offsets[1]
        for u in (a, b):
            i, j, k = _to_index(inv, off, v[u, 0], v[u, 1], v[u, 2])
            l0, l1, l2 = min(l0, i + clo[0]), min(l1, j + clo[1]), min(l2, k + clo[2])
            h0, h1, h2 = max(h0, i + chi[0]), max(h1, j + chi[1]), max(h2, k + chi[2])
        n_planes = 2 + n_faces
    else:
        kd = VERTEX
        a = q - m - n_edges
        n_nb = vf_start[a + 1] - vf_start[a]
        if n_nb == 0:
            return kd, a, b, c, -1  # in no face: not part of the mesh
        # at most MAX_CONE of its half-spaces (fewer conditions: a larger region, still exact)
        full = n_nb > MAX_CONE
        n_nb = min(n_nb, MAX_CONE)
        n_planes = n_nb
        for s in range(n_nb):
            t = vf_faces[vf_start[a] + s]
            w = f[t, 0]
            for c in range(3):
                if f[t, c] == a:
                    w = f[t, (c + 1) % 3]
            gx, gy, gz = _unit(v[w, 0] - v[a, 0], v[w, 1] - v[a, 1], v[w, 2] - v[a, 2])
            normals[s, 0], normals[s, 1], normals[s, 2] = gx, gy, gz
            _add_plane(planes, s, gx, gy, gz, v[a, 0], v[a, 1], v[a, 2], slack, lin, off)
        if full:
            n_nb = 0  # no cone bound: the ball
        # extreme rays of the cone lie on two of its planes: try every pair
        n_rays = 0
        independent = False
        for s in range(n_nb):
            for r in range(s + 1, n_nb):
                x = normals[s, 1] * normals[r, 2] - normals[s, 2] * normals[r, 1]
                y = normals[s, 2] * normals[r, 0] - normals[s, 0] * normals[r, 2]
                z = normals[s, 0] * normals[r, 1] - normals[s, 1] * normals[r, 0]
                if x * x + y * y + z * z >= 1e-18:
                    independent = True
                n_rays = _valid_rays(normals, n_nb, rays, n_rays, x, y, z)
        if independent and n_rays == 0 and not full:
            return kd, a, b, c, -1  # the cone is the vertex alone: its faces and edges cover it
        _cone_box(rays, n_rays, inv, reach, band, offsets)
        clo, chi = offsets[0], offsets[1]
        i, j, k = _to_index(inv, off, v[a, 0], v[a, 1], v[a, 2])
        l0, l1, l2 = i + clo[0], j + clo[1], k + clo[2]
        h0, h1, h2 = i + chi[0], j + chi[1], k + chi[2]
    if not _set_box(box, (l0, l1, l2), (h0, h1, h2), shape):
        return kd, a, b, c, -1
    return kd, a, b, c, n_planes


@njit(cache=True)
def _scan(kd, a, b, c, v, planes, n_planes, box, band2, lin, off, lo, out):
    """Voxels of a region: clip each column of its box by the half-spaces, score the feature (a face abc, an
    edge ab or a vertex a) and keep the minimum squared distance within the band in ``out`` (whose voxel 0
    is the grid's voxel ``lo``)."""
    ax, ay, az = v[a, 0], v[a, 1], v[a, 2]
    bx = by = bz = cx = cy = cz = 0.0
    if kd != VERTEX:
        bx, by, bz = v[b, 0], v[b, 1], v[b, 2]
    if kd == FACE:
        cx, cy, cz = v[c, 0], v[c, 1], v[c, 2]
    for i in range(box[0], box[3] + 1):
        for j in range(box[1], box[4] + 1):
            k0, k1 = box[2], box[5]
            for p in range(n_planes):
                alpha = planes[p, 2]
                beta = planes[p, 3] - planes[p, 0] * i - planes[p, 1] * j
                if alpha > 0.0:
                    lim = beta / alpha
                    if lim < k1:
                        k1 = int(math.floor(lim)) if lim > k0 - 1.0 else k0 - 1
                elif alpha < 0.0:
                    lim = beta / alpha
                    if lim > k0:
                        k0 = int(math.ceil(lim)) if lim < k1 + 1.0 else k1 + 1
                elif beta < 0.0:
                    k1 = k0 - 1
                if k0 > k1:
                    break
            wx = lin[0, 0] * i + lin[0, 1] * j + off[0]
            wy = lin[1, 0] * i + lin[1, 1] * j + off[1]
            wz = lin[2, 0] * i + lin[2, 1] * j + off[2]
            row = out[i - lo[0], j - lo[1]]
            for k in range(k0, k1 + 1):
                px, py, pz = wx + lin[0, 2] * k, wy + lin[1, 2] * k, wz + lin[2, 2] * k
                if kd == FACE:
                    d = point_triangle_sqdist1(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)
                elif kd == EDGE:
                    d = _seg_sqdist(px, py, pz, ax, ay, az, bx, by, bz)
                else:
                    d = (px - ax) ** 2 + (py - ay) ** 2 + (pz - az) ** 2
                if d <= band2 and d < row[k - lo[2]]:
                    row[k - lo[2]] = d
