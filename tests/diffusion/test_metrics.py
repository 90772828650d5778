"""Our torch SSIM equals scikit-image's structural_similarity (defaults)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from cor2vox_bids.diffusion.metrics import mae, ssim


@pytest.mark.parametrize("shape", [(12, 14, 10), (20, 20)])
def test_ssim_matches_skimage(shape):
    rng = np.random.default_rng(0)
    a = rng.random(shape)
    b = np.clip(a + 0.2 * rng.standard_normal(shape), 0, 1)
    for x, y in ((a, b), (a, a), (a, 1 - a)):
        ref = structural_similarity(x, y, data_range=1.0)
        assert ssim(x, y, data_range=1.0) == pytest.approx(ref, abs=1e-9)
    # invariant to scaling together with data_range, but not to shifts (the luminance term)
    assert ssim(2 * a, 2 * b, 2.0) == pytest.approx(ssim(a, b, 1.0), abs=1e-12)
    assert abs(ssim(2 * a - 1, 2 * b - 1, 2.0) - ssim(a, b, 1.0)) > 0.05
    assert mae(a, b) == pytest.approx(float(np.abs(a - b).mean()))
