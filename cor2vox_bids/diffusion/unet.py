"""OpenAI-style 3D UNet (residual blocks, timestep embedding, optional self-attention).

The layout follows the "improved/guided diffusion" UNet family used by BBDM and Cor2Vox: a stem
convolution, ``len(channel_mult)`` resolution levels of ``num_res_blocks`` residual blocks each (with
down-sampling between levels), a middle block (res – attention – res) and a mirrored decoder whose blocks
take the concatenated encoder activations. Residual blocks receive the timestep embedding either
additively or as a FiLM scale/shift after the second normalisation (``use_scale_shift_norm``).

Every spatial dimension of the input must be divisible by ``2 ** (len(channel_mult) - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

__all__ = ["UNetConfig", "UNet3D", "paper_config", "demo_config", "count_parameters", "timestep_embedding"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet3D` (everything needed to rebuild it from ``config.json``).

    ``attention_resolutions`` are spatial sizes (e.g. ``(16,)`` = attention where the feature maps of a
    ``image_size``-wide input are 16 voxels wide); ``image_size`` only serves to resolve them.
    ``upsample_mode`` is the interpolation of the decoder's 2× up-sampling (configs written before it existed
    load as ``nearest``, which they were trained with).
    """

    image_size: int = 128
    in_channels: int = 6
    out_channels: int = 1
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    middle_attention: bool = True
    num_head_channels: int = 64
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    dropout: float = 0.0
    norm_groups: int = 32
    upsample_mode: str = "nearest"

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions))
        if self.in_channels < 1 or self.out_channels < 1 or self.base_channels < 1:
            raise ValueError("in_channels, out_channels and base_channels must be positive")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError("channel_mult must be a non-empty tuple of positive integers")
        if self.num_res_blocks < 1:
            raise ValueError("num_res_blocks must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")
        if self.norm_groups < 1 or self.num_head_channels < 1:
            raise ValueError("norm_groups and num_head_channels must be positive")
        if self.upsample_mode not in ("nearest", "trilinear"):
            raise ValueError("upsample_mode must be 'nearest' or 'trilinear'")

    @property
    def divisor(self) -> int:
        """Every input dimension must be a multiple of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown architecture keys: {sorted(unknown)}")
        return cls(**d)


def paper_config() -> UNetConfig:
    """The Cor2Vox network: 128³, 6 input channels, 64 base, (1,2,3,4), attention at 16³ + middle (≈63 M),
    trilinear up-sampling as in the authors' code."""
    return UNetConfig(upsample_mode="trilinear")


def demo_config(image_size: int = 64, base_channels: int = 24, num_res_blocks: int = 1) -> UNetConfig:
    """A small UNet that trains on 2 CPU cores: mult (1, 2, 4), no attention, conv resampling.

    3.97 M parameters at 24 base channels / 1 residual block per level; 2.54 M at 16 / 2.
    """
    return UNetConfig(
        image_size=image_size,
        base_channels=base_channels,
        channel_mult=(1, 2, 4),
        num_res_blocks=num_res_blocks,
        attention_resolutions=(),
        middle_attention=False,
        num_head_channels=32,
        use_scale_shift_norm=True,
        resblock_updown=False,
        norm_groups=8,
    )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works for modules on the meta device too)."""
    return sum(p.numel() for p in module.parameters())


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (cos | sin) of (possibly fractional) timesteps ``t`` of shape (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _groups(channels: int, wanted: int) -> int:
    """Largest divisor of ``channels`` not above ``wanted``."""
    for g in range(min(wanted, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(_groups(channels, groups), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class _Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool, mode: str = "nearest"):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv3d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "trilinear":
            x = F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)
        else:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class _Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv3d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool3d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding; optionally changes resolution."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, *, dropout: float,
                 groups: int, scale_shift: bool, up: bool = False, down: bool = False,
                 upsample_mode: str = "nearest"):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_norm = _norm(channels, groups)
        self.in_conv = nn.Conv3d(channels, out_channels, 3, padding=1)
        self.resample: nn.Module | None = None
        if up:
            self.resample = _Upsample(channels, False, upsample_mode)
        elif down:
            self.resample = _Downsample(channels, False)
        self.emb = nn.Linear(emb_channels, 2 * out_channels if scale_shift else out_channels)
        self.out_norm = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = _zero(nn.Conv3d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.in_norm(x))
        if self.resample is not None:
            h = self.resample(h)
            x = self.resample(x)
        h = self.in_conv(h)
        e = self.emb(F.silu(emb)).to(h.dtype)[:, :, None, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all voxels (``channels // head_channels`` heads)."""

    def __init__(self, channels: int, head_channels: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        if channels % self.heads:
            raise ValueError(f"{channels} channels cannot be split into {self.heads} heads")
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c = x.shape[:2]
        h = self.norm(x).reshape(b, c, -1)
        q, k, v = self.qkv(h).reshape(b, 3, self.heads, c // self.heads, -1).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, heads, n, d)
        a = a.transpose(-1, -2).reshape(b, c, -1)
        return x + self.proj(a).reshape(x.shape)


class _Seq(nn.ModuleList):
    """A sequence of layers; residual blocks get the embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class UNet3D(nn.Module):
    """3D UNet ``net(x, t) -> out`` with ``x`` (B, in_channels, D, H, W) and integer timesteps ``t`` (B,)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        self.grad_checkpointing = False
        ch = cfg.base_channels
        emb_ch = 4 * ch
        g = cfg.norm_groups
        rb = dict(dropout=cfg.dropout, groups=g, scale_shift=cfg.use_scale_shift_norm)
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))

        self.input_blocks = nn.ModuleList([_Seq([nn.Conv3d(cfg.in_channels, ch, 3, padding=1)])])
        skip_chs = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_ch, mult * cfg.base_channels, **rb)]
                ch = mult * cfg.base_channels
                if cfg.image_size // ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels, g))
                self.input_blocks.append(_Seq(layers))
                skip_chs.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = (ResBlock(ch, emb_ch, ch, down=True, **rb) if cfg.resblock_updown
                        else _Downsample(ch, cfg.conv_resample))
                self.input_blocks.append(_Seq([down]))
                skip_chs.append(ch)
                ds *= 2

        middle: list[nn.Module] = [ResBlock(ch, emb_ch, ch, **rb)]
        if cfg.middle_attention:
            middle.append(AttentionBlock(ch, cfg.num_head_channels, g))
        middle.append(ResBlock(ch, emb_ch, ch, **rb))
        self.middle_block = _Seq(middle)

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chs.pop(), emb_ch, mult * cfg.base_channels, **rb)]
                ch = mult * cfg.base_channels
                if cfg.image_size // ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels, g))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_ch, ch, up=True, upsample_mode=cfg.upsample_mode, **rb)
                                  if cfg.resblock_updown else _Upsample(ch, cfg.conv_resample, cfg.upsample_mode))
                    ds //= 2
                self.output_blocks.append(_Seq(layers))

        self.out = nn.Sequential(_norm(ch, g), nn.SiLU(), _zero(nn.Conv3d(ch, cfg.out_channels, 3, padding=1)))

    def _run(self, block: _Seq, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return _checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict the objective (``y - x0`` for Cor2Vox) for inputs ``x`` at timesteps ``t``."""
        d = self.config.divisor
        if any(s % d for s in x.shape[2:]):
            raise ValueError(f"input spatial shape {tuple(x.shape[2:])} must be divisible by {d}")
        emb = self.time_embed(timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.config.base_channels))
        hs = []
        h = x
        for block in self.input_blocks:
            h = self._run(block, h, emb)
            hs.append(h)
        h = self._run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
