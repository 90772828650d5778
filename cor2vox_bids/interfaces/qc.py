"""Quality control of one participant: thickness measured in the images vs the surfaces, similarity to the real
T1w, ribbon Dice, tissue means; tables, summary, per-vertex values and figures in one QC folder (``qc.layout``)."""

from __future__ import annotations

import json
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

from ..bids import atomic, naming
from ..geometry.surfaces import join_meshes, load_hemispheres
from ..qc import figures as qcfig
from ..qc import similarity, write_qc_tsv, write_summary_json
from ..qc.layout import QC_FOLDER
from ..qc.participant import measure_participant, thickness_summary
from ..qc.ribbon import ribbon_dice_in_brain
from ..qc.similarity import head_mask_from_intensity
from ..qc.tissue import tissue_means
from .synthesis import read_maps


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


class _Figures:
    """Figures of the QC folder: file names from ``bids.naming``, entities kept in ``figures.json``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.folder = QC_FOLDER.path(out_dir, "figures")
        self.folder.mkdir(exist_ok=True)
        self.entries: list[dict] = []

    def __call__(self, desc: str, suffix: str = "qc", hemi: str | None = None) -> Path:
        name = naming.work_figure_name(desc, suffix, hemi)
        self.entries.append({"file": f"{QC_FOLDER.figures}/{name}", "desc": desc, "suffix": suffix, "hemi": hemi})
        return self.folder / name

    def write_index(self) -> Path:
        ordered = sorted(self.entries, key=lambda e: (e["desc"], e["hemi"] or ""))
        path = QC_FOLDER.path(self.out_dir, "figure_index")
        return atomic.write_text(path, json.dumps(ordered, indent=2) + "\n")


def read_figure_index(qc_dir: Path) -> list[dict]:
    """The figures of a QC folder: ``[{"file", "desc", "suffix", "hemi"}]`` (``file`` relative to the folder)."""
    return json.loads(QC_FOLDER.path(qc_dir, "figure_index").read_text())


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
    figure = _Figures(out_dir)
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
    white = {h.hemi: h.white.vertices for h in hemis}
    qcfig.plot_error_maps(
        [
            (f"hemi-{hemi} {kind}", white[hemi], r.thickness - measured.surface[hemi])
            for kind, by_hemi in measured.results.items()
            for hemi, r in by_hemi.items()
        ],
        figure("vertexerror"),
    )
    summary = thickness_summary(measured)
    brain = maps["sdf_pial"] < 0
    ribbon = maps["ribbon"] > 0.5
    head = head_mask_from_intensity(images.get("real", images["synthetic"]))
    if "real" in images:
        summary.update(similarity(images["synthetic"], images["real"], brain, head))
    for kind, img in images.items():
        summary[f"ribbon_dice_{kind}"] = ribbon_dice_in_brain(img, maps["sdf_pial"], ribbon)["ribbon_dice"]
        summary.update({f"{k}_{kind}": v for k, v in tissue_means(img, maps).items()})
    summary["n_samples"] = len(synthetic)
    summary["qc_sample"] = Path(synthetic[0]).name
    write_qc_tsv(rows, QC_FOLDER.path(out_dir, "table"))
    write_summary_json(summary, QC_FOLDER.path(out_dir, "summary"))
    np.savez_compressed(QC_FOLDER.path(out_dir, "vertex"), **measured.per_vertex())
    surfaces = {kind: join_meshes([getattr(h, kind) for h in hemis]) for kind in ("white", "pial")}
    for kind, img in images.items():
        qcfig.plot_surface_contours(
            img,
            affine,
            surfaces,
            figure(f"slices{kind}", suffix="T1w"),
            title=f"{kind} T1w with white (yellow) and pial (red) contours",
        )
    qcfig.plot_conditioning(maps, figure("conditioning"))
    qcfig.plot_thickness_scatter(rows, figure("scatter"))
    figure.write_index()
    return out_dir


class _QCInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True)
    maps = File(exists=True, mandatory=True)
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    real = File(exists=True, desc="real T1w on the model grid (optional)")
    real_native = File(exists=True, desc="the real T1w at its own resolution (optional)")


class _QCOutputSpec(TraitedSpec):
    qc_dir = traits.Directory(exists=True, desc="QC table, summary, per-vertex maps and figures")


class QualityControl(SimpleInterface):
    """Thickness measured in the image vs the surfaces, similarity to the real T1w, ribbon Dice, figures."""

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
