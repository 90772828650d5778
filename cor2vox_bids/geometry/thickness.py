"""Cortical thickness with FreeSurfer's definition, from exact closest points on triangles."""

from __future__ import annotations

import numpy as np

from ..errors import SurfaceError
from ._closest import TriangleIndex, build_index, mesh_distance


def closest_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray,
                     max_dist: float = np.inf) -> np.ndarray:
    """Exact distance (mm) from each point to the closest point of the mesh (float64 (k,)).

    Distances at or above ``max_dist`` are returned as ``max_dist``.
    """
    return mesh_distance(build_index(vertices, faces), np.asarray(points, dtype=np.float64), max_dist)


def cortical_thickness(
    white_vertices: np.ndarray,
    white_faces: np.ndarray,
    pial_vertices: np.ndarray,
    pial_faces: np.ndarray,
    cap: float = 5.0,
    *,
    white_index: TriangleIndex | None = None,
) -> np.ndarray:
    """Per-vertex cortical thickness in mm (float32 (n,)), FreeSurfer definition.

    Mean of the distance from each white vertex to the closest *point* of the pial mesh and
    from the corresponding pial vertex to the closest point of the white mesh, capped at ``cap``.
    ``white_index``: the white mesh's index when the caller already has it (several pial surfaces against
    one white surface); the result is the same.
    """
    wv = np.asarray(white_vertices, dtype=np.float64)
    pv = np.asarray(pial_vertices, dtype=np.float64)
    if wv.shape != pv.shape or wv.ndim != 2 or wv.shape[1] != 3:
        raise SurfaceError(
            f"white and pial surfaces must have the same vertices (n, 3); got {wv.shape} and {pv.shape}"
        )
    limit = 2.0 * float(cap)  # beyond this one direction alone makes the mean reach the cap
    # the corresponding vertex lies on the other mesh: its distance bounds the search from above
    w_to_p = mesh_distance(build_index(pv, pial_faces), wv, limit, on_mesh=pv)
    windex = white_index if white_index is not None else build_index(wv, white_faces)
    p_to_w = mesh_distance(windex, pv, limit, on_mesh=wv)
    return np.minimum(0.5 * (w_to_p + p_to_w), cap).astype(np.float32)
