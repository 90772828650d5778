"""Synthesis: condition tensor + trained UNet → one [0, 1] volume per seed (:func:`synthesize`), or one volume
per condition with a single seed (:func:`synthesize_series`, e.g. the steps of an atrophy series).

Reproducibility: every seed gets its own ``torch.Generator`` and :func:`synthesize` always runs the network
with batch size 1, so sample *i* is bit-identical whether it is generated alone, in a loop or in a multi-seed
call (on a given machine, device and precision). :func:`synthesize_series` runs the conditions as one batch
with the noise of a batch-1 chain shared by every element, so element *i* follows the chain
``synthesize(…, conditions[i], [seed])`` runs; batched convolution kernels may round differently from batch-1
ones (bf16: a unit or two in the last place of the network output), so the two agree up to that rounding, not
bit for bit. On CUDA, cuDNN autotuning is switched off and deterministic kernels are requested for the
duration of the call.
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

__all__ = ["resolve_device", "synthesize", "synthesize_series", "deterministic_cuda"]

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


def _check_seed(seed: int) -> int:
    if not 0 <= int(seed) < 2**63:
        raise UsageError(f"random seed {seed} must lie in [0, 2**63)")
    return int(seed)


def _prepare_model(model: UNet3D, device: str | torch.device | None,
                   precision: str) -> tuple[UNet3D, torch.device, str, torch.memory_format]:
    """(model on the device in eval mode, device, concrete precision, memory format of the network input)."""
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    prec = resolve_precision(precision, dev)
    model = model.to(dev).eval()
    last = uses_channels_last(prec, dev)
    if last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model, dev, prec, (torch.channels_last_3d if last else torch.contiguous_format)


def _predictor(model: UNet3D, inp: torch.Tensor, prec: str, dev: torch.device, counter: list[int], total: int,
               progress: Progress | None) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``predict(x_t, t)`` of the sampler: writes x_t into channel 0 of ``inp`` (batch first) and runs the net."""
    batch = inp.shape[0]

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        inp[:, :1].copy_(x)
        with autocast(prec, dev):
            out = model(inp, torch.full((batch,), t, device=dev, dtype=torch.long))
        counter[0] += 1
        if progress is not None:
            progress(counter[0], total)
        return out.float().contiguous()

    return predict


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
    seeds = [_check_seed(s) for s in seeds]
    model, dev, prec, memfmt = _prepare_model(model, device, precision)
    schedule = BridgeSchedule.from_dict(config["schedule"])
    cond = _check_condition(condition, config).to(dev)
    yi = bridge_channel(config)
    y = cond[:, yi:yi + 1]
    total = len(seeds) * len(schedule.timesteps(steps))
    inp = torch.cat([y, cond], dim=1).contiguous(memory_format=memfmt)  # channel 0 is rewritten per step
    predict = _predictor(model, inp, prec, dev, [0], total, progress)

    outputs = []
    with torch.inference_mode(), deterministic_cuda(dev):
        for seed in seeds:
            gen = torch.Generator(device=dev).manual_seed(seed)
            x0 = sample_bridge(predict, schedule, y, steps=steps, eta=eta, generator=gen)
            outputs.append(image_to_output(x0))
    return outputs


def synthesize_series(model: UNet3D, config: Mapping, conditions: Sequence[torch.Tensor], seed: int, *,
                      steps: int = 10, eta: float = 1.0, device: str | torch.device | None = None,
                      precision: str = "auto", batch_size: int | None = None,
                      progress: Progress | None = None) -> list[np.ndarray]:
    """One volume per condition, all with the same ``seed``, the conditions batched into one network call.

    Every element starts at its own x_T = y and gets, at every step, the noise a batch-1 chain seeded with
    ``seed`` draws (one draw shared by the batch), so volume *i* is what ``synthesize(…, conditions[i], [seed])``
    returns, up to the rounding of batched kernels (see the module docstring). ``batch_size`` caps the
    conditions per call (default: all at once); each chunk restarts the generator at ``seed``.
    ``progress(done, total)`` is called after every network evaluation (one per chunk and step).
    """
    if not conditions:
        return []
    seed = _check_seed(seed)
    size = len(conditions) if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    checked = [_check_condition(c, config) for c in conditions]
    model, dev, prec, memfmt = _prepare_model(model, device, precision)
    schedule = BridgeSchedule.from_dict(config["schedule"])
    yi = bridge_channel(config)
    chunks = [checked[i:i + size] for i in range(0, len(checked), size)]
    total = len(chunks) * len(schedule.timesteps(steps))
    counter = [0]

    outputs = []
    with torch.inference_mode(), deterministic_cuda(dev):
        for chunk in chunks:
            cond = torch.cat(chunk, dim=0).to(dev)
            y = cond[:, yi:yi + 1]
            inp = torch.cat([y, cond], dim=1).contiguous(memory_format=memfmt)
            predict = _predictor(model, inp, prec, dev, counter, total, progress)
            gen = torch.Generator(device=dev).manual_seed(seed)
            x0 = sample_bridge(predict, schedule, y, steps=steps, eta=eta, generator=gen, shared_noise=True)
            outputs += [image_to_output(x0[i:i + 1]) for i in range(len(chunk))]
    return outputs
