"""Statistical shape model of the cortex (numpy/scipy): correspondence through ``sphere.reg``, per-hemisphere
PCA of mid-thickness surfaces and thickness, and virtual participants written as BIDS datasets
(``cor2vox-shape``)."""

from .model import HemiPCA, ShapeModel, fit_pca, lerp, load_model, save_model, slerp
from .sphere import Resampling, shares_mesh, sphere_resampling

__all__ = [
    "HemiPCA",
    "Resampling",
    "ShapeModel",
    "fit_pca",
    "lerp",
    "load_model",
    "save_model",
    "shares_mesh",
    "slerp",
    "sphere_resampling",
]
