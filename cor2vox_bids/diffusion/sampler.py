"""The Brownian-bridge reverse chain, independent of any network (a ``predict`` callable drives it)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedule import BridgeSchedule

__all__ = ["sample_bridge"]

Predict = Callable[[torch.Tensor, int], torch.Tensor]


def sample_bridge(predict: Predict, schedule: BridgeSchedule, y: torch.Tensor, *, steps: int = 10,
                  eta: float = 1.0, generator: torch.Generator | None = None,
                  x_start: torch.Tensor | None = None, clip_x0: bool = True, shared_noise: bool = False,
                  callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the reverse bridge from ``x_T`` (default: ``y`` itself) and return the final x̂0.

    ``predict(x_t, t)`` returns the network's ``y − x0`` estimate (float32, shape of ``y``). At every
    skip step x̂0 = y − predict(x_t, t), clamped to [−1, 1] when ``clip_x0``; the next state is drawn from
    the bridge posterior (:meth:`BridgeSchedule.reverse_step`) with noise from ``generator`` (on ``y``'s
    device). At the last timestep x̂0 is returned. ``callback(t_prev, x_{t_prev})`` sees every state.

    ``shared_noise``: draw one noise volume per step of shape ``y.shape[1:]`` (batch 1) and use it for every
    batch element, so each chain of a batch gets exactly the noise a batch-1 chain with the same generator gets
    (a series of conditions sampled "with the same seed").
    """
    if eta < 0:
        raise ValueError("eta must be >= 0")
    ts = schedule.timesteps(steps)
    x = (y if x_start is None else x_start).float()
    y = y.float()
    for i, t in enumerate(ts):
        x0_hat = schedule.predict_x0(y, predict(x, t).float())
        if clip_x0:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        if i == len(ts) - 1:
            return x0_hat
        noise = None
        if eta > 0:
            shape = (1, *y.shape[1:]) if shared_noise else y.shape
            noise = torch.randn(shape, generator=generator, device=y.device, dtype=torch.float32)
        x = schedule.reverse_step(x, x0_hat, y, t, ts[i + 1], eta, noise)
        if callback is not None:
            callback(ts[i + 1], x)
    raise AssertionError("unreachable")  # pragma: no cover
