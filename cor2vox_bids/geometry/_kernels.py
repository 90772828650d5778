"""Compiled (numba) kernels of the geometry layer (internal module).

* :func:`point_triangle_sqdist1` — exact squared distance from a point to a triangle (closest point
  by Voronoi region of the triangle: vertex, edge or face; degenerate triangles fall back to their
  edges).
* :func:`build_cells` / :func:`query_sqdist` — a uniform grid of cells over a mesh, each cell listing
  the triangles whose bounding box overlaps it, and an exact closest-distance search: cells are
  visited in rings of growing Chebyshev radius around the query's cell, a cell is skipped when its
  box is farther than the best distance so far, and the search stops when a whole ring is farther.
  The result is the exact distance to the closest point of the mesh (certified by the lower bounds,
  not a nearest-vertex approximation). Queries run in parallel (``prange``), each writing its own
  output, so results do not depend on the number of threads; :func:`z_order` sorts them along a Z-order curve
  first, so consecutive queries share candidates.
* :func:`winding_crossings` / :func:`winding_mask` — signed crossings of triangles with voxel columns, in
  exact integer arithmetic, and their running sums (the winding numbers; see ``sdf.py``).
* :func:`distance_seeds_free`, :func:`seed_distance`, :func:`finish_sdf` — the whole-grid passes of
  ``signed_distance``: the seeds of the distance transform, an exact Euclidean distance transform, and the
  final signed values; each a parallel pass over the grid.

Kernels are compiled on first use and cached (``cache=True``) in the folder that ``_cache.py`` chooses (container
images ship it compiled). Small helpers are left to LLVM to inline (numba's IR inlining cost compile time, not run
time) and the ones called with constant arguments have explicit signatures (one compilation each).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange


def set_num_threads(n: int | None) -> int:
    """Threads of the parallel kernels (``None``/0: all available); returns the number in use."""
    top = int(numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(top if not n else max(1, min(int(n), top)))
    return int(numba.get_num_threads())


@njit(cache=True)
def _seg_sqdist(px, py, pz, ax, ay, az, bx, by, bz):
    dx, dy, dz = bx - ax, by - ay, bz - az
    wx, wy, wz = px - ax, py - ay, pz - az
    ll = dx * dx + dy * dy + dz * dz
    t = 0.0
    if ll > 0.0:
        t = (wx * dx + wy * dy + wz * dz) / ll
        t = min(max(t, 0.0), 1.0)
    ex, ey, ez = wx - t * dx, wy - t * dy, wz - t * dz
    return ex * ex + ey * ey + ez * ez


@njit(cache=True)
def point_triangle_sqdist1(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """Exact squared distance from point p to triangle abc (float64 scalars)."""
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0.0 and d2 <= 0.0:
        return apx * apx + apy * apy + apz * apz
    bpx, bpy, bpz = px - bx, py - by, pz - bz
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0.0 and d4 <= d3:
        return bpx * bpx + bpy * bpy + bpz * bpz
    cpx, cpy, cpz = px - cx, py - cy, pz - cz
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0.0 and d5 <= d6:
        return cpx * cpx + cpy * cpy + cpz * cpz
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    den = va + vb + vc
    nx, ny, nz = aby * acz - abz * acy, abz * acx - abx * acz, abx * acy - aby * acx
    if den <= 0.0 or nx * nx + ny * ny + nz * nz <= 1e-24 * (abx * abx + aby * aby + abz * abz) * (
            acx * acx + acy * acy + acz * acz):
        # degenerate (collinear) triangle: its closest point lies on one of its edges
        d = _seg_sqdist(px, py, pz, ax, ay, az, bx, by, bz)
        d = min(d, _seg_sqdist(px, py, pz, bx, by, bz, cx, cy, cz))
        return min(d, _seg_sqdist(px, py, pz, cx, cy, cz, ax, ay, az))
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        return _seg_sqdist(px, py, pz, ax, ay, az, bx, by, bz)
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        return _seg_sqdist(px, py, pz, ax, ay, az, cx, cy, cz)
    if va <= 0.0 and d4 - d3 >= 0.0 and d5 - d6 >= 0.0:
        return _seg_sqdist(px, py, pz, bx, by, bz, cx, cy, cz)
    # inside the face: distance to the plane
    h = apx * nx + apy * ny + apz * nz
    return h * h / (nx * nx + ny * ny + nz * nz)


@njit(cache=True, parallel=True)
def z_order(points, origin, step):
    """Morton (Z-order) codes (int64) of points quantised to ``step`` from ``origin``, 20 bits per axis (clipped)."""
    n = points.shape[0]
    out = np.empty(n, dtype=np.int64)
    top = (1 << 20) - 1
    for q in prange(n):
        code = 0
        for ax in range(3):
            c = min(max(int(math.floor((points[q, ax] - origin[ax]) / step)), 0), top)
            for b in range(20):
                code |= ((c >> b) & 1) << (3 * b + ax)
        out[q] = code
    return out


@njit(cache=True, parallel=True)
def mean_edge_length(v, f):
    """Mean length of the first edge (corner 0 → 1) of every face (float; 0 without faces)."""
    m = f.shape[0]
    total = 0.0
    for t in prange(m):
        dx = v[f[t, 1], 0] - v[f[t, 0], 0]
        dy = v[f[t, 1], 1] - v[f[t, 0], 1]
        dz = v[f[t, 1], 2] - v[f[t, 0], 2]
        total += math.sqrt(dx * dx + dy * dy + dz * dz)
    return total / m if m > 0 else 0.0


@njit(cache=True)
def build_cells(v, f, origin, cell, dims):
    """CSR lists (start (ncells + 1,), items) of the triangles whose box overlaps each cell."""
    m = f.shape[0]
    nx, ny, nz = dims[0], dims[1], dims[2]
    box = np.empty((m, 6), dtype=np.int64)
    counts = np.zeros(nx * ny * nz + 1, dtype=np.int64)
    for t in range(m):
        for ax in range(3):
            lo = min(v[f[t, 0], ax], v[f[t, 1], ax], v[f[t, 2], ax])
            hi = max(v[f[t, 0], ax], v[f[t, 1], ax], v[f[t, 2], ax])
            n = dims[ax]
            box[t, ax] = min(max(int(math.floor((lo - origin[ax]) / cell)), 0), n - 1)
            box[t, 3 + ax] = min(max(int(math.floor((hi - origin[ax]) / cell)), 0), n - 1)
        for i in range(box[t, 0], box[t, 3] + 1):
            for j in range(box[t, 1], box[t, 4] + 1):
                for k in range(box[t, 2], box[t, 5] + 1):
                    counts[(i * ny + j) * nz + k + 1] += 1
    start = np.cumsum(counts)
    fill = start[:-1].copy()
    items = np.empty(start[-1], dtype=np.int32)
    for t in range(m):
        for i in range(box[t, 0], box[t, 3] + 1):
            for j in range(box[t, 1], box[t, 4] + 1):
                for k in range(box[t, 2], box[t, 5] + 1):
                    c = (i * ny + j) * nz + k
                    items[fill[c]] = t
                    fill[c] += 1
    return start, items


TABLE_COLUMNS = 17


@njit(cache=True)
def _enclosing_sphere(out, t):
    """The smallest sphere holding triangle row ``t``'s corners (0:9) → centre (9:12), radius (12), in the
    triangle's plane: the circumcentre of an acute triangle, else the middle of its longest edge (a degenerate
    triangle: the middle of its longest edge as well). The radius is the largest corner distance, rounded up."""
    # squared edge lengths opposite each corner: a2 = |bc|^2, b2 = |ca|^2, c2 = |ab|^2
    a2 = b2 = c2 = 0.0
    for ax in range(3):
        ab, bc, ca = out[t, 3 + ax] - out[t, ax], out[t, 6 + ax] - out[t, 3 + ax], out[t, ax] - out[t, 6 + ax]
        c2 += ab * ab
        a2 += bc * bc
        b2 += ca * ca
    # barycentric weights of the circumcentre: a2 (b2 + c2 - a2), ...; all positive for an acute triangle
    wa, wb, wc = a2 * (b2 + c2 - a2), b2 * (c2 + a2 - b2), c2 * (a2 + b2 - c2)
    total = wa + wb + wc
    if wa > 0.0 and wb > 0.0 and wc > 0.0 and total > 0.0:
        for ax in range(3):
            out[t, 9 + ax] = (wa * out[t, ax] + wb * out[t, 3 + ax] + wc * out[t, 6 + ax]) / total
    else:  # right, obtuse or degenerate: the longest edge's middle holds the opposite corner
        i, j = (1, 2) if a2 >= b2 and a2 >= c2 else ((2, 0) if b2 >= c2 else (0, 1))
        for ax in range(3):
            out[t, 9 + ax] = 0.5 * (out[t, 3 * i + ax] + out[t, 3 * j + ax])
    r = 0.0
    for corner in range(3):
        d = 0.0
        for ax in range(3):
            g = out[t, 3 * corner + ax] - out[t, 9 + ax]
            d += g * g
        r = max(r, d)
    out[t, 12] = math.sqrt(r) * (1.0 + 1e-9) + 1e-12


@njit(cache=True, parallel=True)
def triangle_table(v, f):
    """(m, 17) float64 rows: corners a, b, c (0:9); centre (9:12) and radius (12) of the smallest enclosing sphere;
    unit normal (13:16); half-thickness (16) of the slab around the centre's plane holding the corners.

    The normal is 0 for a degenerate triangle (then the search uses the sphere alone); the half-thickness
    absorbs the rounding of the normal, so the plane bound of :func:`_search` is a true lower bound."""
    m = f.shape[0]
    out = np.empty((m, TABLE_COLUMNS))
    for t in prange(m):
        for ax in range(3):
            out[t, ax] = v[f[t, 0], ax]
            out[t, 3 + ax] = v[f[t, 1], ax]
            out[t, 6 + ax] = v[f[t, 2], ax]
        _enclosing_sphere(out, t)
        rad = out[t, 12]
        e0x, e0y, e0z = out[t, 3] - out[t, 0], out[t, 4] - out[t, 1], out[t, 5] - out[t, 2]
        e1x, e1y, e1z = out[t, 6] - out[t, 0], out[t, 7] - out[t, 1], out[t, 8] - out[t, 2]
        nx, ny, nz = e0y * e1z - e0z * e1y, e0z * e1x - e0x * e1z, e0x * e1y - e0y * e1x
        nn = math.sqrt(nx * nx + ny * ny + nz * nz)
        w = 0.0
        if nn > 0.0:
            nx, ny, nz = nx / nn, ny / nn, nz / nn
            for corner in range(3):
                h = ((out[t, 3 * corner] - out[t, 9]) * nx + (out[t, 3 * corner + 1] - out[t, 10]) * ny
                     + (out[t, 3 * corner + 2] - out[t, 11]) * nz)
                w = max(w, abs(h))
            w = w * (1.0 + 1e-9) + 1e-12 * rad
        if nn == 0.0 or w > 1e-6 * rad:
            # (nearly) collinear: no reliable plane
            nx = ny = nz = 0.0
            w = 0.0
        out[t, 13], out[t, 14], out[t, 15], out[t, 16] = nx, ny, nz, w
    return out


@njit(cache=True, parallel=True)
def gather_spheres(table, items):
    """Rows 9:17 of ``table`` (sphere, normal, slab) for each cell entry, in the order of ``items``."""
    out = np.empty((items.shape[0], 8))
    for s in prange(items.shape[0]):
        for c in range(8):
            out[s, c] = table[items[s], 9 + c]
    return out


@njit(cache=True)
def _pruned(px, py, pz, row, root, best):
    """True when everything in ``row`` (centre, radius, unit normal, slab half-thickness) is at least
    ``sqrt(best)`` from p: dist^2 >= max(|h| - w, 0)^2 + max(rho - radius, 0)^2 with h the height over the
    plane and rho the in-plane distance from the centre (the sphere test first: it is cheaper)."""
    dx, dy, dz = px - row[0], py - row[1], pz - row[2]
    rad = row[3]
    reach = root + rad
    dd = dx * dx + dy * dy + dz * dz
    if dd >= reach * reach:
        return True
    h = dx * row[4] + dy * row[5] + dz * row[6]
    hn = abs(h) - row[7]
    h2 = hn * hn if hn > 0.0 else 0.0
    if h2 >= best:
        return True
    g = math.sqrt(max(dd - h * h, 0.0)) - rad
    return g > 0.0 and h2 + g * g >= best


@njit(cache=True)
def _tri_sqdist(px, py, pz, tab, t):
    return point_triangle_sqdist1(px, py, pz, tab[t, 0], tab[t, 1], tab[t, 2], tab[t, 3], tab[t, 4], tab[t, 5],
                                  tab[t, 6], tab[t, 7], tab[t, 8])


@njit(cache=True)
def _search(px, py, pz, best, best_t, tab, origin, cell, dims, start, items, spheres):
    """Ring search of the cells around p; returns (squared distance, triangle) improving on ``best``.

    ``spheres`` holds each cell entry's bounding sphere (centre, radius) in the order of ``items``, so the
    cheap rejection test reads memory contiguously; only survivors touch the triangle table."""
    nx, ny, nz = dims[0], dims[1], dims[2]
    root = math.sqrt(best)
    c0 = min(max(int(math.floor((px - origin[0]) / cell)), 0), nx - 1)
    c1 = min(max(int(math.floor((py - origin[1]) / cell)), 0), ny - 1)
    c2 = min(max(int(math.floor((pz - origin[2]) / cell)), 0), nz - 1)
    for r in range(max(nx, ny, nz) + 1):
        if r >= 2:
            lb = (r - 1) * cell
            if lb * lb >= best:
                break
        for i in range(max(c0 - r, 0), min(c0 + r, nx - 1) + 1):
            gx = max(origin[0] + i * cell - px, px - (origin[0] + (i + 1) * cell), 0.0)
            for j in range(max(c1 - r, 0), min(c1 + r, ny - 1) + 1):
                gy = max(origin[1] + j * cell - py, py - (origin[1] + (j + 1) * cell), 0.0)
                full = abs(i - c0) == r or abs(j - c1) == r
                kstep = 1 if (full or r == 0) else 2 * r
                for k in range(c2 - r, c2 + r + 1, kstep):
                    if k < 0 or k >= nz:
                        continue
                    gz = max(origin[2] + k * cell - pz, pz - (origin[2] + (k + 1) * cell), 0.0)
                    if gx * gx + gy * gy + gz * gz >= best:
                        continue
                    cid = (i * ny + j) * nz + k
                    for s in range(start[cid], start[cid + 1]):
                        if _pruned(px, py, pz, spheres[s], root, best):
                            continue
                        t = items[s]
                        d = _tri_sqdist(px, py, pz, tab, t)
                        if d < best:
                            best, best_t = d, t
                            root = math.sqrt(best)
    return best, best_t


QUERY_CHUNK = 512


@njit(cache=True, parallel=True)
def query_sqdist(points, upper_sq, tab, origin, cell, dims, start, items, spheres, out):
    """out[q] = min(upper_sq[q], exact squared distance from points[q] to the mesh).

    ``upper_sq`` are upper bounds (a cap, or the squared distance to a known point of the mesh);
    ``tab`` is :func:`triangle_table`. A triangle is scored exactly only when its bounding sphere is
    nearer than the best distance so far. Queries run in chunks of consecutive points (in parallel);
    inside a chunk the previous point's closest triangle gives the next one a first upper bound
    (neighbouring points have nearby closest points), which only prunes: the answer stays exact."""
    n = points.shape[0]
    for ch in prange((n + QUERY_CHUNK - 1) // QUERY_CHUNK):
        prev = -1
        for q in range(ch * QUERY_CHUNK, min(n, (ch + 1) * QUERY_CHUNK)):
            px, py, pz = points[q, 0], points[q, 1], points[q, 2]
            best = upper_sq[q]
            if prev >= 0:
                best = min(best, _tri_sqdist(px, py, pz, tab, prev))
            best, t = _search(px, py, pz, best, -1, tab, origin, cell, dims, start, items, spheres)
            if t >= 0:
                prev = t
            out[q] = best


@njit(cache=True)
def _edge_sign(xa, ya, xb, yb, px, py):
    """Exact side of p w.r.t. the directed edge a->b; ties broken as for p + (eps, eps^2)."""
    dx, dy = xb - xa, yb - ya
    e = dx * (py - ya) - dy * (px - xa)
    if e > 0:
        return 1
    if e < 0:
        return -1
    if dy != 0:
        return -1 if dy > 0 else 1
    return 1 if dx > 0 else (-1 if dx < 0 else 0)


WINDING_STRIPE = 4  # columns i of the grid are dealt to the parallel tasks in stripes of this width


@njit(cache=True, parallel=True)
def winding_crossings(xy, z, f, s, ni, nj, nk, n_tasks):
    """int16 (ni, nj, nk + 1): signed crossings of each triangle with each (i, j) column, at the
    first voxel above the crossing (``xy`` int64 fixed-point vertices with scale ``s``, ``z`` the
    third voxel coordinate).

    ``n_tasks`` parallel tasks own stripes of ``WINDING_STRIPE`` columns i (every task visits every triangle
    and adds the crossings in its own stripes), so no two tasks write the same cell and the integer sums do
    not depend on the number of tasks."""
    out = np.zeros((ni, nj, nk + 1), dtype=np.int16)
    n_tasks = max(1, n_tasks)
    for task in prange(n_tasks):
        for t in range(f.shape[0]):
            a, b, c = f[t, 0], f[t, 1], f[t, 2]
            xa, ya, xb, yb, xc, yc = xy[a, 0], xy[a, 1], xy[b, 0], xy[b, 1], xy[c, 0], xy[c, 1]
            lx, hx = min(xa, xb, xc), max(xa, xb, xc)
            i0, i1 = max(-((-lx) // s), 0), min(hx // s, ni - 1)
            if i0 > i1:
                continue
            ly, hy = min(ya, yb, yc), max(ya, yb, yc)
            j0, j1 = max(-((-ly) // s), 0), min(hy // s, nj - 1)
            for i in range(i0, i1 + 1):
                if (i // WINDING_STRIPE) % n_tasks != task:
                    continue
                px = i * s
                for j in range(j0, j1 + 1):
                    py = j * s
                    s1 = _edge_sign(xa, ya, xb, yb, px, py)
                    s2 = _edge_sign(xb, yb, xc, yc, px, py)
                    s3 = _edge_sign(xc, yc, xa, ya, px, py)
                    if s1 > 0 and s2 > 0 and s3 > 0:
                        cr = 1
                    elif s1 < 0 and s2 < 0 and s3 < 0:
                        cr = -1
                    else:
                        continue
                    fx, fy = float(px), float(py)
                    wa = (float(xc) - xb) * (fy - yb) - (float(yc) - yb) * (fx - xb)
                    wb = (float(xa) - xc) * (fy - yc) - (float(ya) - yc) * (fx - xc)
                    wc = (float(xb) - xa) * (fy - ya) - (float(yb) - ya) * (fx - xa)
                    ws = wa + wb + wc
                    if ws == 0.0:
                        ws = 1.0
                    depth = (wa * z[a] + wb * z[b] + wc * z[c]) / ws
                    kb = min(max(int(math.floor(depth)) + 1, 0), nk)
                    out[i, j, kb] += cr
    return out


@njit(cache=True, parallel=True)
def winding_mask(crossings, nk):
    """bool (ni, nj, nk): a non-zero running sum of ``crossings`` along each column (the winding number,
    accumulated in 16 bits like ``np.cumsum(..., dtype=np.int16)``), columns in parallel."""
    ni, nj = crossings.shape[0], crossings.shape[1]
    out = np.empty((ni, nj, nk), dtype=np.bool_)
    for i in prange(ni):
        for j in range(nj):
            acc = 0
            for k in range(nk):
                acc += crossings[i, j, k]
                out[i, j, k] = (acc & 0xFFFF) != 0
    return out


@njit(cache=True, parallel=True)
def distance_seeds_free(inside, sq, near):
    """bool grid, False at the seeds of the distance transform: voxels with a 6-neighbour on the other side
    of the surface (``inside``), and voxels whose float32 distance ``sqrt(sq)`` is at most ``near``."""
    ni, nj, nk = inside.shape
    free = np.empty((ni, nj, nk), dtype=np.bool_)
    for i in prange(ni):
        for j in range(nj):
            for k in range(nk):
                c = inside[i, j, k]
                seed = ((i > 0 and inside[i - 1, j, k] != c) or (i + 1 < ni and inside[i + 1, j, k] != c)
                        or (j > 0 and inside[i, j - 1, k] != c) or (j + 1 < nj and inside[i, j + 1, k] != c)
                        or (k > 0 and inside[i, j, k - 1] != c) or (k + 1 < nk and inside[i, j, k + 1] != c))
                if not seed:
                    seed = np.sqrt(sq[i, j, k]) <= near
                free[i, j, k] = not seed
    return free


@njit(cache=True, parallel=True)
def finish_sdf(dist, sq, inside, offset):
    """In place: ``dist`` (float32, the distance transform) becomes the signed distance: ``sqrt(sq)`` where
    ``sq`` is finite (the exact band), else ``dist + offset``; negated where ``inside``."""
    ni, nj, nk = dist.shape
    for i in prange(ni):
        for j in range(nj):
            for k in range(nk):
                d = sq[i, j, k]
                x = np.sqrt(d) if d < np.inf else dist[i, j, k] + offset
                dist[i, j, k] = -x if inside[i, j, k] else x


@njit(cache=True)
def _lower_envelope(g, n, w, h, v, z):
    """One line of an exact squared Euclidean distance transform (Felzenszwalb & Huttenlocher): ``h[q]`` =
    min over p of ``((q - p) w)^2 + g[p]`` for the samples ``g[:n]`` (``inf`` entries take no part; all
    ``inf`` gives ``inf``). ``v`` (n) and ``z`` (n + 1) are work buffers."""
    k = -1
    for q in range(n):
        fq = g[q]
        if fq == np.inf:
            continue
        xq = q * w
        if k < 0:
            k = 0
            v[0] = q
            z[0], z[1] = -np.inf, np.inf
            continue
        while True:
            xp = v[k] * w
            s = ((fq + xq * xq) - (g[v[k]] + xp * xp)) / (2.0 * (xq - xp))
            if s <= z[k]:
                k -= 1
            else:
                break
        k += 1
        v[k] = q
        z[k], z[k + 1] = s, np.inf
    if k < 0:
        for q in range(n):
            h[q] = np.inf
        return
    k = 0
    for q in range(n):
        xq = q * w
        while z[k + 1] < xq:
            k += 1
        dx = xq - v[k] * w
        h[q] = dx * dx + g[v[k]]


@njit(cache=True, parallel=True)
def seed_distance(free, wi, wj, wk):
    """float32 grid: Euclidean distance (voxel spacing ``wi, wj, wk`` along the axes) from each voxel centre to
    the nearest voxel where ``free`` is False (a seed); exact, like ``edt.edt(free, anisotropy=(wi, wj, wk))``
    up to float32 rounding. Separable passes along k, j, i (in parallel over the other axes); a line or plane
    without a seed is skipped (it stays ``inf`` until a later pass)."""
    ni, nj, nk = free.shape
    out = np.empty((ni, nj, nk), dtype=np.float32)
    seeded = np.zeros(ni, dtype=np.bool_)  # plane i holds a seed
    # pass 1, along k: squared distance to the nearest seed of the same column (two sweeps)
    for i in prange(ni):
        gap = np.empty(nk, dtype=np.int64)
        for j in range(nj):
            last = -1
            for k in range(nk):
                if not free[i, j, k]:
                    last = k
                gap[k] = k - last if last >= 0 else -1
            if last < 0:
                out[i, j, :] = np.inf
                continue
            seeded[i] = True
            last = -1
            for k in range(nk - 1, -1, -1):
                if not free[i, j, k]:
                    last = k
                d = gap[k]
                if last >= 0 and (d < 0 or last - k < d):
                    d = last - k
                x = d * wk
                out[i, j, k] = np.float32(x * x)
    # pass 2, along j, in the planes that hold a seed (elsewhere everything is still inf)
    for i in prange(ni):
        if not seeded[i]:
            continue
        g = np.empty(nj)
        h = np.empty(nj)
        v = np.empty(nj, dtype=np.int64)
        z = np.empty(nj + 1)
        for k in range(nk):
            for j in range(nj):
                g[j] = out[i, j, k]
            _lower_envelope(g, nj, wj, h, v, z)
            for j in range(nj):
                out[i, j, k] = np.float32(h[j])
    # pass 3, along i (a line is finite exactly in the seeded planes), then the square root
    for j in prange(nj):
        g = np.empty(ni)
        h = np.empty(ni)
        v = np.empty(ni, dtype=np.int64)
        z = np.empty(ni + 1)
        for k in range(nk):
            for i in range(ni):
                g[i] = out[i, j, k]
            _lower_envelope(g, ni, wi, h, v, z)
            for i in range(ni):
                out[i, j, k] = np.sqrt(np.float32(h[i]))
    return out
