"""Numeric precision and memory-format choices shared by training and inference.

``auto`` picks bf16 autocast + ``channels_last_3d`` on CPUs that advertise ``amx_bf16`` or
``avx512_bf16`` (measured ≈3.3× faster than fp32 for training on such a CPU; bf16 *without*
channels_last was slow), bf16 on CUDA devices that support it (fp16 otherwise), and fp32 elsewhere.
All choices are deterministic for a given seed on a given machine (no autotuning, fixed kernels).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "cpu_bf16_flags", "resolve_precision", "autocast", "uses_channels_last"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The bf16-related flags (``amx_bf16``, ``avx512_bf16``) this CPU advertises (empty if unknown)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(f for f in line.split(":", 1)[1].split() if f in ("amx_bf16", "avx512_bf16"))
    return frozenset()


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto|fp32|bf16|fp16`` into the concrete ``fp32|bf16|fp16`` used on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is only supported on CUDA devices")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_flags():
        return "bf16"
    return "fp32"


def uses_channels_last(precision: str, device: torch.device) -> bool:
    """channels_last_3d is used together with bf16 on CPU (and with any autocast on CUDA)."""
    return precision != "fp32" and device.type in ("cpu", "cuda")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast context for a concrete precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
