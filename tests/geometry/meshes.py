"""Small synthetic meshes with known geometry for the geometry tests (outward-wound faces)."""

from __future__ import annotations

import numpy as np


def icosphere(subdivisions: int = 3, radius: float = 1.0, center=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Icosahedron subdivided ``subdivisions`` times, vertices projected on the sphere."""
    t = (1.0 + 5**0.5) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        uniq, inv = np.unique(edges, axis=0, return_inverse=True)
        mid = v[uniq].mean(axis=1)
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = inv.reshape(3, -1).T + len(v)
        v = np.concatenate([v, mid])
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
        f = np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1),
                            np.stack([c, ca, bc], 1), np.stack([ab, bc, ca], 1)])
    return v * radius + np.asarray(center, dtype=np.float64), f


def ellipsoid(axes=(3.0, 2.0, 1.5), subdivisions: int = 3, center=(0.0, 0.0, 0.0)):
    """Icosphere scaled along x, y, z by ``axes``."""
    v, f = icosphere(subdivisions)
    return v * np.asarray(axes, dtype=np.float64) + np.asarray(center, dtype=np.float64), f


def torus(major: float = 3.0, minor: float = 1.0, n_major: int = 48, n_minor: int = 24, center=(0.0, 0.0, 0.0)):
    """Torus around the z axis, outward-wound quads split in two triangles."""
    u = np.arange(n_major) * 2 * np.pi / n_major
    w = np.arange(n_minor) * 2 * np.pi / n_minor
    uu, ww = np.meshgrid(u, w, indexing="ij")
    x = (major + minor * np.cos(ww)) * np.cos(uu)
    y = (major + minor * np.cos(ww)) * np.sin(uu)
    z = minor * np.sin(ww)
    v = np.stack([x, y, z], -1).reshape(-1, 3) + np.asarray(center, dtype=np.float64)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    a = i * n_minor + j
    b = ((i + 1) % n_major) * n_minor + j
    c = ((i + 1) % n_major) * n_minor + (j + 1) % n_minor
    d = i * n_minor + (j + 1) % n_minor
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f


def combine(*meshes):
    """Concatenate meshes into one vertex/face array pair."""
    vs, fs, off = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + off)
        off += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def shell(r_out: float, r_in: float, subdivisions: int = 3, center=(0.0, 0.0, 0.0)):
    """Hollow ball: outer sphere outward-wound, inner sphere wound inward (a closed solid)."""
    vo, fo = icosphere(subdivisions, r_out, center)
    vi, fi = icosphere(subdivisions, r_in, center)
    return combine((vo, fo), (vi, fi[:, ::-1]))


def brute_force_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Reference exact point-mesh distance: the vectorised numpy point-triangle distance against every
    triangle, minimum per point (slow, for small meshes only; independent of the compiled kernels)."""
    from cor2vox_bids.geometry._closest import _triangle_table, point_triangle_sqdist

    tab = _triangle_table(vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]])
    out = np.empty(len(points))
    for k, p in enumerate(points):
        out[k] = np.sqrt(point_triangle_sqdist(np.broadcast_to(p, (len(tab), 3)), tab).min())
    return out


def write_subject(root, c_ras=(30.0, -40.0, 25.0), shift_l=(-32.0, 0.0, 0.0), shift_r=(32.0, 0.0, 0.0),
                  subdivisions: int = 2, write_orig: bool = True):
    """A tiny FreeSurfer-like subject: spherical white/pial surfaces in tkr RAS, a 96^3 2 mm
    ``mri/orig.mgz`` (and ``T1.mgz``) whose c_ras is ``c_ras``, a bright head ball of radius 70 mm
    around the volume centre, ``?h.thickness`` and a two-region ``?h.aparc.annot``.

    Returns (subject_dir, t1_image, c_ras)."""
    from pathlib import Path

    import nibabel as nib

    root = Path(root)
    for d in ("surf", "mri", "label"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shape = (96, 96, 96)
    c_ras = np.asarray(c_ras, dtype=np.float64)
    aff = np.eye(4)
    aff[:3, :3] = [[-2.0, 0, 0], [0, 0, 2.0], [0, -2.0, 0]]  # LIA, as FreeSurfer's conformed volumes
    aff[:3, 3] = c_ras - aff[:3, :3] @ (np.asarray(shape) / 2.0)
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    data = np.where(np.linalg.norm(world - c_ras, axis=1) < 70.0, 100.0, 0.0).reshape(shape).astype(np.float32)
    img = nib.MGHImage(data, aff)
    if write_orig:
        nib.save(img, str(root / "mri" / "orig.mgz"))
    nib.save(img, str(root / "mri" / "T1.mgz"))
    for hemi, shift in (("lh", shift_l), ("rh", shift_r)):
        v, f = icosphere(subdivisions)
        centre = np.asarray(shift, dtype=np.float64)  # tkr RAS: relative to the volume centre
        nib.freesurfer.write_geometry(str(root / "surf" / f"{hemi}.white"), v * 20.0 + centre, f.astype(np.int32))
        nib.freesurfer.write_geometry(str(root / "surf" / f"{hemi}.pial"), v * 24.0 + centre, f.astype(np.int32))
        nib.freesurfer.write_morph_data(str(root / "surf" / f"{hemi}.thickness"), np.full(len(v), 4.0, np.float32))
        labels = (v[:, 2] > 0).astype(np.int32)  # 0 = unknown (z <= 0), 1 = precentral
        ctab = np.array([[25, 5, 25, 0, 1639705], [60, 20, 220, 0, 14423100]], dtype=np.int32)
        nib.freesurfer.write_annot(str(root / "label" / f"{hemi}.aparc.annot"), labels, ctab,
                                   [b"unknown", b"precentral"], fill_ctab=True)
    return root, img, c_ras


# ---- meshes that look like real reconstructions, and an exact oracle (for the band oracle tests) ----------------

def exact_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, chunk: int = 400_000) -> np.ndarray:
    """Exact distance from ``points`` to the triangles ``faces`` (numpy only, independent of the package).

    The nearest referenced vertex gives an upper bound ``U`` per point; every triangle whose bounding sphere
    (centroid, farthest corner) comes within ``U`` is scored by projecting the point on its plane (inside when the
    barycentric coordinates from the 2x2 Gram system are >= 0; collinear triangles have no inside) or else the
    nearest of its three edges. A different algorithm from the kernels' Voronoi-region test."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    ub = cKDTree(v[np.unique(f)]).query(points)[0]
    corners = v[f]
    centre = corners.mean(axis=1)
    radius = np.sqrt(((corners - centre[:, None]) ** 2).sum(-1)).max(axis=1)
    lists = cKDTree(centre).query_ball_point(points, ub + radius.max() * (1 + 1e-9) + 1e-9)
    pi = np.repeat(np.arange(len(points)), [len(x) for x in lists])
    ti = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
    best = np.full(len(points), np.inf)
    for s in range(0, len(pi), chunk):
        p, t = pi[s:s + chunk], ti[s:s + chunk]
        np.minimum.at(best, p, _triangle_sqdist(points[p], corners[t, 0], corners[t, 1], corners[t, 2]))
    return np.sqrt(best)


def _segment_sqdist(p, a, b):
    d = b - a
    ll = np.einsum("ij,ij->i", d, d)
    t = np.clip(np.einsum("ij,ij->i", p - a, d) / np.where(ll > 0, ll, 1.0), 0.0, 1.0)
    e = p - a - t[:, None] * d
    return np.einsum("ij,ij->i", e, e)


def _triangle_sqdist(p, a, b, c):
    e0, e1, w = b - a, c - a, p - a
    n = np.cross(e0, e1)
    nn = np.einsum("ij,ij->i", n, n)
    g00, g01, g11 = (np.einsum("ij,ij->i", x, y) for x, y in ((e0, e0), (e0, e1), (e1, e1)))
    r0, r1 = np.einsum("ij,ij->i", w, e0), np.einsum("ij,ij->i", w, e1)
    flat = nn > 1e-20 * g00 * g11  # not collinear
    det = np.where(flat, g00 * g11 - g01 * g01, 1.0)
    s, t = (g11 * r0 - g01 * r1) / det, (g00 * r1 - g01 * r0) / det
    inside = flat & (s >= 0) & (t >= 0) & (s + t <= 1)
    h = np.einsum("ij,ij->i", w, n)
    edges = np.minimum(np.minimum(_segment_sqdist(p, a, b), _segment_sqdist(p, b, c)), _segment_sqdist(p, c, a))
    return np.where(inside, h * h / np.where(flat, nn, 1.0), edges)


def subdivide(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint subdivision (each triangle into four; new vertices on the straight edges)."""
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    m = inv.reshape(3, -1).T + len(v)
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
    return (np.concatenate([v, v[uniq].mean(axis=1)]),
            np.concatenate([np.stack([a, ab, ca], 1), np.stack([b, bc, ab], 1), np.stack([c, ca, bc], 1),
                            np.stack([ab, bc, ca], 1)]))


def smooth_warp(v: np.ndarray, rng: np.random.Generator, amplitude: float = 6.0, width: float = 25.0,
                n: int = 12) -> np.ndarray:
    """Smooth random deformation (sum of Gaussian bumps), like the demo's pseudo-participants."""
    centres = v[rng.integers(len(v), size=n)]
    out = v.copy()
    for c in centres:
        w = np.exp(-((v - c) ** 2).sum(1) / (2 * width**2))
        out += w[:, None] * rng.normal(scale=amplitude / 2, size=3)
    return out


def split_faces(v, f, rng, fraction=0.2, depth=2):
    """Locally refined: ``fraction`` of the faces split 1-to-3 at a random interior point, ``depth`` times
    (vertices of high valence, slivers and needles where splits repeat)."""
    for _ in range(depth):
        pick = rng.random(len(f)) < fraction
        t = f[pick]
        w = rng.dirichlet(np.full(3, 0.7), size=len(t))
        new = np.einsum("ti,tij->tj", w, v[t])
        idx = len(v) + np.arange(len(t))
        v = np.concatenate([v, new])
        f = np.concatenate([f[~pick], np.stack([t[:, 0], t[:, 1], idx], 1), np.stack([t[:, 1], t[:, 2], idx], 1),
                            np.stack([t[:, 2], t[:, 0], idx], 1)])
    return v, f


def collapse_edges(v, f, rng, fraction=0.3):
    """Decimated: a random set of disjoint edges collapsed to their midpoints, degenerate faces dropped
    (uneven triangles, vertices of high valence)."""
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = e[rng.permutation(len(e))][: int(fraction * len(e))]
    used = np.zeros(len(v), dtype=bool)
    target = np.arange(len(v))
    v = v.copy()
    for a, b in e:
        if used[a] or used[b]:
            continue
        used[a] = used[b] = True
        v[a] = 0.5 * (v[a] + v[b])
        target[b] = a
    f = target[f]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    return v, f[keep]


def slivers(v, f, rng, fraction=0.1, eps=1e-3):
    """Vertices moved to within ``eps`` of the midpoint of an opposite edge (angles near 180 degrees)."""
    v = v.copy()
    for t in rng.choice(len(f), int(fraction * len(v)), replace=False):
        a, b, c = f[t]
        v[c] = 0.5 * (v[a] + v[b]) + rng.normal(scale=eps, size=3)
    return v, f


def needles(v, f, rng, fraction=0.1, eps=1e-3):
    """Edges shrunk to about ``eps`` (one end moved next to the other)."""
    v = v.copy()
    for t in rng.choice(len(f), int(fraction * len(v)), replace=False):
        a, b = f[t, 0], f[t, 1]
        v[b] = v[a] + rng.normal(scale=eps, size=3)
    return v, f


def creases(v, rng, period=4.0, depth=1.5):
    """Sharp folds: a sawtooth displacement along a random direction (creases where it turns)."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    u = rng.normal(size=3)
    u -= (u @ d) * d
    u /= np.linalg.norm(u)
    s = (v @ u) / period
    saw = depth * 2 * np.abs(s - np.floor(s) - 0.5)
    return v + saw[:, None] * d
