"""Helpers of the diffusion-engine tests: tiny networks on 8³–16³ grids and a synthetic training pair."""

from __future__ import annotations

import numpy as np
import torch

from cor2vox_bids.diffusion.checkpoint import make_model_config
from cor2vox_bids.diffusion.unet import UNetConfig


def tiny_arch(size: int = 16, base: int = 8) -> UNetConfig:
    """Two-level UNet without attention (≈25 k parameters)."""
    return UNetConfig(image_size=size, base_channels=base, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(), middle_attention=False, norm_groups=4, resblock_updown=False)


def tiny_config(size: int = 16, **kw) -> dict:
    return make_model_config(tiny_arch(size, **kw), (size,) * 3, 2.0, name="tiny-test", demo=True,
                             sdf_clip_mm=10.0)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (also the zero-initialised ones) random values so outputs are non-trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def sphere_pair(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic (condition (5,D,H,W), image (1,D,H,W)) pair in [−1, 1]: shells around a sphere."""
    g = np.mgrid[:size, :size, :size].astype(np.float32)
    c = (size - 1) / 2
    r = np.sqrt(((g - c) ** 2).sum(0))
    rad = size * 0.3
    sdf = np.clip((r - rad) / (size / 2), -1, 1)
    ribbon = (np.abs(r - rad) < 1.0) * 2.0 - 1.0
    cond = np.stack([sdf, np.clip(sdf - 0.1, -1, 1), np.clip(sdf + 0.1, -1, 1), -np.ones_like(sdf), ribbon])
    img = np.clip(1.2 - r / (0.4 * size), 0, 1) * 2 - 1 + 0.25 * np.sin(g[0] * 0.8) * (r < rad + 2)
    return cond.astype(np.float32), np.clip(img, -1, 1)[None].astype(np.float32)
