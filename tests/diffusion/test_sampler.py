"""Reverse chain driven by an oracle network: exact recovery and the bridge's marginal moments."""

from __future__ import annotations

import math

import pytest
import torch

from cor2vox_bids.diffusion.sampler import sample_bridge
from cor2vox_bids.diffusion.schedule import BridgeSchedule

S = BridgeSchedule()


def oracle(x0: torch.Tensor, y: torch.Tensor):
    """A perfect ``ysubx`` network: returns y − x0 whatever x_t and t are."""
    return lambda x, t: y - x0


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [1, 2, 10, 25])
def test_oracle_recovers_x0(eta, steps):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 6, 6, 6, generator=g) * 2 - 1
    y = torch.rand(2, 1, 6, 6, 6, generator=g) * 2 - 1
    out = sample_bridge(oracle(x0, y), S, y, steps=steps, eta=eta, generator=torch.Generator().manual_seed(0))
    # y − (y − x0) in float32: at most one rounding of |y| ≤ 1 → error ≤ 2^-24·2
    assert torch.allclose(out, x0, atol=2.5e-7, rtol=0)


def test_clamps_x0_estimate():
    y = torch.zeros(8)
    x0 = torch.linspace(-3, 3, 8)
    out = sample_bridge(oracle(x0, y), S, y, steps=3, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x0.clamp(-1, 1))


def _run_chain(eta: float, n: int, x_start: torch.Tensor | None, seed: int = 0):
    x0v, yv = 0.3, -0.6
    x0, y = torch.full((n,), x0v), torch.full((n,), yv)
    seen: dict[int, tuple[float, float]] = {}

    def cb(t, x):
        xd = x.double()
        seen[t] = (xd.mean().item(), xd.var().item())

    sample_bridge(oracle(x0, y), S, y, steps=10, eta=eta, generator=torch.Generator().manual_seed(seed),
                  x_start=x_start, callback=cb)
    return x0v, yv, seen


def test_intermediate_states_have_bridge_marginals():
    """x_T ~ q(x_T|x0,y) and the oracle → every x_t ~ N((1−m_t)x0 + m_t y, δ_t); n = 400k, 5-SE bounds."""
    n = 400_000
    g = torch.Generator().manual_seed(7)
    x_start = S.q_sample(torch.full((n,), 0.3), torch.full((n,), -0.6), 999, torch.randn(n, generator=g))
    x0, y, seen = _run_chain(1.0, n, x_start)
    assert sorted(seen) == [0, 1, 124, 249, 374, 499, 624, 749, 874]
    for t, (mean, var) in seen.items():
        m, d = S.m[t].item(), S.variance[t].item()
        assert abs(mean - ((1 - m) * x0 + m * y)) < 5 * math.sqrt(d / n), t
        assert abs(var - d) < 5 * d * math.sqrt(2 / (n - 1)), t


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_chain_from_y_follows_linear_gaussian_recursion(eta):
    """Started at x_T = y (deterministic): mean/variance follow the recursion of the linear-Gaussian step."""
    n = 400_000
    x0, y, seen = _run_chain(eta, n, None, seed=3)
    ts = S.timesteps(10)
    mean, var = y, 0.0
    for t, tp in zip(ts, ts[1:]):
        c_x0, c_y, c_xt, pv = S.posterior_coefficients(t, tp)
        mean, var = c_x0 * x0 + c_y * y + c_xt * mean, c_xt**2 * var + eta**2 * pv
        got_m, got_v = seen[tp]
        assert abs(got_m - mean) < 5 * math.sqrt(max(var, 1e-30) / n) + 1e-6, tp
        if eta == 0.0:
            assert got_v < 1e-12
        else:
            assert abs(got_v - var) < 5 * var * math.sqrt(2 / (n - 1)), tp
    if eta == 1.0:  # starting at y instead of sampling x_T barely matters: δ_T = 0.002
        assert abs(seen[0][1] - S.variance[0].item()) / S.variance[0].item() < 0.05


def test_generator_reproducibility():
    x0, y = torch.zeros(1000), torch.ones(1000)
    f = oracle(x0, y)
    cb_a, cb_b, cb_c = [], [], []
    for seed, store in ((5, cb_a), (5, cb_b), (6, cb_c)):
        sample_bridge(f, S, y, steps=4, eta=1.0, generator=torch.Generator().manual_seed(seed),
                      callback=lambda t, x, s=store: s.append(x.clone()))
    assert all(torch.equal(a, b) for a, b in zip(cb_a, cb_b))
    assert not torch.equal(cb_a[0], cb_c[0])


def test_shared_noise_gives_every_batch_element_the_batch1_chain():
    """shared_noise: element i of a batch runs exactly the chain a batch-1 call with the same generator runs."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 1, 5, 5, 5, generator=g) * 2 - 1
    y = torch.rand(3, 1, 5, 5, 5, generator=g) * 2 - 1
    net = lambda x, t: 0.5 * (y - x0) + 0.1 * x  # noqa: E731 (depends on x_t, so the noise reaches x̂0)
    batched = sample_bridge(net, S, y, steps=6, eta=1.0, generator=torch.Generator().manual_seed(9),
                            shared_noise=True)
    for i in range(3):
        def one(x, t, i=i):
            return 0.5 * (y[i:i + 1] - x0[i:i + 1]) + 0.1 * x
        alone = sample_bridge(one, S, y[i:i + 1], steps=6, eta=1.0, generator=torch.Generator().manual_seed(9))
        assert torch.equal(batched[i:i + 1], alone)
    independent = sample_bridge(net, S, y, steps=6, eta=1.0, generator=torch.Generator().manual_seed(9))
    assert not torch.equal(independent[1:], batched[1:])  # without it every element draws its own noise
