"""Condition / image scaling to the network's [−1, 1] and back."""

from __future__ import annotations

import numpy as np
import pytest

from cor2vox_bids.diffusion.conditioning import image_to_output, prepare_condition, prepare_image, scale_image
from cor2vox_bids.errors import ParticipantError
from diffusion_helpers import tiny_config


def _maps(shape=(4, 4, 4)):
    base = np.zeros(shape, np.float32)
    return {"sdf_cortex": base + 5.0, "sdf_pial": base - 30.0, "sdf_white": base + 25.0,
            "edges": base + 0.25, "ribbon": base + 1.0}


def test_prepare_condition_scaling_and_order():
    cfg = tiny_config(4)  # sdf_clip_mm = 10
    m = _maps()
    m["sdf_cortex"][0, 0, 0] = -7.5
    c = prepare_condition(m, cfg)
    assert c.shape == (1, 5, 4, 4, 4) and c.dtype.is_floating_point
    # sdf: clip ±10 mm then /10; edges 0.25 → −0.5; ribbon 1 → 1
    assert c[0, :, 1, 1, 1].tolist() == [0.5, -1.0, 1.0, -0.5, 1.0]
    assert c[0, 0, 0, 0, 0].item() == -0.75
    assert c.min() >= -1 and c.max() <= 1


def test_prepare_condition_errors():
    cfg = tiny_config(4)
    m = _maps()
    del m["edges"]
    with pytest.raises(ValueError, match="edges"):
        prepare_condition(m, cfg)
    with pytest.raises(ValueError, match="model grid"):
        prepare_condition(_maps((8, 8, 8)), cfg)
    m = _maps()
    m["sdf_white"][1, 2, 3] = np.nan
    with pytest.raises(ParticipantError, match="sdf_white"):
        prepare_condition(m, cfg)


def test_image_scaling_roundtrip():
    rng = np.random.default_rng(0)
    v = rng.gamma(2.0, 100.0, size=(20, 20, 25)).astype(np.float32)
    v[0, 0, 0] = -5.0
    p = np.percentile(v, 99.9)
    x = prepare_image(v, tiny_config())
    assert x.shape == (1, 1, 20, 20, 25)
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    # 0 → −1, the 99.9th percentile → +1, linear in between; 0.1 % of voxels clipped at 1
    probe = np.concatenate([v.ravel(), [0.0, p / 2, 2 * p]]).astype(np.float32)
    q = np.percentile(probe, 99.9)
    assert np.allclose(scale_image(probe)[-3:], [-1.0, p / q - 1.0, 1.0], atol=1e-6)
    inside = (v > 0) & (v < p)
    assert np.allclose(x.numpy()[0, 0][inside], 2 * v[inside] / p - 1, atol=1e-6)
    assert (x.numpy() == 1.0).mean() == pytest.approx(0.001, abs=0.0006)
    out = image_to_output(x)
    assert out.dtype == np.float32 and out.shape == (20, 20, 25)
    assert np.allclose(out, np.clip(v / p, 0, 1), atol=1e-6)


def test_image_errors():
    with pytest.raises(ParticipantError, match="percentile"):
        scale_image(np.zeros((4, 4, 4)))
    with pytest.raises(ParticipantError, match="NaN"):
        scale_image(np.full((4, 4, 4), np.nan))
