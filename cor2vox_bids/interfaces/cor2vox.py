"""Thin Nipype interfaces over :mod:`cor2vox_bids.steps` (no maths here)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from nipype.interfaces.base import (BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec,
                                    isdefined, traits)

LOGGER = logging.getLogger("cor2vox_bids.interfaces")


class _IngestInputSpec(BaseInterfaceInputSpec):
    participant_json = File(exists=True, mandatory=True, desc="participant inputs (paths) as JSON")


class _IngestOutputSpec(TraitedSpec):
    hemispheres = File(exists=True, desc="both hemispheres in scanner RAS (.npz)")
    warnings = traits.List(traits.Str)


class Ingest(SimpleInterface):
    """Read white/pial (+annotation) of both hemispheres, bring them to scanner RAS, validate."""

    input_spec = _IngestInputSpec
    output_spec = _IngestOutputSpec

    def _run_interface(self, runtime):
        from .. import steps

        spec = json.loads(Path(self.inputs.participant_json).read_text())
        hemis, warnings = steps.load_hemispheres(spec)
        for w in warnings:
            LOGGER.warning("%s: %s", spec.get("key"), w)
        self._results["hemispheres"] = str(steps.save_hemispheres(Path(runtime.cwd) / "hemispheres.npz", hemis))
        self._results["warnings"] = warnings
        return runtime


class _ConditioningInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True)
    grid_shape = traits.List(traits.Int, minlen=3, maxlen=3, mandatory=True)
    spacing_mm = traits.Float(mandatory=True)
    threads = traits.Int(0, usedefault=True, nohash=True,
                         desc="threads of the geometry kernels (0: all CPUs); the maps do not depend on it")


class _ConditioningOutputSpec(TraitedSpec):
    maps = File(exists=True, desc="conditioning maps + grid affine (.npz)")


class Conditioning(SimpleInterface):
    """Pial/white/cortex SDFs, ribbon and mesh-edge map on the model grid."""

    input_spec = _ConditioningInputSpec
    output_spec = _ConditioningOutputSpec

    def _run_interface(self, runtime):
        from .. import steps

        out = steps.make_conditioning(Path(self.inputs.hemispheres), self.inputs.grid_shape, self.inputs.spacing_mm,
                                      Path(runtime.cwd) / "maps.npz", threads=self.inputs.threads)
        self._results["maps"] = str(out)
        return runtime


class _SynthInputSpec(BaseInterfaceInputSpec):
    maps = File(exists=True, mandatory=True)
    model = traits.Str(mandatory=True, desc="model folder or .safetensors")
    model_sha256 = traits.Str(mandatory=True, desc="checked weights hash (part of the cache key)")
    seed = traits.Int(mandatory=True)
    steps = traits.Int(10, usedefault=True)
    eta = traits.Float(1.0, usedefault=True)
    device = traits.Str("cpu", usedefault=True)
    threads = traits.Int(1, usedefault=True)
    label = traits.Str("", usedefault=True, desc="participant key, for progress messages")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="Nipype's GPU slot accounting (MultiProc n_gpu_procs): one GPU node at a time")


class _SynthOutputSpec(TraitedSpec):
    synthetic = File(exists=True)


class Synthesize(SimpleInterface):
    """One synthetic T1w for one seed (Brownian-bridge sampling with the UNet)."""

    input_spec = _SynthInputSpec
    output_spec = _SynthOutputSpec

    def _run_interface(self, runtime):
        from .. import steps

        label = f"{self.inputs.label} seed {self.inputs.seed}"

        def progress(done: int, total: int) -> None:
            LOGGER.info("%s: sampling step %d/%d", label, done, total)

        out = steps.synthesize_sample(Path(self.inputs.maps), Path(self.inputs.model), self.inputs.seed,
                                      self.inputs.steps, self.inputs.eta, self.inputs.device,
                                      Path(runtime.cwd) / f"synth_seed{self.inputs.seed}.nii.gz",
                                      threads=self.inputs.threads, progress=progress)
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
        from .. import steps

        self._results["real"] = str(steps.real_on_grid(Path(self.inputs.t1w), Path(self.inputs.maps),
                                                       Path(runtime.cwd) / "real_on_grid.nii.gz"))
        return runtime


class _QCInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True)
    maps = File(exists=True, mandatory=True)
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    real = File(exists=True, desc="real T1w on the model grid (optional)")


class _QCOutputSpec(TraitedSpec):
    qc_dir = traits.Directory(exists=True, desc="QC table, summary, per-vertex maps and figures")


class QualityControl(SimpleInterface):
    """Thickness measured in the image vs the surfaces, similarity to the real T1w, ribbon Dice, figures."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        from .. import steps

        real = Path(self.inputs.real) if isdefined(self.inputs.real) else None
        out = steps.run_qc(Path(self.inputs.hemispheres), Path(self.inputs.maps),
                           [Path(p) for p in self.inputs.synthetic], real, Path(runtime.cwd) / "qc")
        self._results["qc_dir"] = str(out)
        return runtime


class _DerivInputSpec(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    participant_json = File(exists=True, mandatory=True)
    run_json = File(exists=True, mandatory=True, desc="model, seeds, steps, device, settings of the run")
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    maps = File(exists=True, mandatory=True)
    hemispheres = File(exists=True, mandatory=True)
    qc_dir = traits.Directory(exists=True, mandatory=True)


class _DerivOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str)
    report = traits.Str()


class WriteDerivatives(SimpleInterface):
    """Copy results into the BIDS derivatives folder (names from ``workflows.outputs``) and write the report."""

    input_spec = _DerivInputSpec
    output_spec = _DerivOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        from ..workflows.derivatives import write_participant_derivatives

        files, report = write_participant_derivatives(
            Path(self.inputs.output_dir), json.loads(Path(self.inputs.participant_json).read_text()),
            json.loads(Path(self.inputs.run_json).read_text()), [Path(p) for p in self.inputs.synthetic],
            Path(self.inputs.maps), Path(self.inputs.hemispheres), Path(self.inputs.qc_dir))
        self._results["out_files"] = [str(f) for f in files]
        self._results["report"] = str(report)
        return runtime
