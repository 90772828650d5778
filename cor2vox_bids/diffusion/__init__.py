"""Diffusion engine: Brownian-bridge schedule, 3D UNet, checkpoints, conditioning, sampler, training.

Typical inference::

    cfg = verify_model(path)                      # before any participant starts (ModelError → exit 65)
    model, cfg = load_model(path, resolve_device("auto"))
    cond = prepare_condition(maps, cfg)           # maps: geometry's conditioning dict on the model grid
    volumes = synthesize(model, cfg, cond, seeds=[0, 1], steps=10)   # float32 [0, 1] arrays
"""

from .checkpoint import load_model, make_model_config, save_model, verify_model
from .conditioning import (
                           CONDITION_CHANNELS,
                           condition_from_array,
                           image_to_output,
                           prepare_condition,
                           prepare_image,
                           scale_image,
)
from .inference import resolve_device, synthesize, synthesize_series
from .schedule import BridgeSchedule, skip_timesteps
from .training import train
from .unet import UNet3D, UNetConfig, demo_config, paper_config

__all__ = [
    "BridgeSchedule", "skip_timesteps", "UNet3D", "UNetConfig", "paper_config", "demo_config",
    "make_model_config", "save_model", "load_model", "verify_model", "CONDITION_CHANNELS",
    "prepare_condition", "condition_from_array", "prepare_image", "scale_image", "image_to_output",
    "resolve_device", "synthesize", "synthesize_series", "train",
]
