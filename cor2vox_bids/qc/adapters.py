"""Thin adapters from ``cor2vox_bids.geometry.Hemisphere`` objects (duck-typed) to the array-level QC functions."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .regions import Row, region_rows
from .thickness import image_thickness

__all__ = ["hemisphere_image_thickness", "hemisphere_surface_thickness", "hemisphere_rows"]


def hemisphere_image_thickness(image: NDArray, affine: NDArray, hemisphere: Any, **kwargs: Any) -> NDArray:
    """:func:`image_thickness` for a hemisphere with ``.white``/``.pial`` surfaces (``.vertices``, ``.faces``)."""
    white, pial = hemisphere.white, hemisphere.pial
    return image_thickness(image, affine, white.vertices, white.faces, pial.vertices, pial.faces, **kwargs)


def hemisphere_surface_thickness(hemisphere: Any) -> NDArray:
    """The hemisphere's ``.thickness`` or, when absent, ``geometry.cortical_thickness`` of its surfaces."""
    if getattr(hemisphere, "thickness", None) is not None:
        return np.asarray(hemisphere.thickness, dtype=np.float64)
    from cor2vox_bids.geometry import cortical_thickness  # imported late: optional dependency of the adapters

    w, p = hemisphere.white, hemisphere.pial
    return np.asarray(cortical_thickness(w.vertices, w.faces, p.vertices, p.faces), dtype=np.float64)


def hemisphere_rows(
    hemisphere: Any, synthetic_thickness: NDArray, real_thickness: NDArray | None = None
) -> list[Row]:
    """:func:`region_rows` with the hemisphere's name, surface thickness, ``.labels`` and ``.names``."""
    return region_rows(
        hemisphere.hemi,
        hemisphere_surface_thickness(hemisphere),
        synthetic_thickness,
        real_thickness,
        getattr(hemisphere, "labels", None),
        getattr(hemisphere, "names", None),
    )
