"""Compile (or load) every geometry kernel once: ``python -m cor2vox_bids.geometry.warmup``.

Container images run it at build time with ``NUMBA_CACHE_DIR`` pointing into the image, so that no run compiles
(see ``_cache.py``); a pip install can run it once after installing. Prints the cache folder and the time.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def warm_up() -> float:
    """Seconds to run the sign, band, closest-point and thickness kernels on a small closed mesh."""
    from scipy.spatial import ConvexHull

    from . import ModelGrid, cortical_thickness, signed_distance

    t0 = time.perf_counter()
    z = np.linspace(-1.0, 1.0, 5)
    v = np.array([[x, y, w] for x in z for y in z for w in z])
    v = 10.0 * v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-9)
    v = np.unique(np.round(v, 12), axis=0)
    f = ConvexHull(v).simplices.astype(np.int64)
    grid = ModelGrid.around(v, 16, 2.0)
    signed_distance(v, f, grid.affine, grid.shape)
    cortical_thickness(v, f, 1.1 * v, f)
    return time.perf_counter() - t0


def main() -> int:
    from . import _cache

    seconds = warm_up()
    where = _cache.CACHE_DIR if _cache.CACHE_DIR is not None else "nowhere (no writable folder)"
    print(f"cor2vox-bids geometry kernels ready in {seconds:.1f} s; cache: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
