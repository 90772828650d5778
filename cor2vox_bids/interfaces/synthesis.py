"""Conditioning maps on the model grid, the real T1w on that grid, and one synthetic T1w per seed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from ..bids import atomic, naming
from ..geometry import MAP_NAMES, ModelGrid, conditioning_maps, resample, set_num_threads
from ..geometry.surfaces import Hemisphere, load_hemispheres

if TYPE_CHECKING:  # torch is imported only where a node samples
    import torch

    from ..diffusion.unet import UNet3D

LOGGER = logging.getLogger("cor2vox_bids.interfaces")


# -- files ---------------------------------------------------------------------------------------------------


def save_maps(path: Path, maps: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    """Conditioning maps (float32) and the grid's affine in one ``.npz``."""
    np.savez(path, affine=np.asarray(affine), **{k: maps[k].astype(np.float32) for k in MAP_NAMES})
    return path


def read_maps(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inverse of :func:`save_maps`: (maps, affine)."""
    with np.load(path) as data:
        return {k: data[k] for k in MAP_NAMES}, data["affine"]


def save_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """A NIfTI with the affine as qform and sform (code 1, scanner) and millimetre units."""
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return atomic.save_image(img, path)


# -- conditioning --------------------------------------------------------------------------------------------


def participant_grid(hemis: Sequence[Hemisphere], shape: Sequence[int], spacing_mm: float) -> ModelGrid:
    """The model grid placed around a participant's pial surfaces (placement rule of the model config)."""
    verts = np.concatenate([h.pial.vertices for h in hemis])
    return ModelGrid.around(verts, tuple(int(s) for s in shape), float(spacing_mm))


def make_conditioning(
    hemis_npz: Path, shape: Sequence[int], spacing_mm: float, out_npz: Path, threads: int | None = None
) -> Path:
    """Conditioning maps of both hemispheres on the model grid, saved with the grid's affine.

    ``threads``: threads of the geometry kernels (default: all CPUs; the maps do not depend on it)."""
    set_num_threads(threads)
    hemis = load_hemispheres(hemis_npz)
    grid = participant_grid(hemis, shape, spacing_mm)
    return save_maps(out_npz, conditioning_maps(hemis, grid), grid.affine)


def real_on_grid(t1w: Path, maps_npz: Path, out_nii: Path) -> Path:
    """The participant's real T1w resampled (trilinear) onto the model grid, scaled to [0, 1] like the model."""
    from ..diffusion.conditioning import scale_image

    maps, affine = read_maps(maps_npz)
    img = nib.load(str(t1w))
    grid = ModelGrid(affine=affine, shape=maps["ribbon"].shape)
    vol = resample(np.asarray(img.dataobj, dtype=np.float32), img.affine, grid, order=1)
    scaled = (scale_image(vol) + 1.0) / 2.0
    return save_volume(out_nii, scaled.astype(np.float32), affine)


def load_for_sampling(model_path: Path, device: str, threads: int | None = None) -> tuple[UNet3D, dict, torch.device]:
    """(model, config, torch device) for a synthesis node: torch's thread count set to ``threads`` (when given),
    the device resolved and the model loaded onto it."""
    import torch

    from ..diffusion.checkpoint import load_model
    from ..diffusion.inference import resolve_device

    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    model, config = load_model(model_path, dev)
    return model, config, dev


def synthesize_sample(
    maps_npz: Path,
    model_path: Path,
    seed: int,
    steps: int,
    eta: float,
    device: str,
    out_nii: Path,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """One synthetic T1w (float32 in [0, 1], on the model grid in scanner RAS) for one seed."""
    from ..diffusion.conditioning import prepare_condition
    from ..diffusion.inference import synthesize

    model, config, dev = load_for_sampling(model_path, device, threads)
    maps, affine = read_maps(maps_npz)
    cond = prepare_condition(maps, config)
    (volume,) = synthesize(
        model, config, cond, [int(seed)], steps=int(steps), eta=float(eta), device=dev, progress=progress
    )
    return save_volume(out_nii, np.asarray(volume, dtype=np.float32).reshape(maps["ribbon"].shape), affine)


def progress_writer(directory: str, key: str, seed: int) -> Callable[[str], None]:
    """Where a node's progress goes: appended (one line, flushed) to ``naming.progress_file`` when ``directory``
    is set — a worker of any plugin writes there and the main process prints it — else logged here."""
    if not directory:
        return lambda line: LOGGER.info("%s", line)
    path = naming.progress_file(Path(directory), key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")

    def write(line: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    return write


# -- interfaces ----------------------------------------------------------------------------------------------


class _ConditioningInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True)
    grid_shape = traits.List(traits.Int, minlen=3, maxlen=3, mandatory=True)
    spacing_mm = traits.Float(mandatory=True)
    threads = traits.Int(
        0,
        usedefault=True,
        nohash=True,
        desc="threads of the geometry kernels (0: all CPUs); the maps do not depend on it",
    )


class _ConditioningOutputSpec(TraitedSpec):
    maps = File(exists=True, desc="conditioning maps + grid affine (.npz)")


class Conditioning(SimpleInterface):
    """Pial/white/cortex SDFs, ribbon and mesh-edge map on the model grid."""

    input_spec = _ConditioningInputSpec
    output_spec = _ConditioningOutputSpec

    def _run_interface(self, runtime):
        out = make_conditioning(
            Path(self.inputs.hemispheres),
            self.inputs.grid_shape,
            self.inputs.spacing_mm,
            Path(runtime.cwd) / "maps.npz",
            threads=self.inputs.threads,
        )
        self._results["maps"] = str(out)
        return runtime


class SamplingInputSpec(BaseInterfaceInputSpec):
    """What every synthesis node is told: model, seed, sampling settings, device, threads and progress."""

    model = traits.Str(mandatory=True, desc="model folder or .safetensors")
    model_sha256 = traits.Str(mandatory=True, desc="checked weights hash (part of the cache key)")
    seed = traits.Int(mandatory=True)
    steps = traits.Int(10, usedefault=True)
    eta = traits.Float(1.0, usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    threads = traits.Int(1, usedefault=True)
    label = traits.Str("", usedefault=True, desc="participant key, for progress messages")
    progress_dir = traits.Str("", usedefault=True, nohash=True,
                              desc="folder for progress lines the main process prints (empty: log them here)")
    use_gpu = traits.Bool(
        False,
        usedefault=True,
        nohash=True,
        desc="Nipype's GPU slot accounting (MultiProc n_gpu_procs): one GPU node at a time",
    )


class _SynthInputSpec(SamplingInputSpec):
    maps = File(exists=True, mandatory=True)


class _SynthOutputSpec(TraitedSpec):
    synthetic = File(exists=True)


class Synthesize(SimpleInterface):
    """One synthetic T1w for one seed (Brownian-bridge sampling with the UNet)."""

    input_spec = _SynthInputSpec
    output_spec = _SynthOutputSpec

    def _run_interface(self, runtime):
        label = f"{self.inputs.label} seed {self.inputs.seed}"

        report = progress_writer(self.inputs.progress_dir, self.inputs.label, self.inputs.seed)

        def progress(done: int, total: int) -> None:
            report(f"{label}: sampling step {done}/{total}")

        out = synthesize_sample(
            Path(self.inputs.maps),
            Path(self.inputs.model),
            self.inputs.seed,
            self.inputs.steps,
            self.inputs.eta,
            self.inputs.device,
            Path(runtime.cwd) / naming.work_image_name(f"synth_seed{self.inputs.seed}"),
            threads=self.inputs.threads,
            progress=progress,
        )
        self._results["synthetic"] = str(out)
        return runtime


class _RealInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True)
    maps = File(exists=True, mandatory=True)


class _RealOutputSpec(TraitedSpec):
    real = File(exists=True)


class RealOnGrid(SimpleInterface):
    """The participant's real T1w on the model grid, scaled like the model's images."""

    input_spec = _RealInputSpec
    output_spec = _RealOutputSpec

    def _run_interface(self, runtime):
        self._results["real"] = str(
            real_on_grid(
                Path(self.inputs.t1w),
                Path(self.inputs.maps),
                Path(runtime.cwd) / naming.work_image_name("real_on_grid"),
            )
        )
        return runtime
