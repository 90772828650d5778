r"""Brownian-bridge diffusion schedule (BBDM, Li et al., CVPR 2023) as Cor2Vox uses it.

Forward process between the image :math:`x_0` and the condition :math:`y` (the scaled cortex SDF):

.. math::  q(x_t \mid x_0, y) = \mathcal N\big((1-m_t)\,x_0 + m_t\,y,\ \delta_t I\big),\qquad
           m_t = \mathrm{linspace}(m_{min}, m_{max}, T)_t,\quad \delta_t = 2s\,(m_t - m_t^2).

Skip-step posterior. For two timesteps :math:`s < t` write :math:`a = (1-m_t)/(1-m_s)`. The Markov
transition consistent with the marginals is
:math:`q(x_t\mid x_s, y) = \mathcal N(a\,x_s + (m_t - a\,m_s)\,y,\ \delta_{t|s})` with
:math:`\delta_{t|s} = \delta_t - a^2\,\delta_s` (BBDM eq. for :math:`\delta_{t|t-1}`, with :math:`t-1 \to s`).
Gaussian conditioning of :math:`x_s \sim \mathcal N(\mu_s, \delta_s)`, :math:`\mu_s = (1-m_s)x_0 + m_s y`,
on :math:`x_t` gives

.. math::  q(x_s \mid x_t, x_0, y) = \mathcal N\Big(\mu_s + \tfrac{a\,\delta_s}{\delta_t}\,(x_t - \mu_t),\
           \tilde\delta_{s|t} = \tfrac{\delta_{t|s}\,\delta_s}{\delta_t}\Big),

which expands to BBDM's :math:`\tilde\mu = \frac{\delta_s}{\delta_t}\frac{1-m_t}{1-m_s}x_t
+ (1-m_s)\frac{\delta_{t|s}}{\delta_t}x_0 + \big(m_s - m_t\frac{1-m_t}{1-m_s}\frac{\delta_s}{\delta_t}\big)y`.
The reverse step plugs the network's clamped estimate :math:`\hat x_0` into it and scales the posterior
standard deviation by ``eta`` (``eta = 0``: deterministic mean; ``eta = 1``: full posterior). As in the
authors' code, the mean does not depend on ``eta``; for ``0 < eta < 1`` the marginal variance of the chain
is therefore below :math:`\delta_s`.

Skip-step timesteps (:func:`skip_timesteps`): for ``N >= 3`` network evaluations we use the authors'
sequence ``floor((T-1)·(N-2-k)/(N-2))`` for ``k = 0 … N-3`` followed by ``1, 0``; for ``T = 1000, N = 10``
this is ``[999, 874, 749, 624, 499, 374, 249, 124, 1, 0]``. At the final timestep (``0``) the sampler
returns :math:`\hat x_0` instead of drawing again. Where that sequence would repeat a value (``N`` close to
``T``) the rounded ``linspace(T-1, 0, N)`` is used. ``N = 1`` gives ``[T-1]``, ``N = 2`` gives ``[T-1, 0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["BridgeSchedule", "skip_timesteps", "l1_loss"]


def skip_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """Decreasing timesteps visited by an ``steps``-evaluation sampler (see the module docstring)."""
    T = int(num_timesteps)
    n = int(steps)
    if not 1 <= n <= T:
        raise ValueError(f"steps must lie in [1, {T}], got {steps}")
    if n == 1:
        return [T - 1]
    if n == 2:
        return [T - 1, 0]
    mid = [((T - 1) * (n - 2 - k)) // (n - 2) for k in range(n - 2)]
    seq = mid + [1, 0]
    if all(a > b for a, b in zip(seq, seq[1:])):
        return seq
    return [int(round((T - 1) * (1 - i / (n - 1)))) for i in range(n)]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (the Cor2Vox/BBDM training loss), computed in float32."""
    return (pred.float() - target.float()).abs().mean()


@dataclass(frozen=True)
class BridgeSchedule:
    """Brownian-bridge coefficients; all tensors are float64 on the CPU (cast on use)."""

    num_timesteps: int = 1000
    m_min: float = 0.001
    m_max: float = 0.999
    s: float = 1.0
    objective: str = "ysubx"

    def __post_init__(self) -> None:
        if self.num_timesteps < 2:
            raise ValueError("num_timesteps must be >= 2")
        if not 0.0 < self.m_min < self.m_max < 1.0:
            raise ValueError("need 0 < m_min < m_max < 1")
        if self.s <= 0:
            raise ValueError("s must be positive")
        if self.objective != "ysubx":
            raise ValueError(f"only the 'ysubx' objective is implemented, not {self.objective!r}")

    # -- coefficients -------------------------------------------------------------------------------
    @property
    def m(self) -> torch.Tensor:
        """m_t for t = 0 … T-1 (float64)."""
        return torch.linspace(self.m_min, self.m_max, self.num_timesteps, dtype=torch.float64)

    @property
    def variance(self) -> torch.Tensor:
        """δ_t = 2 s (m_t − m_t²) (float64)."""
        m = self.m
        return 2.0 * self.s * (m - m * m)

    def to_dict(self) -> dict:
        """JSON-ready description (the ``schedule`` section of a model's config.json)."""
        return {"T": self.num_timesteps, "m_min": self.m_min, "m_max": self.m_max, "s": self.s,
                "objective": self.objective}

    @classmethod
    def from_dict(cls, d: dict) -> BridgeSchedule:
        """Inverse of :meth:`to_dict`."""
        return cls(num_timesteps=int(d["T"]), m_min=float(d["m_min"]), m_max=float(d["m_max"]),
                   s=float(d["s"]), objective=str(d.get("objective", "ysubx")))

    def _at(self, values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """values[t] broadcast to ``like`` (batch dimension first)."""
        t = torch.as_tensor(t, dtype=torch.long).reshape(-1).cpu()
        v = values[t].to(device=like.device, dtype=like.dtype)
        return v.reshape(-1, *([1] * (like.dim() - 1)))

    # -- forward process ------------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor | int,
                 noise: torch.Tensor) -> torch.Tensor:
        """Draw x_t = (1 − m_t) x0 + m_t y + sqrt(δ_t) ε for the given noise ε."""
        m = self._at(self.m, t, x0)
        sd = self._at(self.variance.sqrt(), t, x0)
        return (1.0 - m) * x0 + m * y + sd * noise

    def target(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training target of the ``ysubx`` objective: y − x0."""
        return y - x0

    def predict_x0(self, y: torch.Tensor, net_out: torch.Tensor) -> torch.Tensor:
        """x̂0 = y − (y − x0)_pred."""
        return y - net_out

    def timesteps(self, steps: int) -> list[int]:
        """Skip-step sequence for ``steps`` network evaluations (:func:`skip_timesteps`)."""
        return skip_timesteps(self.num_timesteps, steps)

    # -- reverse process ------------------------------------------------------------------------------
    def posterior_coefficients(self, t: int, t_prev: int) -> tuple[float, float, float, float]:
        """(c_x0, c_y, c_xt, var) with q(x_{t_prev} | x_t, x0, y) = N(c_x0 x0 + c_y y + c_xt x_t, var)."""
        if not 0 <= t_prev < t < self.num_timesteps:
            raise ValueError(f"need 0 <= t_prev < t < T, got t={t}, t_prev={t_prev}")
        m, var = self.m, self.variance
        mt, ms, vt, vs = float(m[t]), float(m[t_prev]), float(var[t]), float(var[t_prev])
        a = (1.0 - mt) / (1.0 - ms)
        v_ts = vt - a * a * vs
        c_xt = a * vs / vt
        c_x0 = (1.0 - ms) - c_xt * (1.0 - mt)
        c_y = ms - c_xt * mt
        return c_x0, c_y, c_xt, v_ts * vs / vt

    def reverse_step(self, x_t: torch.Tensor, x0_hat: torch.Tensor, y: torch.Tensor, t: int, t_prev: int,
                     eta: float, noise: torch.Tensor | None) -> torch.Tensor:
        """Draw x_{t_prev} ~ N(posterior mean, (eta · posterior std)²) given the estimate ``x0_hat``."""
        c_x0, c_y, c_xt, var = self.posterior_coefficients(t, t_prev)
        mean = c_x0 * x0_hat + c_y * y + c_xt * x_t
        if eta == 0.0 or noise is None:
            return mean
        return mean + (eta * var ** 0.5) * noise
