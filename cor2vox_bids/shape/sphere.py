"""Vertex correspondence through registered spheres (``?h.sphere.reg``): barycentric resampling.

A participant's ``sphere.reg`` places each of its vertices on a sphere aligned with the template's. A
template vertex ``q`` (a point on that sphere) falls inside one participant triangle ``(a, b, c)``: the ray
from the sphere's centre through ``q`` crosses the triangle's plane at ``w_a a + w_b b + w_c c`` with
``w >= 0`` and ``sum(w) = 1`` (gnomonic barycentric coordinates). Any per-vertex quantity of the participant
(white and pial coordinates, thickness) is then carried to the template vertex as ``w_a f(a) + w_b f(b) +
w_c f(c)``. Where ``q`` coincides with a participant vertex the weights are exactly one-hot, so a mesh nested
in another (icosahedral subdivision: fsaverage5's vertices are the first 10,242 of fsaverage's) is
reproduced exactly.

Candidate triangles come from a ``scipy.spatial.cKDTree`` of triangle centroids on the unit sphere; numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

_CANDIDATES = (8, 32, 128)  # nearest triangle centroids tried, in rounds, for points not yet placed
_INSIDE_TOL = 1e-9  # a weight above -tol counts as inside (points on shared edges)


@dataclass(frozen=True)
class Resampling:
    """Barycentric resampling from a source mesh onto target points.

    ``vertices`` (p, 3) int: source vertex indices of the triangle holding each target point;
    ``weights`` (p, 3) float64: their barycentric weights (non-negative, rows sum to 1);
    ``n_fallback``: target points found in no triangle (broken sphere) and given the closest candidate's
    clipped weights instead.
    """

    vertices: np.ndarray
    weights: np.ndarray
    n_source: int
    n_fallback: int = 0

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Carry per-vertex ``values`` ((n_source,) or (n_source, k)) to the target points."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape[0] != self.n_source:
            raise ValueError(f"values have {values.shape[0]} rows, the source mesh has {self.n_source} vertices")
        picked = values[self.vertices]  # (p, 3) or (p, 3, k)
        if picked.ndim == 2:
            return np.einsum("pj,pj->p", picked, self.weights)
        return np.einsum("pjk,pj->pk", picked, self.weights)


def _unit(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(points)):
        raise ValueError("sphere vertices must be finite and away from the centre")
    return points / norms


def _inverse_frames(corners: np.ndarray) -> np.ndarray:
    """Per triangle, the inverse of the 3x3 matrix whose columns are its corners (NaN when singular)."""
    mats = np.transpose(corners, (0, 2, 1))  # columns a, b, c
    det = np.linalg.det(mats)
    scale = np.prod(np.linalg.norm(corners, axis=2), axis=1)
    ok = np.abs(det) > 1e-12 * scale
    inv = np.full_like(mats, np.nan)
    inv[ok] = np.linalg.inv(mats[ok])
    return inv


def sphere_resampling(src_sphere: np.ndarray, src_faces: np.ndarray, targets: np.ndarray) -> Resampling:
    """Barycentric weights that carry values from the source mesh (``src_sphere``, ``src_faces``) to
    ``targets`` (points on the same sphere, any radius: both are projected to the unit sphere)."""
    src = _unit(src_sphere)
    faces = np.asarray(src_faces, dtype=np.int64)
    tgt = _unit(targets)
    corners = src[faces]  # (m, 3, 3)
    inv = _inverse_frames(corners)
    centroids = corners.mean(axis=1)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True).clip(1e-300)
    tree = cKDTree(centroids)
    p = len(tgt)
    tri = np.full(p, -1, dtype=np.int64)
    weights = np.zeros((p, 3))
    todo = np.arange(p)
    best_tri = np.zeros(p, dtype=np.int64)
    best_w = np.full((p, 3), -np.inf)
    for k in _CANDIDATES:
        if len(todo) == 0:
            break
        k_eff = min(k, len(faces))
        _, cand = tree.query(tgt[todo], k=k_eff)
        cand = cand.reshape(len(todo), k_eff)
        raw = np.einsum("pkij,pj->pki", inv[cand], tgt[todo])  # (t, k, 3); ray hits s * sum(raw) = 1
        total = raw.sum(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(total > 0, raw / total, -np.inf)
        w = np.nan_to_num(w, nan=-np.inf)
        worst = w.min(axis=2)  # (t, k)
        inside = worst >= -_INSIDE_TOL
        has = inside.any(axis=1)
        pick = np.argmax(inside, axis=1)
        rows = np.nonzero(has)[0]
        tri[todo[rows]] = cand[rows, pick[rows]]
        weights[todo[rows]] = w[rows, pick[rows]]
        # remember the least-outside candidate for points that are never placed
        near = np.argmax(worst, axis=1)
        better = worst[np.arange(len(todo)), near] > best_w[todo].min(axis=1)
        upd = todo[better]
        best_tri[upd] = cand[better, near[better]]
        best_w[upd] = w[better, near[better]]
        todo = todo[~has]
    n_fallback = len(todo)
    if n_fallback:
        w = np.clip(np.nan_to_num(best_w[todo], neginf=0.0), 0.0, None)
        w[w.sum(axis=1) == 0] = 1.0
        weights[todo] = w / w.sum(axis=1, keepdims=True)
        tri[todo] = best_tri[todo]
    weights = np.clip(weights, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return Resampling(faces[tri], weights, len(src), n_fallback)


def shares_mesh(
    src_sphere: np.ndarray, src_faces: np.ndarray, tpl_sphere: np.ndarray, tpl_faces: np.ndarray, atol_deg: float = 1e-3
) -> bool:
    """True when the source mesh is the template's mesh (same faces, sphere vertices within ``atol_deg``)."""
    if np.shape(src_faces) != np.shape(tpl_faces) or np.shape(src_sphere) != np.shape(tpl_sphere):
        return False
    if not np.array_equal(np.asarray(src_faces), np.asarray(tpl_faces)):
        return False
    cosang = np.einsum("ij,ij->i", _unit(src_sphere), _unit(tpl_sphere)).clip(-1.0, 1.0)
    return bool(np.degrees(np.arccos(cosang)).max() <= atol_deg)
