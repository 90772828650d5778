"""Mesh helpers of the shape model (numpy): normals, rigid alignment, winding numbers.

Intersection tests are those of :mod:`cor2vox_bids.geometry.intersections`.

* ``vertex_normals``: area-weighted, unit, pointing outward for FreeSurfer's counter-clockwise winding.
* ``rigid_align``: the rotation and translation (no scaling) that best map points onto a reference
  (Kabsch / orthogonal Procrustes, reflections excluded).
* ``winding_numbers``: generalised winding number of a closed mesh at query points (1 inside, 0 outside).
"""

from __future__ import annotations

import numpy as np


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unnormalised face normals (length = twice the triangle area)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh (positive when its faces are wound outward)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals, oriented outward (flipped if the mesh is wound inward)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = face_normals(v, f)
    n = np.zeros_like(v)
    for c in range(3):
        np.add.at(n, f[:, c], fn)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)
    return -n if signed_volume(v, f) < 0 else n


def rigid_align(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation ``R`` (3x3, det +1) and translation ``t`` minimising ``sum |R p + t - r|^2``."""
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    pc, rc = p.mean(axis=0), r.mean(axis=0)
    u, _, vt = np.linalg.svd((p - pc).T @ (r - rc))
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, rc - rot @ pc


def winding_numbers(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Generalised winding number of a closed, outward-wound mesh at each point (solid angles / 4 pi)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    out = np.empty(len(pts))
    tri = v[f]  # (m, 3, 3)
    for s in range(0, len(pts), chunk):
        d = tri[None, :, :, :] - pts[s : s + chunk, None, None, :]  # (c, m, 3, 3)
        a, b, c = d[:, :, 0], d[:, :, 1], d[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = np.einsum("...i,...i->...", a, np.cross(b, c))
        den = (
            la * lb * lc
            + np.einsum("...i,...i->...", a, b) * lc
            + np.einsum("...i,...i->...", b, c) * la
            + np.einsum("...i,...i->...", c, a) * lb
        )
        out[s : s + chunk] = 2.0 * np.arctan2(num, den).sum(axis=1) / (4.0 * np.pi)
    return out
