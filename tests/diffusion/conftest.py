"""Fixtures of the diffusion-engine tests."""

from __future__ import annotations

import pytest
import torch

from cor2vox_bids.diffusion.unet import UNet3D
from diffusion_helpers import randomize, tiny_arch

# The tests use tiny tensors: one thread avoids OpenMP spin-waiting on a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture
def tiny_model() -> UNet3D:
    """A 16³ two-level UNet with random (non-zero) weights."""
    torch.manual_seed(0)
    return randomize(UNet3D(tiny_arch()))
