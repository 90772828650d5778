"""The model grid (RAS-aligned, isotropic) and world-space-correct resampling onto it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._linalg import transform


@dataclass(frozen=True)
class ModelGrid:
    """A voxel grid: ``affine`` maps voxel indices ``(i, j, k)`` to scanner RAS mm; ``shape`` its size."""

    affine: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        aff = np.array(self.affine, dtype=np.float64)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
            raise ValueError(f"ModelGrid affine must be a finite 4x4 matrix, got shape {aff.shape}")
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"ModelGrid shape must be three positive sizes, got {self.shape}")
        aff.setflags(write=False)
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "shape", shape)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ModelGrid)
            and self.shape == other.shape
            and bool(np.array_equal(self.affine, other.affine))
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.affine.tobytes()))

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis in mm (norms of the affine's columns)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def center(self) -> np.ndarray:
        """World coordinates (mm) of the grid's geometric centre."""
        mid = (np.asarray(self.shape, dtype=np.float64) - 1.0) / 2.0
        return self.affine[:3, :3] @ mid + self.affine[:3, 3]

    @classmethod
    def around(
        cls, vertices: np.ndarray, shape: int | tuple[int, int, int] = 128, spacing: float = 1.5
    ) -> ModelGrid:
        """RAS-aligned isotropic grid of ``shape`` voxels of ``spacing`` mm centred on the
        centre of the bounding box of ``vertices`` (float (n, 3), scanner RAS)."""
        v = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        if len(v) == 0 or not np.all(np.isfinite(v)):
            raise ValueError("ModelGrid.around needs finite vertices")
        shp = (int(shape),) * 3 if np.isscalar(shape) else tuple(int(s) for s in shape)
        mid = 0.5 * (v.min(axis=0) + v.max(axis=0))
        aff = np.diag([float(spacing)] * 3 + [1.0])
        aff[:3, 3] = mid - float(spacing) * (np.asarray(shp, dtype=np.float64) - 1.0) / 2.0
        return cls(aff, shp)

    def world_coordinates(self) -> np.ndarray:
        """World coordinates of every voxel centre, float64 array of shape ``shape + (3,)``."""
        ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in self.shape], indexing="ij"), -1)
        return transform(ijk, self.affine)


def resample(volume: np.ndarray, affine: np.ndarray, grid: ModelGrid, order: int = 1) -> np.ndarray:
    """Sample ``volume`` (voxel->world ``affine``) at the voxel centres of ``grid``.

    Spline interpolation of ``order`` (0 nearest, 1 trilinear); points outside the volume get 0.
    Returns float32 for float input orders > 0, the input dtype for order 0.
    """
    vol = np.asanyarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"resample needs a 3D volume, got shape {vol.shape}")
    # grid voxel -> source voxel, one affine; map_coordinates samples at the result
    src_from_grid = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ grid.affine
    lin, off = src_from_grid[:3, :3], src_from_grid[:3, 3]
    out_dtype = vol.dtype if order == 0 else np.float32
    data = vol if order == 0 else vol.astype(np.float32, copy=False)
    return ndimage.affine_transform(
        data, lin, offset=off, output_shape=grid.shape, order=order, mode="constant", cval=0.0,
        output=out_dtype, prefilter=order > 1,
    )
