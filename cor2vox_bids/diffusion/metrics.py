"""Image similarity used for validation during training (torch only; matches scikit-image's defaults)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ssim", "mae"]


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, data_range: float,
         win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean SSIM of two 2D/3D volumes with a uniform ``win_size`` window and sample covariance.

    Same definition as ``skimage.metrics.structural_similarity(a, b, data_range=…)`` with its defaults
    (mean over voxels at least ``(win_size-1)//2`` from the border, where the window lies inside).
    """
    x = torch.as_tensor(np.asarray(a), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(b), dtype=torch.float64)
    if x.shape != y.shape or x.dim() not in (2, 3):
        raise ValueError(f"ssim needs two 2D/3D arrays of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape) < win_size:
        raise ValueError(f"every dimension must be >= win_size={win_size}")
    pool = F.avg_pool3d if x.dim() == 3 else F.avg_pool2d
    stack = torch.stack([x, y, x * x, y * y, x * y])[None]
    ux, uy, uxx, uyy, uxy = pool(stack, win_size, stride=1)[0]
    n = win_size ** x.dim()
    cov = n / (n - 1.0)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def mae(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Mean absolute difference."""
    return float(np.mean(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
