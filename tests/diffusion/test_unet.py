"""3D UNet: parameter counts of the paper/demo configs, shapes, attention placement, bf16 agreement."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cor2vox_bids.diffusion.unet import (
    AttentionBlock,
    UNet3D,
    UNetConfig,
    count_parameters,
    demo_config,
    paper_config,
    timestep_embedding,
)
from diffusion_helpers import randomize, tiny_arch


def test_paper_config_parameter_count():
    """The Cor2Vox network has ≈63 M parameters; ours must lie within 10 %."""
    cfg = paper_config()
    assert (cfg.image_size, cfg.in_channels, cfg.base_channels, cfg.channel_mult) == (128, 6, 64, (1, 2, 3, 4))
    with torch.device("meta"):
        net = UNet3D(cfg)
    n = count_parameters(net)
    assert abs(n - 63e6) / 63e6 < 0.10, n
    # attention at 16³ (2 encoder + 3 decoder blocks of the lowest level) and in the middle block
    assert sum(isinstance(m, AttentionBlock) for m in net.modules()) == 6
    assert all(m.heads == 256 // 64 for m in net.modules() if isinstance(m, AttentionBlock))


@pytest.mark.parametrize("base,nrb,params", [(24, 1, 3_971_593), (16, 2, 2_535_041)])
def test_demo_config_is_small(base, nrb, params):
    with torch.device("meta"):
        net = UNet3D(demo_config(64, base, nrb))
    assert count_parameters(net) == params <= 5_000_000
    assert not any(isinstance(m, AttentionBlock) for m in net.modules())


def test_forward_shapes_and_divisibility(tiny_model):
    out = tiny_model(torch.randn(2, 6, 16, 8, 12), torch.tensor([0, 999]))
    assert out.shape == (2, 1, 16, 8, 12) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible"):
        tiny_model(torch.randn(1, 6, 15, 8, 8), torch.tensor([1]))


def test_fresh_net_outputs_zero_and_depends_on_t(tiny_model):
    fresh = UNet3D(tiny_arch())
    assert torch.equal(fresh(torch.randn(1, 6, 8, 8, 8), torch.tensor([5])), torch.zeros(1, 1, 8, 8, 8))
    x = torch.randn(1, 6, 8, 8, 8)
    assert not torch.allclose(tiny_model(x, torch.tensor([10])), tiny_model(x, torch.tensor([900])))


def test_attention_and_updown_variant_runs():
    cfg = UNetConfig(image_size=16, in_channels=6, base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(8,), num_head_channels=8, resblock_updown=True, norm_groups=8,
                     use_scale_shift_norm=False, dropout=0.1)
    net = randomize(UNet3D(cfg)).eval()
    assert sum(isinstance(m, AttentionBlock) for m in net.modules()) == 1 + 1 + 2
    out = net(torch.randn(1, 6, 16, 16, 16), torch.tensor([3]))
    assert out.shape == (1, 1, 16, 16, 16) and torch.isfinite(out).all()


def test_bf16_channels_last_close_to_fp32(tiny_model):
    """bf16 keeps 8 mantissa bits (rel. 2^-9 per rounding); over ~10 layers the output stays within 5 %."""
    x = torch.randn(1, 6, 16, 16, 16)
    t = torch.tensor([400])
    ref = tiny_model.eval()(x, t)
    net = tiny_model.to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x.contiguous(memory_format=torch.channels_last_3d), t).float()
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 0.05, rel


def test_grad_checkpointing_gives_same_gradients(tiny_model):
    x = torch.randn(1, 6, 8, 8, 8)
    t = torch.tensor([7])
    tiny_model.train()
    tiny_model(x, t).square().mean().backward()
    g1 = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    tiny_model.grad_checkpointing = True
    tiny_model(x, t).square().mean().backward()
    assert all(torch.allclose(a, p.grad, rtol=1e-5, atol=1e-7) for a, p in zip(g1, tiny_model.parameters()))


def test_config_dict_roundtrip_and_embedding():
    cfg = paper_config()
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError):
        dataclasses.replace(cfg, channel_mult=())
    e = timestep_embedding(torch.tensor([0.0, 3.0]), 8)
    assert torch.equal(e[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    assert e[1, 0].item() == pytest.approx(torch.cos(torch.tensor(3.0)).item(), abs=1e-6)


def test_upsample_mode_paper_trilinear_and_old_configs_nearest():
    """The paper network up-samples trilinearly (as the authors' code); configs written before the field
    existed (the shipped demo model) load as nearest, and the two modes give different outputs."""
    assert paper_config().upsample_mode == "trilinear" and demo_config().upsample_mode == "nearest"
    old = tiny_arch().to_dict()
    del old["upsample_mode"]
    assert UNetConfig.from_dict(old).upsample_mode == "nearest"
    with pytest.raises(ValueError, match="upsample_mode"):
        dataclasses.replace(tiny_arch(), upsample_mode="cubic")
    torch.manual_seed(0)
    near = randomize(UNet3D(tiny_arch())).eval()
    tri = UNet3D(dataclasses.replace(tiny_arch(), upsample_mode="trilinear")).eval()
    tri.load_state_dict(near.state_dict())  # same parameters: only the interpolation differs
    x, t = torch.randn(1, 6, 16, 16, 16), torch.tensor([5])
    with torch.no_grad():
        a, b = near(x, t), tri(x, t)
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-4)
