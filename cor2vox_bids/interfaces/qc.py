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

from ..bids import naming
from ..geometry.surfaces import join_meshes, load_hemispheres
from ..qc import figures as qcfig
from ..qc import (
    image_thickness,
    region_rows,
    ribbon_dice,
    similarity,
    summarize_rows,
    tissue_labels,
    write_qc_tsv,
    write_summary_json,
)
from ..qc.layout import QC_FOLDER
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
        path.write_text(json.dumps(ordered, indent=2) + "\n")
        return path


def read_figure_index(qc_dir: Path) -> list[dict]:
    """The figures of a QC folder: ``[{"file", "desc", "suffix", "hemi"}]`` (``file`` relative to the folder)."""
    return json.loads(QC_FOLDER.path(qc_dir, "figure_index").read_text())


def run_qc(hemis_npz: Path, maps_npz: Path, synthetic: Sequence[Path], real: Path | None, out_dir: Path) -> Path:
    """QC of the first synthetic sample (and of the real T1w when given), written into ``out_dir`` (``QC_FOLDER``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = _Figures(out_dir)
    hemis = load_hemispheres(hemis_npz)
    maps, affine = read_maps(maps_npz)
    images = {"synthetic": _load(synthetic[0])}
    if real is not None:
        images["real"] = _load(real)
    rows: list[dict] = []
    per_vertex: dict[str, np.ndarray] = {}
    for h in hemis:
        w, p = h.white, h.pial
        measured = {
            kind: image_thickness(img, affine, w.vertices, w.faces, p.vertices, p.faces) for kind, img in images.items()
        }
        per_vertex[f"{h.hemi}_surface"] = h.thickness
        per_vertex.update({f"{h.hemi}_{k}": v for k, v in measured.items()})
        rows += region_rows(h.hemi, h.thickness, measured["synthetic"], measured.get("real"), h.labels, h.names)
        for kind, values in measured.items():
            qcfig.plot_error_map(
                w.vertices,
                values - h.thickness,
                figure(f"vertexerror{kind}", hemi=h.hemi),
                title=f"hemi-{h.hemi}: {kind} image − surface thickness (mm)",
            )
    summary = summarize_rows(rows)
    brain = maps["sdf_pial"] < 0
    ribbon = maps["ribbon"] > 0.5
    head = head_mask_from_intensity(images.get("real", images["synthetic"]))
    if "real" in images:
        summary.update(similarity(images["synthetic"], images["real"], brain, head))
    for kind, img in images.items():
        summary[f"ribbon_dice_{kind}"] = ribbon_dice(tissue_labels(img, head), ribbon)
        summary.update({f"{k}_{kind}": v for k, v in tissue_means(img, maps).items()})
    summary["n_samples"] = len(synthetic)
    summary["qc_sample"] = Path(synthetic[0]).name
    write_qc_tsv(rows, QC_FOLDER.path(out_dir, "table"))
    write_summary_json(summary, QC_FOLDER.path(out_dir, "summary"))
    np.savez_compressed(QC_FOLDER.path(out_dir, "vertex"), **per_vertex)
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
    qcfig.plot_region_bars(rows, figure("bars"))
    figure.write_index()
    return out_dir


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
        real = Path(self.inputs.real) if isdefined(self.inputs.real) else None
        out = run_qc(
            Path(self.inputs.hemispheres),
            Path(self.inputs.maps),
            [Path(p) for p in self.inputs.synthetic],
            real,
            Path(runtime.cwd) / "qc",
        )
        self._results["qc_dir"] = str(out)
        return runtime
