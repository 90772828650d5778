"""A tiny untrained model (built here) so that workflow tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_tiny_model(folder: Path) -> Path:
    import torch

    from cor2vox_bids.diffusion.checkpoint import make_model_config, save_model
    from cor2vox_bids.diffusion.unet import UNet3D, UNetConfig

    arch = UNetConfig(image_size=32, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(), middle_attention=False, num_head_channels=8, norm_groups=4)
    torch.manual_seed(0)
    model = UNet3D(arch)
    with torch.no_grad():  # the zero-initialised output layers would make every seed give y exactly
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    save_model(folder, model, make_model_config(arch, (32, 40, 32), 5.0, name="tiny-test", demo=True))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
