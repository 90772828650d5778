"""What a model config asks of the machine, checked before any work (exit 65 naming ``config.json``).

:func:`check_model_config` bounds the grid (every side a positive multiple of the UNet's divisor, at most
``MAX_GRID_SIDE`` voxels, spacing in ``SPACING_RANGE_MM``), the channels (one output, known and distinct condition
maps) and compares :func:`inference_memory_bytes` — one synthesis node's peak memory — with the memory limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import ModelError
from .unet import UNetConfig

#: largest side of the model grid (voxels); 512 at 0.5 mm is a 256 mm field of view
MAX_GRID_SIDE = 512
#: allowed voxel size of the model grid (mm)
SPACING_RANGE_MM = (0.25, 8.0)
#: peak float32 feature maps of the first UNet level held during one forward pass, per input voxel: 16.3-17.1
#: measured on the demo architecture (80x96x80 and 64^3, CPU, no_grad); 17 is used
ACTIVATION_MAPS = 17.0
#: names of the condition maps a model may ask for (geometry.conditioning.MAP_NAMES)
KNOWN_CONDITIONS = ("sdf_pial", "sdf_white", "sdf_cortex", "ribbon", "edges")


def parameter_count(arch: UNetConfig) -> int:
    """Number of weights of the UNet (built on the meta device: no memory)."""
    import torch

    from .unet import UNet3D

    with torch.device("meta"):
        return sum(p.numel() for p in UNet3D(arch).parameters())


def inference_memory_bytes(arch: UNetConfig, shape: tuple[int, int, int]) -> int:
    """Estimated peak memory (bytes) of one forward pass at ``shape``: weights plus ``ACTIVATION_MAPS`` float32
    maps of the first level's width per voxel (an estimate from measurements, not a bound)."""
    voxels = math.prod(int(s) for s in shape)
    width = arch.base_channels * arch.channel_mult[0]
    return int(4 * (ACTIVATION_MAPS * width * voxels + parameter_count(arch)))


def physical_memory_bytes() -> int | None:
    """The machine's RAM, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_model_config(cfg: dict, cfg_path: Path, mem_gb: float | None = None) -> int:
    """Raise :class:`ModelError` naming ``cfg_path`` for an unusable grid, channels or a memory need above
    ``mem_gb`` (``--mem``; the machine's RAM when None). Returns the memory estimate in bytes."""
    arch = UNetConfig.from_dict(cfg["architecture"])
    shape = [int(s) for s in cfg["grid"]["shape"]]
    spacing = float(cfg["grid"]["spacing_mm"])
    d = arch.divisor
    bad = [s for s in shape if s < d or s % d or s > MAX_GRID_SIDE]
    if len(shape) != 3 or bad:
        raise ModelError(f"grid shape {shape} is unusable: every side must be a positive multiple of {d} and at "
                         f"most {MAX_GRID_SIDE} voxels", cfg_path)
    lo, hi = SPACING_RANGE_MM
    if not (math.isfinite(spacing) and lo <= spacing <= hi):
        raise ModelError(f"grid spacing {spacing} mm is outside [{lo}, {hi}] mm", cfg_path)
    if arch.out_channels != 1:
        raise ModelError(f"architecture has {arch.out_channels} output channels; cor2vox models predict one "
                         "image channel", cfg_path)
    chans = list(cfg["conditions"]["channels"])
    unknown = [c for c in chans if c not in KNOWN_CONDITIONS]
    if unknown or len(set(chans)) != len(chans) or not chans:
        raise ModelError(f"condition channels {chans} must be distinct names among {list(KNOWN_CONDITIONS)}",
                         cfg_path)
    need = inference_memory_bytes(arch, tuple(shape))
    limit = mem_gb * 1e9 if mem_gb is not None else physical_memory_bytes()
    if limit is not None and need > limit:
        where = f"--mem {mem_gb:g} GB" if mem_gb is not None else f"this machine's {limit / 1e9:.1f} GB of RAM"
        raise ModelError(f"a {shape[0]}x{shape[1]}x{shape[2]} grid with {arch.base_channels} base channels needs "
                         f"about {need / 1e9:.1f} GB per synthesis, more than {where}", cfg_path)
    return need
