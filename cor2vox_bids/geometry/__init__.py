"""Geometry core: surfaces and frames, signed distance fields, thickness, conditioning maps.

Imports numpy, scipy, nibabel and numba only (no torch, no nipype). The compiled kernels run on
``set_num_threads`` threads (default: all CPUs); results do not depend on the thread count.
"""

from ._cache import kernel_cache

with kernel_cache():  # the compiled kernels' cache folder (before they are defined)
    from ._kernels import set_num_threads
    from ._regions import band_sqdist  # noqa: F401

from .atlas import DK_REGIONS, region_table
from .conditioning import MAP_NAMES, conditioning_maps, cortex_sdf, edge_map, ribbon_mask
from .grid import ModelGrid, resample
from .sdf import signed_distance, winding_inside
from .surfaces import (
    Hemisphere,
    Surface,
    load_freesurfer_hemisphere,
    load_gifti_hemisphere,
    read_annotation,
    read_freesurfer_surface,
    read_gifti_surface,
    read_morph,
    tkr_to_scanner_matrix,
)
from .thickness import closest_distance, cortical_thickness
from .validation import validate_hemisphere, validate_pair

__all__ = [
    "DK_REGIONS",
    "MAP_NAMES",
    "Hemisphere",
    "ModelGrid",
    "Surface",
    "closest_distance",
    "conditioning_maps",
    "cortex_sdf",
    "cortical_thickness",
    "edge_map",
    "load_freesurfer_hemisphere",
    "load_gifti_hemisphere",
    "read_annotation",
    "read_freesurfer_surface",
    "read_gifti_surface",
    "read_morph",
    "region_table",
    "resample",
    "ribbon_mask",
    "set_num_threads",
    "signed_distance",
    "tkr_to_scanner_matrix",
    "validate_hemisphere",
    "validate_pair",
    "winding_inside",
]
