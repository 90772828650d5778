"""Quality control of one participant: thickness measured in the images vs the surfaces, similarity to the real
T1w, ribbon Dice (hard labels and partial-volume fractions), tissue means; tables, summary and per-vertex values in
one QC folder (``qc.layout``). The participant report draws every figure from these files (``interfaces.reports``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..geometry.surfaces import load_hemispheres
from ..qc import similarity, write_qc_tsv, write_summary_json
from ..qc.layout import QC_FOLDER
from ..qc.participant import measure_participant, thickness_summary
from ..qc.ribbon import ribbon_dice_in_brain, ribbon_soft_dice
from ..qc.similarity import head_mask_from_intensity
from ..qc.tissue import tissue_means
from .synthesis import read_maps


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def run_qc(
    hemis_npz: Path,
    maps_npz: Path,
    synthetic: Sequence[Path],
    real: Path | None,
    out_dir: Path,
    real_native: Path | None = None,
) -> Path:
    """QC of the first synthetic sample (and of the real T1w when given: ``real`` on the model grid, ``real_native``
    at its own resolution), written into ``out_dir`` (``QC_FOLDER``); thickness: ``qc.participant`` (docs/qc.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hemis = load_hemispheres(hemis_npz)
    maps, affine = read_maps(maps_npz)
    images = {"synthetic": _load(synthetic[0])}
    if real is not None:
        images["real"] = _load(real)
    measured_at = {kind: (img, affine) for kind, img in images.items()}
    if real_native is not None:
        native = nib.load(str(real_native))
        measured_at["real_native"] = (np.asarray(native.dataobj, dtype=np.float32), native.affine)
    measured = measure_participant(hemis, measured_at)
    rows = measured.rows
    summary = thickness_summary(measured)
    brain = maps["sdf_pial"] < 0
    ribbon = maps["ribbon"] > 0.5
    head = head_mask_from_intensity(images.get("real", images["synthetic"]))
    if "real" in images:
        summary.update(similarity(images["synthetic"], images["real"], brain, head))
    voxel_mm = float(np.mean(np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)))
    for kind, img in images.items():
        summary[f"ribbon_dice_{kind}"] = ribbon_dice_in_brain(img, maps["sdf_pial"], ribbon)["ribbon_dice"]
        soft = ribbon_soft_dice(img, maps["sdf_pial"], maps["sdf_white"], voxel_mm,
                                noise_sd=summary.get(f"noise_sd_{kind}"))
        summary[f"ribbon_soft_dice_{kind}"] = soft["ribbon_soft_dice"]
        if "pv_note" in soft:
            summary[f"ribbon_soft_dice_note_{kind}"] = soft["pv_note"]
        summary.update({f"{k}_{kind}": v for k, v in tissue_means(img, maps).items()})
    summary["n_samples"] = len(synthetic)
    summary["qc_sample"] = Path(synthetic[0]).name
    write_qc_tsv(rows, QC_FOLDER.path(out_dir, "table"))
    write_summary_json(summary, QC_FOLDER.path(out_dir, "summary"))
    np.savez_compressed(QC_FOLDER.path(out_dir, "vertex"), **measured.per_vertex())
    return out_dir


class _QCInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True)
    maps = File(exists=True, mandatory=True)
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    real = File(exists=True, desc="real T1w on the model grid (optional)")
    real_native = File(exists=True, desc="the real T1w at its own resolution (optional)")


class _QCOutputSpec(TraitedSpec):
    qc_dir = traits.Directory(exists=True, desc="QC table, summary and per-vertex maps")


class QualityControl(SimpleInterface):
    """Thickness measured in the image vs the surfaces, similarity to the real T1w, ribbon Dice."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        real = Path(self.inputs.real) if isdefined(self.inputs.real) else None
        native = Path(self.inputs.real_native) if isdefined(self.inputs.real_native) else None
        out = run_qc(
            Path(self.inputs.hemispheres),
            Path(self.inputs.maps),
            [Path(p) for p in self.inputs.synthetic],
            real,
            Path(runtime.cwd) / "qc",
            real_native=native,
        )
        self._results["qc_dir"] = str(out)
        return runtime
