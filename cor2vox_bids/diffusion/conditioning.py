"""Numpy conditioning maps / images ↔ the network's [−1, 1] tensors, as a model's config.json prescribes.

* SDF channels (``sdf_*``): clipped to ±``sdf_clip_mm`` and divided by it.
* ``ribbon`` and ``edges`` (values in [0, 1]): ``2·v − 1``.
* Image (``intensity.method == "robust-minmax"``): ``0 → −1`` and the ``percentile``-th percentile
  (99.9 by default) ``→ 1``, linear in between, clipped to [−1, 1]. ``image_to_output`` maps back to
  [0, 1] (the caller rescales for writing).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..errors import ParticipantError

__all__ = ["CONDITION_CHANNELS", "prepare_condition", "condition_from_array", "prepare_image",
           "scale_image", "image_to_output", "bridge_channel"]

CONDITION_CHANNELS = ("sdf_cortex", "sdf_pial", "sdf_white", "edges", "ribbon")


def _channels(config: Mapping) -> list[str]:
    return list(config["conditions"]["channels"])


def bridge_channel(config: Mapping) -> int:
    """Index of the bridge's end point ``y`` (``conditions.bridge_y``) among the condition channels."""
    chans = _channels(config)
    name = config["conditions"].get("bridge_y", "sdf_cortex")
    if name not in chans:
        raise ValueError(f"bridge_y {name!r} is not one of the condition channels {chans}")
    return chans.index(name)


def _scale_map(name: str, v: np.ndarray, clip_mm: float) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    if name.startswith("sdf"):
        return np.clip(v, -clip_mm, clip_mm) / np.float32(clip_mm)
    return np.clip(2.0 * v - 1.0, -1.0, 1.0).astype(np.float32)


def condition_from_array(maps: Mapping[str, np.ndarray], config: Mapping) -> np.ndarray:
    """The scaled condition as a float32 array (C, D, H, W) (used to cache training pairs)."""
    chans = _channels(config)
    clip = float(config["conditions"]["sdf_clip_mm"])
    missing = [c for c in chans if c not in maps]
    if missing:
        raise ValueError(f"conditioning maps missing: {missing} (have {sorted(maps)})")
    shapes = {c: tuple(np.shape(maps[c])) for c in chans}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"conditioning maps differ in shape: {shapes}")
    shape = shapes[chans[0]]
    want = tuple(config.get("grid", {}).get("shape", shape))
    if shape != want:
        raise ValueError(f"conditioning maps have shape {shape}, the model grid is {want}")
    out = np.stack([_scale_map(c, maps[c], clip) for c in chans])
    if not np.isfinite(out).all():
        bad = [c for c in chans if not np.isfinite(np.asarray(maps[c])).all()]
        raise ParticipantError(f"conditioning maps {bad} contain NaN or infinite values")
    return out


def prepare_condition(maps: Mapping[str, np.ndarray], config: Mapping) -> torch.Tensor:
    """Dict of conditioning maps on the model grid → float32 tensor (1, C, D, H, W) in [−1, 1]."""
    return torch.from_numpy(condition_from_array(maps, config))[None]


def scale_image(volume: np.ndarray, config: Mapping | None = None) -> np.ndarray:
    """Robust min–max of an image on the model grid → float32 array in [−1, 1] (same shape)."""
    pct = 99.9
    if config is not None:
        inten = config.get("intensity", {})
        method = inten.get("method", "robust-minmax")
        if method != "robust-minmax":
            raise ValueError(f"unknown intensity normalisation {method!r}")
        pct = float(inten.get("percentile", pct))
    v = np.asarray(volume, dtype=np.float32)
    if not np.isfinite(v).all():
        raise ParticipantError("the image contains NaN or infinite values")
    hi = float(np.percentile(v, pct))
    if hi <= 0:
        raise ParticipantError(f"the image's {pct}th percentile is {hi:g} (an empty or negative image)")
    return (np.clip(v / np.float32(hi), 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def prepare_image(volume_on_grid: np.ndarray, config: Mapping | None = None) -> torch.Tensor:
    """Image on the model grid → float32 tensor (1, 1, D, H, W) in [−1, 1] (see :func:`scale_image`)."""
    return torch.from_numpy(scale_image(volume_on_grid, config))[None, None]


def image_to_output(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Network-space image (any leading singleton dims) → float32 (D, H, W) array in [0, 1]."""
    t = torch.as_tensor(x).detach().float().cpu()
    while t.dim() > 3 and t.shape[0] == 1:
        t = t[0]
    return ((t.clamp(-1.0, 1.0) + 1.0) * 0.5).numpy().astype(np.float32)
