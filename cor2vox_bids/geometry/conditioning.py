"""Conditioning maps of the diffusion model, on the model grid, both hemispheres combined.

Maps (float32 arrays of ``grid.shape``; distances in mm, negative inside):

* ``sdf_pial``, ``sdf_white``: signed distance to the pial / white surface. Per-hemisphere SDFs
  are combined with ``min`` (the union of the hemispheres' solids).
* ``sdf_cortex``: where both SDFs are negative (inside white matter) ``max(pial, white)``; where
  both are non-negative (outside the pial surface) ``min(pial, white)``; in the ribbon ``0``.
* ``ribbon``: 1.0 where ``sign(sdf_pial) != sign(sdf_white)`` (i.e. inside pial but outside
  white: the cortical grey matter), else 0.0. Signs compare ``sdf < 0``.
* ``edges``: soft rasterisation of both surface sheets,
  ``exp(-d**2 / (2 * sigma**2))`` with ``d = min(|sdf_white|, |sdf_pial|)`` the unsigned distance
  (mm) from the voxel centre to the nearest white or pial surface and ``sigma`` half the voxel
  spacing (mean over axes). Values in (0, 1]; 1 on a surface, about 0.61 half a voxel away,
  below 1e-4 beyond 2.2 voxels. The "edges" are the tissue boundaries (GM/WM and GM/CSF), not
  the triangle wireframe, so the map does not depend on the tessellation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .grid import ModelGrid
from .sdf import signed_distance
from .surfaces import Hemisphere

MAP_NAMES = ("sdf_pial", "sdf_white", "sdf_cortex", "ribbon", "edges")


def cortex_sdf(sdf_pial: np.ndarray, sdf_white: np.ndarray) -> np.ndarray:
    """Cortex SDF from pial and white SDFs (both negative -> max, both positive -> min, ribbon -> 0)."""
    in_p, in_w = sdf_pial < 0, sdf_white < 0
    out = np.zeros(np.broadcast(sdf_pial, sdf_white).shape, dtype=np.float32)
    both_in = in_p & in_w
    both_out = ~in_p & ~in_w
    out[both_in] = np.maximum(sdf_pial, sdf_white)[both_in]
    out[both_out] = np.minimum(sdf_pial, sdf_white)[both_out]
    return out


def ribbon_mask(sdf_pial: np.ndarray, sdf_white: np.ndarray) -> np.ndarray:
    """1.0 where the signs of the pial and white SDFs differ, else 0.0 (float32)."""
    return ((sdf_pial < 0) != (sdf_white < 0)).astype(np.float32)


def edge_map(sdf_pial: np.ndarray, sdf_white: np.ndarray, spacing: float) -> np.ndarray:
    """``exp(-d^2 / (2 sigma^2))``, ``d`` the distance to the nearest surface, ``sigma = spacing / 2``."""
    d = np.minimum(np.abs(sdf_pial), np.abs(sdf_white)).astype(np.float32)
    sigma = 0.5 * float(spacing)
    return np.exp(-(d * d) / np.float32(2.0 * sigma * sigma)).astype(np.float32)


def conditioning_maps(hemispheres: Sequence[Hemisphere], grid: ModelGrid, band: float = 3) -> dict[str, np.ndarray]:
    """All conditioning maps of a participant on ``grid`` (see the module docstring)."""
    if len(hemispheres) == 0:
        raise ValueError("conditioning_maps needs at least one hemisphere")
    pial = white = None
    for hemi in hemispheres:
        sp = signed_distance(hemi.pial.vertices, hemi.pial.faces, grid.affine, grid.shape, band)
        sw = signed_distance(hemi.white.vertices, hemi.white.faces, grid.affine, grid.shape, band)
        pial = sp if pial is None else np.minimum(pial, sp)
        white = sw if white is None else np.minimum(white, sw)
    return {
        "sdf_pial": pial,
        "sdf_white": white,
        "sdf_cortex": cortex_sdf(pial, white),
        "ribbon": ribbon_mask(pial, white),
        "edges": edge_map(pial, white, float(np.mean(grid.spacing))),
    }
