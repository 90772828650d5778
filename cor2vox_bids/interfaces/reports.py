"""The participant report: a figures node (a worker job, cached) draws the figures from what the run produced
(surfaces, maps, images, the QC folder); the report node (main process, always rerun) publishes them into the
derivatives' ``figures/`` folder and writes ``sub-<label>.html`` with the run's config snapshot; also the
dataset-level data dictionary of the QC summary JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

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

from .. import __version__
from ..bids import atomic, naming
from ..bids.dataset import write_json
from ..geometry.surfaces import load_hemispheres
from ..qc.layout import QC_FOLDER
from ..qc.regions import read_qc_tsv
from ..reports.measures import summary_dictionary
from ..reports.page import FigureEntry
from ..reports.participant import ParticipantReport, make_participant_figures, write_participant_report
from .atrophy import series_report_section
from .common import PublishInputSpec, listed, optional_session
from .synthesis import read_maps


def qc_summary_dictionary() -> dict[str, dict[str, Any]]:
    """The QC's own dictionary of the summary keys (``<kind>`` patterns), when the QC provides one."""
    try:
        from ..qc.participant import SUMMARY_DICTIONARY
    except ImportError:  # an older QC without a summary dictionary: the report's own table describes the keys
        return {}
    return dict(SUMMARY_DICTIONARY)


def _json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


#: the figures node's index of what it drew (paths relative to its folder, alt text, captions, sizes)
FIGURES_INDEX = "figures.json"


def draw_participant_figures(
    folder: Path,
    subject: str,
    session: str | None,
    hemispheres_npz: Path,
    maps_npz: Path,
    synthetic: list[Path],
    real: Path | None,
    qc_dir: Path,
    model_dir: Path | None = None,
) -> Path:
    """Draw one participant's report figures under ``folder`` (with the relative names they get in the output
    folder) and index them in ``folder/figures.json``; returns the index. Pure of the run: the same inputs give
    the same files, so the node is cached like the others."""
    folder = Path(folder)
    hemis = load_hemispheres(hemispheres_npz)
    maps, maps_affine = read_maps(maps_npz)
    syn_img = nib.load(str(synthetic[0]))
    real_arr = None
    if real is not None:
        real_img = nib.load(str(real))
        real_arr = (np.asarray(real_img.dataobj, dtype=np.float32), real_img.affine)
    vertex_path = QC_FOLDER.path(qc_dir, "vertex")
    vertex = dict(np.load(vertex_path)) if vertex_path.is_file() else None
    rows = read_qc_tsv(QC_FOLDER.path(qc_dir, "table"))
    config = _json(Path(model_dir) / "config.json") if model_dir else {}
    conditions = config.get("conditions")
    clip = conditions.get("sdf_clip_mm") if isinstance(conditions, dict) else None

    def name(desc: str, suffix: str, hemi: str | None, extension: str) -> Path:
        path = folder / naming.figure_path(subject, session, desc, suffix, hemi, extension)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    kinds = ["synthetic", "real", "real_native"] if real is not None else ["synthetic"]
    figures = make_participant_figures(
        name, hemis, (np.asarray(syn_img.dataobj, dtype=np.float32), syn_img.affine), real=real_arr, maps=maps,
        maps_affine=maps_affine, vertex=vertex, rows=rows, kinds=kinds, clip_mm=float(clip) if clip else None)
    index = [{**asdict(f), "path": str(Path(f.path).relative_to(folder))} for f in figures]
    return atomic.write_json(folder / FIGURES_INDEX, index)


def publish_figures(index: Path, output_dir: Path) -> list[FigureEntry]:
    """Copy the figures listed in a figures node's ``index`` into ``output_dir`` (same relative names, atomic
    writes); returns their entries with the published paths."""
    folder = Path(index).parent
    out = []
    for entry in json.loads(Path(index).read_text()):
        target = Path(output_dir) / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic.copy_file(folder / entry["path"], target)
        out.append(FigureEntry(**{**entry, "path": target}))
    return out


def series_of(output_dir: Path, subject: str, session: str | None, run: dict) -> dict[str, Any]:
    """What the Methods say of the atrophy series and the seed std map, from their published sidecars (the spec
    of step 1's image, the number of samples of the std map); empty when neither was made."""
    out: dict[str, Any] = {}
    step1 = _json(Path(output_dir) / naming.sidecar_of(naming.atrophy_image_path(subject, session, 1)))
    if step1.get("AtrophySpec"):
        out["atrophy"] = step1["AtrophySpec"]
        out["atrophy_seed"] = step1.get("RandomSeed", (run.get("seeds") or [None])[0])
    std = _json(Path(output_dir) / naming.seedstd_path(subject, session, ".json")).get("SeedStdSummary") or {}
    if std.get("n_samples"):
        out["seed_std_samples"] = int(std["n_samples"])
    return out


def build_participant_report(
    output_dir: Path,
    subject: str,
    session: str | None,
    source: str,
    inputs: list[tuple[str, str]],
    run: dict,
    figures_index: Path,
    qc_dir: Path,
    warnings: list[str] | None = None,
) -> tuple[Path, list[Path]]:
    """Publish the drawn figures and write the participant's HTML report in ``output_dir``; returns (report,
    published figures)."""
    output_dir = Path(output_dir)
    figures = publish_figures(figures_index, output_dir)
    rows = read_qc_tsv(QC_FOLDER.path(qc_dir, "table"))
    summary = _json(QC_FOLDER.path(qc_dir, "summary"))
    model = run.get("model", {})
    card = _json(Path(model.get("path", "")) / "model_card.json") if model.get("path") else {}
    run_id = run.get("run_id")
    snapshot = _json(output_dir / naming.config_snapshot_path(run_id)) if run_id else {}
    crash_dir = output_dir / naming.log_dir(subject, run_id) if run_id else None
    crashes = sorted(crash_dir.glob(naming.NIPYPE_CRASH_GLOB)) if crash_dir and crash_dir.is_dir() else []
    n_samples = run.get("num_samples", 1)
    outputs = [("Synthetic T1w" + (f", seed {s}" if n_samples > 1 else ""),
                output_dir / naming.synth_path(subject, session, s, n_samples)) for s in run.get("seeds", [])]
    outputs += [(f"Conditioning map: {what}", output_dir / naming.conditioning_path(subject, session, name))
                for name, what in (("sdf_pial", "pial signed distance"), ("sdf_white", "white signed distance"),
                                   ("sdf_cortex", "cortex distance"), ("ribbon", "cortical ribbon"),
                                   ("edges", "tissue-boundary (edge) map"))
                if (output_dir / naming.conditioning_path(subject, session, name)).is_file()]
    outputs += [("Thickness per region (TSV)", output_dir / naming.qc_table_path(subject, session)),
                ("Its data dictionary", output_dir / naming.qc_table_path(subject, session, ".json")),
                ("QC summary (JSON)", output_dir / naming.qc_summary_path(subject, session)),
                ("Data dictionary of the QC summary", output_dir / naming.summary_dictionary_path())]
    if run_id:
        outputs.append(("Settings, versions and command of this run", output_dir / naming.config_snapshot_path(run_id)))
    report_file = output_dir / naming.report_path(subject, session)
    series_html, series_outputs = series_report_section(output_dir, subject, session, report_file)
    outputs += series_outputs
    report = ParticipantReport(
        subject=subject, session=session, surfaces_source=source, inputs=inputs, run=run, summary=summary,
        rows=rows, figures=figures, summary_dictionary=qc_summary_dictionary(),
        table_dictionary=_json(QC_FOLDER.path(qc_dir, "dictionary")),
        outputs=[(w, p) for w, p in outputs if p.is_file() or p.name.endswith(".json")], crash_files=crashes,
        warnings=list(warnings or []),
        versions=snapshot.get("versions") or {"cor2vox-bids": __version__}, model_card=card,
        started=snapshot.get("started"), run_id=run_id, command=snapshot.get("command"),
        extra_sections=[("series", "Atrophy series and seeds", series_html)] if series_html else [],
        series=series_of(output_dir, subject, session, run))
    path = write_participant_report(output_dir / naming.report_path(subject, session), report)
    return path, [f.path for f in figures]


def write_summary_dictionary(output_dir: Path, summary_keys: list[str]) -> Path:
    """``qc_summary_dictionary.json``: LongName, Description, Units (and expected range) of every key of the
    participants' ``desc-summary_qc.json`` files (the keys of this run's QC; merged with an existing file)."""
    path = Path(output_dir) / naming.summary_dictionary_path()
    current = _json(path)
    current.update(summary_dictionary(summary_keys, qc_summary_dictionary()))
    return write_json(path, dict(sorted(current.items())))


class _FiguresInputSpec(BaseInterfaceInputSpec):
    subject = traits.Str(mandatory=True)
    session = traits.Str("", usedefault=True)
    hemispheres = File(exists=True, mandatory=True)
    maps = File(exists=True, mandatory=True)
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    real = File(exists=True, desc="real T1w on the model grid (optional)")
    qc_dir = traits.Directory(exists=True, mandatory=True)
    model = traits.Str(desc="the model folder (its config.json gives the SDF clip the figures show)")


class _FiguresOutputSpec(TraitedSpec):
    index = File(exists=True, desc="figures.json: the drawn figures (relative paths), alt texts and captions")


class ParticipantFigures(SimpleInterface):
    """Draw a participant's report figures in the node's folder (a worker job, cached like any node)."""

    input_spec = _FiguresInputSpec
    output_spec = _FiguresOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        model = Path(i.model) if isdefined(i.model) and i.model else None
        if model is not None and not model.is_dir():  # a .safetensors file: its config.json lies beside it
            model = model.parent
        self._results["index"] = str(draw_participant_figures(
            Path(os.getcwd()), i.subject, i.session or None, Path(i.hemispheres), Path(i.maps),
            [Path(p) for p in i.synthetic], Path(i.real) if isdefined(i.real) else None, Path(i.qc_dir), model))
        return runtime


class _ReportInputSpec(PublishInputSpec):
    source = traits.Enum("freesurfer", "gifti", mandatory=True)
    inputs = traits.List(traits.Tuple(traits.Str, traits.Str), desc="(what, file) rows of the Summary")
    figures = File(exists=True, mandatory=True, desc="the figures node's index (figures.json)")
    qc_dir = traits.Directory(exists=True, mandatory=True)
    published = traits.List(traits.Str, desc="the derivatives node's files (orders this node after it)")
    series_published = traits.List(traits.Str, desc="the atrophy/seed-std derivatives (orders this node after them)")
    warnings = traits.List(traits.Str, desc="what the input checks warned about (shown in the Summary)")


class _ReportOutputSpec(TraitedSpec):
    report = traits.Str()
    figures = traits.List(traits.Str)


class ParticipantReportNode(SimpleInterface):
    """Publish the drawn figures into the derivatives' ``figures/`` folder and write ``sub-<label>.html`` (after
    the derivatives are published; always rerun, in the main process: the page must match the published files)."""

    input_spec = _ReportInputSpec
    output_spec = _ReportOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        i = self.inputs
        report, figures = build_participant_report(
            Path(i.output_dir), i.subject, optional_session(i), i.source, [tuple(x) for x in listed(i.inputs)],
            json.loads(Path(i.run_json).read_text()), Path(i.figures), Path(i.qc_dir), listed(i.warnings))
        summary = _json(QC_FOLDER.path(Path(i.qc_dir), "summary"))
        write_summary_dictionary(Path(i.output_dir), list(summary))
        self._results["report"] = str(report)
        self._results["figures"] = [str(f) for f in figures]
        return runtime
