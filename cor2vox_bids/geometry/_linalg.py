"""Small linear-algebra helpers (internal).

``points @ matrix.T`` on tall (n, 3) arrays goes through BLAS, which can be very slow on busy
machines with small matrices; ``einsum`` loops in C without threads and is predictable.
"""

from __future__ import annotations

import numpy as np


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine (or a 3x3 linear map) to points (..., 3)."""
    m = np.asarray(matrix, dtype=np.float64)
    out = np.einsum("...j,ij->...i", np.asarray(points, dtype=np.float64), m[:3, :3])
    if m.shape == (4, 4):
        out += m[:3, 3]
    return out
