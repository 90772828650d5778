"""Synthesis: condition tensor + trained UNet → one [0, 1] volume per seed.

Reproducibility: every seed gets its own ``torch.Generator`` and the network always runs with batch
size 1, so sample *i* is bit-identical whether it is generated alone, in a loop or in a multi-seed call
(on a given machine, device and precision). On CUDA, cuDNN autotuning is switched off and deterministic
kernels are requested for the duration of the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..errors import DeviceUnavailableError, UsageError
from .conditioning import bridge_channel, image_to_output
from .precision import autocast, resolve_precision, uses_channels_last
from .sampler import sample_bridge
from .schedule import BridgeSchedule
from .unet import UNet3D

__all__ = ["resolve_device", "synthesize", "deterministic_cuda"]

Progress = Callable[[int, int], None]


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` → ``cuda`` if available else ``cpu``; ``cpu``; ``cuda`` / ``cuda:N`` (must exist)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = str(spec).strip().lower()
    if s == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s == "cuda" or s.startswith("cuda:"):
        idx_s = s.partition(":")[2] or "0"
        if not idx_s.isdigit():
            raise UsageError(f"invalid device {spec!r}: use auto, cpu, cuda or cuda:N")
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {spec!r} was requested but no CUDA GPU is available (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda or 'none'}); use --device cpu or auto")
        n = torch.cuda.device_count()
        if int(idx_s) >= n:
            raise DeviceUnavailableError(f"device {spec!r} was requested but only {n} CUDA device(s) exist")
        return torch.device(f"cuda:{int(idx_s)}")
    raise UsageError(f"invalid device {spec!r}: use auto, cpu, cuda or cuda:N")


@contextlib.contextmanager
def deterministic_cuda(device: torch.device) -> Iterator[None]:
    """Deterministic cuDNN settings while inside (restored afterwards); a no-op off CUDA."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


def _check_condition(condition: torch.Tensor, config: Mapping) -> torch.Tensor:
    cond = condition if condition.dim() == 5 else condition[None]
    chans = len(config["conditions"]["channels"])
    shape = tuple(int(s) for s in config["grid"]["shape"])
    if cond.dim() != 5 or cond.shape[0] != 1 or cond.shape[1] != chans or tuple(cond.shape[2:]) != shape:
        raise ValueError(f"condition must have shape (1, {chans}, *{shape}), got {tuple(condition.shape)}")
    return cond.float()


def synthesize(model: UNet3D, config: Mapping, condition: torch.Tensor, seeds: Sequence[int], *,
               steps: int = 10, eta: float = 1.0, device: str | torch.device | None = None,
               precision: str = "auto", progress: Progress | None = None) -> list[np.ndarray]:
    """Sample one volume per seed; returns float32 arrays (D, H, W) in [0, 1].

    The chain starts at x_T = y (the ``bridge_y`` condition channel); each step evaluates
    x̂0 = y − net([x_t, condition], t). ``device=None`` keeps the model where it is; otherwise it is moved
    (and, with an autocast precision, converted to ``channels_last_3d`` in place).
    ``progress(done, total)`` is called after every network evaluation.
    """
    if not seeds:
        return []
    for s in seeds:
        if not 0 <= int(s) < 2**63:
            raise UsageError(f"random seed {s} must lie in [0, 2**63)")
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    prec = resolve_precision(precision, dev)
    model = model.to(dev).eval()
    if uses_channels_last(prec, dev):
        model = model.to(memory_format=torch.channels_last_3d)
    schedule = BridgeSchedule.from_dict(config["schedule"])
    cond = _check_condition(condition, config).to(dev)
    yi = bridge_channel(config)
    y = cond[:, yi:yi + 1]
    memfmt = torch.channels_last_3d if uses_channels_last(prec, dev) else torch.contiguous_format
    total = len(seeds) * len(schedule.timesteps(steps))
    done = [0]

    inp = torch.cat([y, cond], dim=1).contiguous(memory_format=memfmt)  # channel 0 is rewritten per step

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        inp[:, :1].copy_(x)
        with autocast(prec, dev):
            out = model(inp, torch.full((1,), t, device=dev, dtype=torch.long))
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
        return out.float().contiguous()

    outputs = []
    with torch.inference_mode(), deterministic_cuda(dev):
        for seed in seeds:
            gen = torch.Generator(device=dev).manual_seed(int(seed))
            x0 = sample_bridge(predict, schedule, y, steps=steps, eta=eta, generator=gen)
            outputs.append(image_to_output(x0))
    return outputs
