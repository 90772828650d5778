"""synthesize(): devices, seeds (reproducible one by one), output range, progress, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cor2vox_bids.diffusion.inference import resolve_device, synthesize, synthesize_series
from cor2vox_bids.errors import DeviceUnavailableError, ExitCode, UsageError
from diffusion_helpers import sphere_pair, tiny_config


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError):
        resolve_device("gpu")
    with pytest.raises(UsageError):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_resolve_device_cuda_unavailable(spec):
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU") as exc:
        resolve_device(spec)
    assert exc.value.exit_code == ExitCode.TEMPFAIL == 75 and spec in str(exc.value)


@pytest.fixture
def cond():
    return torch.from_numpy(sphere_pair(16)[0])[None]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_seeds_reproducible_alone_and_in_batch(tiny_model, cond, precision):
    cfg = tiny_config()
    calls = []
    many = synthesize(tiny_model, cfg, cond, [11, 22, 33], steps=4, precision=precision,
                      progress=lambda d, n: calls.append((d, n)))
    assert calls == [(i, 12) for i in range(1, 13)]
    alone = synthesize(tiny_model, cfg, cond, [22], steps=4, precision=precision)[0]
    again = synthesize(tiny_model, cfg, cond[0], [33, 22], steps=4, precision=precision)
    assert np.array_equal(many[1], alone) and np.array_equal(many[1], again[1])
    assert np.array_equal(many[2], again[0])
    for v in many:
        assert v.dtype == np.float32 and v.shape == (16, 16, 16) and v.min() >= 0 and v.max() <= 1
    # different seeds → different volumes (noise enters every step with eta = 1)
    assert np.abs(many[0] - many[1]).mean() > 1e-3


def test_eta_zero_is_seed_independent_and_bf16_close(tiny_model, cond):
    cfg = tiny_config()
    a, b = synthesize(tiny_model, cfg, cond, [1, 2], steps=3, eta=0.0, precision="fp32")
    assert np.array_equal(a, b)
    c = synthesize(tiny_model, cfg, cond, [1], steps=3, eta=0.0, precision="bf16")[0]
    # bf16 autocast of a random-weight net: mean deviation well below 2 % of the [0, 1] range
    assert np.abs(a - c).mean() < 0.02


def test_condition_shape_checked(tiny_model):
    with pytest.raises(ValueError, match="condition must have shape"):
        synthesize(tiny_model, tiny_config(), torch.zeros(1, 4, 16, 16, 16), [0], steps=2)
    with pytest.raises(UsageError, match="seed"):
        synthesize(tiny_model, tiny_config(), torch.zeros(1, 5, 16, 16, 16), [-1], steps=2)
    assert synthesize(tiny_model, tiny_config(), torch.zeros(1, 5, 16, 16, 16), [], steps=2) == []


def _conditions(n: int) -> list[torch.Tensor]:
    """n different conditions: the sphere pair's condition shifted along the first axis."""
    base = torch.from_numpy(sphere_pair(16)[0])[None]
    return [torch.roll(base, shifts=k, dims=2) for k in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_series_matches_one_synthesis_per_condition(tiny_model, precision):
    """Batched series with one seed = per-condition synthesis with that seed, up to batched-kernel rounding;
    chunks of one are the batch-1 calls themselves (bit-identical)."""
    cfg = tiny_config()
    conds = _conditions(3)
    calls = []
    series = synthesize_series(tiny_model, cfg, conds, 5, steps=4, precision=precision,
                               progress=lambda d, n: calls.append((d, n)))
    assert calls == [(i, 4) for i in range(1, 5)]
    singles = [synthesize(tiny_model, cfg, c, [5], steps=4, precision=precision)[0] for c in conds]
    tol = 1e-5 if precision == "fp32" else 2e-2
    for got, want in zip(series, singles):
        assert got.dtype == np.float32 and got.shape == (16, 16, 16)
        assert np.abs(got - want).max() < tol
    chunked = synthesize_series(tiny_model, cfg, conds, 5, steps=4, precision=precision, batch_size=1)
    assert all(np.array_equal(a, b) for a, b in zip(chunked, singles))
    # the conditions really differ, and another seed gives other images
    assert np.abs(singles[0] - singles[1]).mean() > 1e-3
    other = synthesize_series(tiny_model, cfg, conds, 6, steps=4, precision=precision)
    assert np.abs(other[0] - series[0]).mean() > 1e-3


def test_series_shares_the_noise_across_the_batch(tiny_model):
    """Two identical conditions in one batch: the same image (independent noise would differ by > 1e-3)."""
    cond = _conditions(1)[0]
    a, b = synthesize_series(tiny_model, tiny_config(), [cond, cond.clone()], 3, steps=4, precision="fp32")
    assert np.abs(a - b).max() < 1e-5
    assert synthesize_series(tiny_model, tiny_config(), [], 3) == []
    with pytest.raises(UsageError, match="seed"):
        synthesize_series(tiny_model, tiny_config(), [cond], -1)
    with pytest.raises(ValueError, match="batch_size"):
        synthesize_series(tiny_model, tiny_config(), [cond], 0, batch_size=0)
