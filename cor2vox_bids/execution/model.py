"""Model and device checks made once, before any participant starts (exit 65 / 75 on failure)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ModelError
from ..settings import Settings

DEMO_MODEL_DIR = "demo_model"
#: sampling steps when neither ``--steps`` nor the model's config.json (``sampling.steps``) says
DEFAULT_SAMPLING_STEPS = 10


def default_model_path() -> Path:
    """The DEMO model shipped as package data (``cor2vox_bids/data/demo_model``)."""
    return Path(str(resources.files("cor2vox_bids") / "data" / DEMO_MODEL_DIR))


@dataclass(frozen=True)
class ModelInfo:
    """What the workflow needs to know about the model, checked once."""

    path: Path  # the model folder or .safetensors file as given
    weights: Path
    sha256: str
    name: str
    demo: bool
    device: str  # resolved torch device string ("cpu", "cuda:0")
    grid_shape: tuple[int, int, int]
    spacing_mm: float
    sampling_steps: int = DEFAULT_SAMPLING_STEPS  # the model's default number of sampling steps

    def summary(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.name,
            "demo": self.demo,
            "sha256": self.sha256,
            "device": self.device,
            "grid_shape": list(self.grid_shape),
            "spacing_mm": self.spacing_mm,
            "sampling_steps": self.sampling_steps,
        }

    @property
    def label(self) -> str:
        return f"{self.name} (DEMO model, not for research use)" if self.demo else self.name


LOCAL_PLUGINS = ("MultiProc", "LegacyMultiProc", "Linear")


def runs_remotely(settings: Settings) -> bool:
    """True when ``--use-plugin`` names a plugin that runs nodes on other machines (SLURM, SGE, ...)."""
    if settings.use_plugin is None or not Path(settings.use_plugin).is_file():
        return False
    import yaml

    try:
        data = yaml.safe_load(Path(settings.use_plugin).read_text()) or {}
    except yaml.YAMLError:
        return False  # the plugin loader reports the broken file later, with its own exit code
    return isinstance(data, dict) and str(data.get("plugin", "")) not in LOCAL_PLUGINS


def model_sampling_steps(config: dict, cfg_path: Path | None = None) -> int:
    """The model's default number of sampling steps: ``sampling.steps`` in its config.json, else 10 (exit 65
    when it is not an integer from 1 to 1000)."""
    sampling = config.get("sampling") if isinstance(config.get("sampling"), dict) else {}
    steps = sampling.get("steps", DEFAULT_SAMPLING_STEPS)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1000:
        raise ModelError(f"sampling.steps must be an integer from 1 to 1000, not {steps!r}", cfg_path)
    return steps


def check_model_and_device(settings: Settings) -> ModelInfo:
    """Verify the model's files and checksum and resolve ``--device``; raises ModelError / DeviceUnavailableError."""
    from ..diffusion.checkpoint import model_paths, verify_model
    from ..diffusion.inference import resolve_device
    from ..diffusion.resources import check_model_config

    path = settings.model if settings.model is not None else default_model_path()
    if settings.model is None and not path.exists():
        raise ModelError("the shipped demo model is missing from the installation; pass --model PATH", path)
    config = verify_model(path)
    weights, cfg_path = model_paths(path)
    check_model_config(config, cfg_path, settings.mem)  # grid, channels, memory vs --mem (65 naming config.json)
    # With a cluster plugin the nodes run elsewhere: the device is resolved on the compute node, not here.
    device = settings.device if runs_remotely(settings) else resolve_device(settings.device)
    grid = config["grid"]
    steps = model_sampling_steps(config, cfg_path)
    return ModelInfo(
        path=Path(path),
        weights=weights,
        sha256=config["weights_sha256"],
        name=config["name"],
        demo=bool(config.get("demo")),
        device=str(device),
        grid_shape=tuple(int(s) for s in grid["shape"]),
        spacing_mm=float(grid["spacing_mm"]),
        sampling_steps=steps,
    )
