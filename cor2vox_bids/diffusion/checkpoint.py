"""Model folders (``model.safetensors`` + ``config.json``) and training-state checkpoints, pickle-free.

``config.json`` of a model folder::

    {"name": str, "demo": bool, "code_version": str, "weights_sha256": hex,
     "architecture": UNetConfig.to_dict(),
     "grid": {"shape": [D, H, W], "spacing_mm": float,
              "placement": "RAS-aligned, centred on the pial bounding-box centre"},
     "intensity": {"method": "robust-minmax", "percentile": 99.9, "range": [-1, 1]},
     "conditions": {"channels": [...5 names...], "sdf_clip_mm": float, "bridge_y": "sdf_cortex"},
     "schedule": {"T", "m_min", "m_max", "s", "objective": "ysubx"},
     "training": {...free...}}

The sha256 of the weights file is recorded at save time and checked on every load; weights are read with
safetensors only (never ``torch.load``/pickle).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from .. import __version__
from ..errors import MissingInputError, ModelError
from .conditioning import CONDITION_CHANNELS
from .schedule import BridgeSchedule
from .unet import UNet3D, UNetConfig

__all__ = ["WEIGHTS_NAME", "CONFIG_NAME", "PLACEMENT", "make_model_config", "save_model", "load_model",
           "verify_model", "file_sha256", "save_training_state", "load_training_state", "model_paths",
           "load_init_weights", "MODEL_SECTIONS"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
STATE_WEIGHTS = "state.safetensors"
STATE_META = "state.json"
PLACEMENT = "RAS-aligned, centred on the pial bounding-box centre"
REQUIRED_SECTIONS = ("name", "demo", "architecture", "grid", "intensity", "conditions", "schedule")


def make_model_config(architecture: UNetConfig, grid_shape: Sequence[int], spacing_mm: float, *, name: str,
                      demo: bool, sdf_clip_mm: float = 20.0, percentile: float = 99.9,
                      schedule: BridgeSchedule | None = None, training: Mapping | None = None) -> dict:
    """A complete model config dict (everything but ``weights_sha256`` / ``code_version``)."""
    schedule = schedule or BridgeSchedule()
    return {
        "name": name,
        "demo": bool(demo),
        "architecture": architecture.to_dict(),
        "grid": {"shape": [int(s) for s in grid_shape], "spacing_mm": float(spacing_mm), "placement": PLACEMENT},
        "intensity": {"method": "robust-minmax", "percentile": float(percentile), "range": [-1.0, 1.0]},
        "conditions": {"channels": list(CONDITION_CHANNELS), "sdf_clip_mm": float(sdf_clip_mm),
                       "bridge_y": "sdf_cortex"},
        "schedule": schedule.to_dict(),
        "training": dict(training or {}),
    }


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_model(folder: str | Path, model: UNet3D, config_dict: Mapping) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (with sha256 and code version) into ``folder``."""
    missing = [k for k in REQUIRED_SECTIONS if k not in config_dict]
    if missing:
        raise ValueError(f"model config lacks {missing}; build it with make_model_config()")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(dict(config_dict))
    cfg["architecture"] = model.config.to_dict()
    cfg["code_version"] = __version__
    # one metadata key only: safetensors keeps metadata in a hash map, so several keys come out in random
    # order and the same weights would get different checksums
    blob = _st_save(_state_tensors(model), metadata={"format": "pt"})
    cfg["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    _atomic_write(folder / WEIGHTS_NAME, blob)
    _atomic_write(folder / CONFIG_NAME, (json.dumps(cfg, indent=2) + "\n").encode())
    return folder


def model_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights file, config file) for a model folder or its ``.safetensors`` file."""
    p = Path(path)
    if not p.exists():
        raise MissingInputError("model folder or weights file does not exist", p)
    if p.is_dir():
        if not (p / WEIGHTS_NAME).exists() and not (p / CONFIG_NAME).exists():
            raise ModelError(f"not a model folder: it holds neither {WEIGHTS_NAME} nor {CONFIG_NAME}", p)
        return p / WEIGHTS_NAME, p / CONFIG_NAME
    if p.suffix != ".safetensors":
        raise ModelError(f"not a model: give a model folder ({WEIGHTS_NAME} + {CONFIG_NAME}) or its .safetensors file",
                         p)
    return p, p.with_name(CONFIG_NAME)


def _read_config(cfg_path: Path, require_sha: bool = True) -> dict:
    if not cfg_path.is_file():
        raise ModelError("model config.json is missing (it must lie beside the weights)", cfg_path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model config is not readable JSON ({exc})", cfg_path) from exc
    if not isinstance(cfg, dict):
        raise ModelError("model config is not a JSON object", cfg_path)
    missing = [k for k in (*REQUIRED_SECTIONS, *(("weights_sha256",) if require_sha else ())) if k not in cfg]
    if missing:
        raise ModelError(f"model config lacks the entries {missing}", cfg_path)
    try:
        UNetConfig.from_dict(cfg["architecture"])
        BridgeSchedule.from_dict(cfg["schedule"])
        shape = [int(s) for s in cfg["grid"]["shape"]]
        float(cfg["grid"]["spacing_mm"])
        chans = list(cfg["conditions"]["channels"])
        float(cfg["conditions"]["sdf_clip_mm"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model config is invalid: {exc}", cfg_path) from exc
    arch = UNetConfig.from_dict(cfg["architecture"])
    if len(shape) != 3 or any(s % arch.divisor for s in shape):
        raise ModelError(f"grid shape {shape} is not 3D or not divisible by {arch.divisor}", cfg_path)
    if arch.in_channels != len(chans) + 1:
        raise ModelError(f"architecture has {arch.in_channels} input channels, expected "
                         f"{len(chans) + 1} (x_t + {len(chans)} conditions)", cfg_path)
    if cfg["conditions"].get("bridge_y", "sdf_cortex") not in chans:
        raise ModelError("conditions.bridge_y is not among the condition channels", cfg_path)
    return cfg


def _check_sha(weights: Path, expected: str, actual: str) -> None:
    if actual != str(expected).lower():
        raise ModelError(f"weights checksum does not match config.json (sha256 {actual[:12]}…, expected "
                         f"{str(expected)[:12]}…): the file is corrupt, truncated or from another model",
                         weights)


def _expected_shapes(arch: UNetConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = UNet3D(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _compare_keys(weights: Path, have: Mapping[str, Sequence[int]], want: Mapping[str, Sequence[int]]) -> None:
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    if missing or unexpected:
        raise ModelError(f"weights do not fit the architecture in config.json: missing {missing[:5]}"
                         f"{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'…' if len(unexpected) > 5 else ''}", weights)
    bad = [(k, tuple(have[k]), tuple(want[k])) for k in want if tuple(have[k]) != tuple(want[k])]
    if bad:
        k, h, w = bad[0]
        raise ModelError(f"weights do not fit the architecture in config.json: {len(bad)} tensors have "
                         f"the wrong shape, e.g. {k} is {h}, expected {w}", weights)


def _header(weights: Path) -> dict[str, Any]:
    try:
        with open(weights, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            size = weights.stat().st_size
            if n > size - 8:
                raise ValueError("header length exceeds the file size")
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"not a valid safetensors file ({exc})", weights) from exc
    header.pop("__metadata__", None)
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end > size:
        raise ModelError("weights file is truncated (checksum does not match)", weights)
    return header


def verify_model(path: str | Path) -> dict:
    """Check a model folder (config, sha256, tensor names and shapes) without loading it; return its config."""
    weights, cfg_path = model_paths(path)
    cfg = _read_config(cfg_path)
    if not weights.is_file():
        raise ModelError("model weights file is missing", weights)
    _check_sha(weights, cfg["weights_sha256"], file_sha256(weights))
    header = _header(weights)
    _compare_keys(weights, {k: v["shape"] for k, v in header.items()},
                  _expected_shapes(UNetConfig.from_dict(cfg["architecture"])))
    return cfg


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[UNet3D, dict]:
    """Load a verified model (eval mode, on ``device``) and its config from a folder or ``.safetensors``."""
    weights, cfg_path = model_paths(path)
    cfg = _read_config(cfg_path)
    if not weights.is_file():
        raise ModelError("model weights file is missing", weights)
    try:
        blob = weights.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the weights ({exc})", weights) from exc
    _check_sha(weights, cfg["weights_sha256"], hashlib.sha256(blob).hexdigest())
    try:
        state = _st_load(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"not a valid safetensors file ({exc})", weights) from exc
    arch = UNetConfig.from_dict(cfg["architecture"])
    _compare_keys(weights, {k: v.shape for k, v in state.items()}, _expected_shapes(arch))
    model = UNet3D(arch)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device).eval(), cfg


# sections of a model config that define what the weights mean (a model initialised from another keeps them)
MODEL_SECTIONS = ("architecture", "grid", "intensity", "conditions", "schedule")


def load_init_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, str]:
    """Weights (float32 state dict), config and sha256 of a model folder to initialise a training from.

    Unlike :func:`load_model` a config without ``weights_sha256`` is accepted (the caller reports the
    computed sha256); when one is recorded it must match. Tensor names and shapes are checked against the
    folder's own architecture (:class:`ModelError`, exit 65, on any mismatch).
    """
    weights, cfg_path = model_paths(path)
    cfg = _read_config(cfg_path, require_sha=False)
    if not weights.is_file():
        raise ModelError("model weights file is missing", weights)
    try:
        blob = weights.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the weights ({exc})", weights) from exc
    sha = hashlib.sha256(blob).hexdigest()
    if cfg.get("weights_sha256"):
        _check_sha(weights, cfg["weights_sha256"], sha)
    try:
        state = _st_load(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"not a valid safetensors file ({exc})", weights) from exc
    _compare_keys(weights, {k: v.shape for k, v in state.items()},
                  _expected_shapes(UNetConfig.from_dict(cfg["architecture"])))
    return {k: v.float() for k, v in state.items()}, cfg, sha


# -- training-state checkpoints ------------------------------------------------------------------------

def save_training_state(folder: str | Path, tensors: Mapping[str, torch.Tensor], meta: Mapping) -> Path:
    """Write ``state.safetensors`` (tensors) + ``state.json`` (meta + sha256) atomically into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    blob = _st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()})
    meta = dict(meta)
    meta["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
    meta["code_version"] = __version__
    _atomic_write(folder / STATE_WEIGHTS, blob)
    _atomic_write(folder / STATE_META, (json.dumps(meta, indent=1) + "\n").encode())
    return folder


def load_training_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """Read a training state written by :func:`save_training_state`; ``None`` if there is none."""
    folder = Path(folder)
    meta_path, blob_path = folder / STATE_META, folder / STATE_WEIGHTS
    if not meta_path.is_file() or not blob_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        blob = blob_path.read_bytes()
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"training state is unreadable ({exc})", meta_path) from exc
    _check_sha(blob_path, meta.get("tensors_sha256", ""), hashlib.sha256(blob).hexdigest())
    return _st_load(blob), meta
