"""Brownian-bridge schedule: endpoints, variance, forward moments, skip steps, posterior algebra."""

from __future__ import annotations

import math

import pytest
import torch

from cor2vox_bids.diffusion.schedule import BridgeSchedule, l1_loss, skip_timesteps


def test_endpoints_and_variance():
    s = BridgeSchedule()
    m, v = s.m, s.variance
    assert m.shape == (1000,)
    assert m[0].item() == pytest.approx(0.001, abs=1e-15)
    assert m[-1].item() == pytest.approx(0.999, abs=1e-15)
    assert torch.allclose(m[1:] - m[:-1], torch.full((999,), 0.998 / 999, dtype=torch.float64), atol=1e-15)
    # δ_t = 2s(m − m²): 0.001998 at both ends (symmetric in t), max 0.5 at m = 0.5 (reached to 2.5e-7)
    assert v[0].item() == pytest.approx(2 * (0.001 - 0.001**2), rel=1e-12)
    assert v[-1].item() == pytest.approx(v[0].item(), rel=1e-9)
    assert torch.allclose(v, v.flip(0), atol=1e-12)
    assert v.max().item() == pytest.approx(0.5, abs=1e-6)
    assert BridgeSchedule(s=0.5).variance.max().item() == pytest.approx(0.25, abs=1e-6)


def test_skip_timesteps_reference_sequence():
    assert skip_timesteps(1000, 10) == [999, 874, 749, 624, 499, 374, 249, 124, 1, 0]
    assert skip_timesteps(1000, 1) == [999]
    assert skip_timesteps(1000, 2) == [999, 0]
    for n in list(range(1, 60)) + [200, 499, 500, 501, 502, 999, 1000]:
        ts = skip_timesteps(1000, n)
        assert len(ts) == n and ts[0] == 999 and (n == 1 or ts[-1] == 0)
        assert all(a > b for a, b in zip(ts, ts[1:])), n
    assert skip_timesteps(1000, 1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError):
        skip_timesteps(1000, 0)
    with pytest.raises(ValueError):
        skip_timesteps(1000, 1001)


@pytest.mark.parametrize("t", [0, 100, 500, 900, 999])
def test_forward_sample_moments(t):
    """Mean and variance of q(x_t | x0, y) over n = 400k draws, within 5 standard errors."""
    s = BridgeSchedule()
    n = 400_000
    g = torch.Generator().manual_seed(t)
    x0, y = torch.full((n,), 0.3, dtype=torch.float64), torch.full((n,), -0.6, dtype=torch.float64)
    xt = s.q_sample(x0, y, torch.full((n,), t), torch.randn(n, generator=g, dtype=torch.float64))
    m, d = s.m[t].item(), s.variance[t].item()
    assert abs(xt.mean().item() - ((1 - m) * 0.3 + m * -0.6)) < 5 * math.sqrt(d / n)
    assert abs(xt.var().item() - d) < 5 * d * math.sqrt(2 / (n - 1))


def test_q_sample_per_batch_timesteps():
    s = BridgeSchedule()
    x0, y = torch.zeros(2, 1, 2, 2, 2), torch.ones(2, 1, 2, 2, 2)
    out = s.q_sample(x0, y, torch.tensor([0, 999]), torch.zeros_like(x0))
    assert torch.allclose(out[0], torch.full_like(out[0], 0.001))
    assert torch.allclose(out[1], torch.full_like(out[1], 0.999))


@pytest.mark.parametrize("t,tp", [(999, 874), (124, 1), (1, 0), (500, 499), (999, 0)])
def test_posterior_is_exact_gaussian_conditioning(t, tp):
    """Posterior coefficients equal brute-force conditioning of the joint Gaussian (x_s, x_t)."""
    s = BridgeSchedule()
    m, v = s.m.tolist(), s.variance.tolist()
    c_x0, c_y, c_xt, var = s.posterior_coefficients(t, tp)
    a = (1 - m[t]) / (1 - m[tp])
    cov_st = a * v[tp]  # Cov(x_s, x_t) for the Markov chain x_t = a x_s + (m_t − a m_s) y + noise
    assert var == pytest.approx(v[tp] - cov_st**2 / v[t], rel=1e-9, abs=1e-15)
    assert c_xt == pytest.approx(cov_st / v[t], rel=1e-12)
    # BBDM's expanded mean coefficients (Li et al. 2023, with t−1 → s)
    d_ts = v[t] - v[tp] * (1 - m[t]) ** 2 / (1 - m[tp]) ** 2
    assert c_x0 == pytest.approx((1 - m[tp]) * d_ts / v[t], rel=1e-9)
    assert c_y == pytest.approx(m[tp] - m[t] * (1 - m[t]) / (1 - m[tp]) * v[tp] / v[t], rel=1e-9, abs=1e-14)
    # law of total variance/mean: the posterior applied to x_t ~ q(x_t) gives back q(x_s)
    for x0, y in ((0.3, -0.6), (-1.0, 1.0)):
        mu_t, mu_s = (1 - m[t]) * x0 + m[t] * y, (1 - m[tp]) * x0 + m[tp] * y
        assert c_x0 * x0 + c_y * y + c_xt * mu_t == pytest.approx(mu_s, abs=1e-12)
    assert c_xt**2 * v[t] + var == pytest.approx(v[tp], rel=1e-9)


def test_reverse_step_eta_scaling():
    s = BridgeSchedule()
    x = torch.zeros(4)
    noise = torch.ones(4)
    mean = s.reverse_step(x, x, x, 500, 400, 0.0, noise)
    full = s.reverse_step(x, x, x, 500, 400, 1.0, noise)
    half = s.reverse_step(x, x, x, 500, 400, 0.5, noise)
    sd = s.posterior_coefficients(500, 400)[3] ** 0.5
    assert torch.allclose(mean, torch.zeros(4))
    assert torch.allclose(full, torch.full((4,), sd)) and torch.allclose(half, torch.full((4,), sd / 2))


def test_l1_and_roundtrip_dict():
    assert l1_loss(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0])).item() == 1.0
    s = BridgeSchedule(num_timesteps=200, m_min=0.01, m_max=0.99, s=0.5)
    assert BridgeSchedule.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        BridgeSchedule(objective="noise")
    with pytest.raises(ValueError):
        BridgeSchedule(m_min=0.5, m_max=0.4)
