"""The participant report (``sub-<label>.html``) in the fMRIPrep/MRIQC manner: navbar; Summary; Anatomy (mosaics
with surface contours, real ↔ synthetic flicker); Conditioning; QC (named measures with units, definitions and
flags, coverage, region charts, error maps on the cortex); Methods (boilerplate with citations and versions);
About/Errors. One offline HTML file plus its figures; nothing here computes a measure — numbers come from the QC
files and figures from :mod:`cor2vox_bids.reports.figures`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import __version__
from ..bids import atomic
from . import figures as F
from .measures import (
    KIND_LABELS,
    MEASURES,
    Measure,
    describe,
    expected_text,
    flag,
    format_value,
    region_name,
    shown_units,
)
from .page import FigureEntry, code, demo_notice, esc, figure, link, page, section, table

__all__ = ["ParticipantReport", "make_participant_figures", "write_participant_report", "methods_html",
           "REFERENCES", "qc_flags", "CrashEntry", "read_crash_file", "write_error_report"]

#: figure name callback: (desc, suffix, hemi, extension) → published path
FigureNamer = Callable[[str, str, "str | None", str], Path]

REFERENCES = {
    "cor2vox": "Cortex-Grounded Diffusion Models for Brain Image Generation. arXiv:2601.19498.",
    "cor2vox_ipmi": "Cor2Vox, Information Processing in Medical Imaging (IPMI) 2025. arXiv:2502.12742.",
    "bbdm": "Li B, Xue K, Liu B, Lai Y-K. BBDM: Image-to-image translation with Brownian bridge diffusion models. "
            "CVPR 2023.",
    "thickness": "Fischl B, Dale AM. Measuring the thickness of the human cerebral cortex from magnetic resonance "
                 "images. PNAS 2000;97(20):11050–11055.",
    "dk": "Desikan RS et al. An automated labeling system for subdividing the human cerebral cortex on MRI scans "
          "into gyral based regions of interest. NeuroImage 2006;31(3):968–980.",
    "ssim": "Wang Z, Bovik AC, Sheikh HR, Simoncelli EP. Image quality assessment: from error visibility to "
            "structural similarity. IEEE Trans Image Process 2004;13(4):600–612.",
    "nipype": "Gorgolewski K et al. Nipype: a flexible, lightweight and extensible neuroimaging data processing "
              "framework in Python. Front Neuroinform 2011;5:13.",
    "pybids": "Yarkoni T et al. PyBIDS: Python tools for BIDS datasets. J Open Source Softw 2019;4(40):1294.",
}


@dataclass
class ParticipantReport:
    """Everything the participant report shows (paths are the published files, linked relative to the page)."""

    subject: str
    session: str | None
    surfaces_source: str  # "freesurfer" or "gifti"
    inputs: list[tuple[str, str]]  # (what, file) — the T1w first when there is one
    run: Mapping[str, Any]  # run description: model {name, sha256, demo, path}, seeds, steps, eta, device
    summary: Mapping[str, Any]  # the QC summary JSON
    rows: list[dict[str, Any]]  # the QC region TSV
    figures: list[FigureEntry]
    summary_dictionary: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    table_dictionary: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    outputs: list[tuple[str, Path]] = field(default_factory=list)  # (what, published file)
    crash_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    versions: Mapping[str, str] = field(default_factory=dict)
    model_card: Mapping[str, Any] | None = None
    started: str | None = None  # ISO time the run started
    run_id: str | None = None
    command: list[str] | None = None
    extra_sections: list[tuple[str, str, str]] = field(default_factory=list)  # (anchor, title, html) before Methods
    #: what the Methods say of the extra series: ``atrophy`` (the normalised spec: steps, falloff_mm, regions with
    #: hemi, region/label and thinning_mm or thinning_fraction), ``atrophy_seed`` and ``seed_std_samples``
    series: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f" ses-{self.session}" if self.session else "")


# -- figures ---------------------------------------------------------------------------------------------------

_CONDITIONING_TITLES = {"sdf_cortex": "Cortex SDF", "sdf_pial": "Pial SDF", "sdf_white": "White SDF",
                        "edges": "Tissue-boundary (edge) map", "ribbon": "Cortical ribbon"}
_CONDITIONING_UNITS = {"sdf_cortex": "signed distance (mm)", "sdf_pial": "signed distance (mm)",
                       "sdf_white": "signed distance (mm)", "edges": "weight (0 to 1)", "ribbon": "mask (0 or 1)"}


def _join(meshes: Sequence[tuple[NDArray, NDArray]]) -> tuple[NDArray, NDArray]:
    vs, fs, offset = [], [], 0
    for v, f in meshes:
        vs.append(np.asarray(v, dtype=np.float64))
        fs.append(np.asarray(f, dtype=np.int64) + offset)
        offset += len(v)
    return np.concatenate(vs), np.concatenate(fs)


_SHORT_KIND = {"synthetic": "synthetic T1w", "real": "real T1w, model grid", "real_native": "real T1w, native"}


def make_participant_figures(
    name: FigureNamer,
    hemis: Sequence[Any],
    synthetic: tuple[NDArray, NDArray],
    *,
    real: tuple[NDArray, NDArray] | None = None,
    maps: Mapping[str, NDArray] | None = None,
    maps_affine: NDArray | None = None,
    vertex: Mapping[str, NDArray] | None = None,
    rows: Sequence[Mapping[str, Any]] = (),
    kinds: Sequence[str] = ("synthetic", "real", "real_native"),
    clip_mm: float | None = None,
) -> list[FigureEntry]:
    """Draw the report's figures; returns them in display order with alt text and captions.

    ``hemis``: objects with ``hemi`` ('L'/'R') and ``white``/``pial`` (``vertices``, ``faces``) in world mm;
    ``synthetic``/``real``: (data, affine); ``vertex``: per-vertex arrays ``<hemi>_surface``, ``<hemi>_<kind>``
    (NaN = not measured); ``rows``: QC TSV rows; ``name(desc, suffix, hemi, extension)``: the file to write."""
    out: list[FigureEntry] = []
    surfaces = {s: _join([(getattr(h, s).vertices, getattr(h, s).faces) for h in hemis]) for s in ("white", "pial")}
    data, affine = synthetic
    syn = np.asarray(data, dtype=np.float64)
    flicker = None
    if real is not None:
        rdata, raffine = real
        if np.allclose(np.asarray(raffine), np.asarray(affine), atol=1e-4) and np.shape(rdata) == syn.shape:
            flicker = {"real T1w": np.asarray(rdata, dtype=np.float64)}
    by_hemi = {h.hemi: h for h in hemis}
    midline = (F.hemisphere_midline(by_hemi["L"].pial.vertices, by_hemi["R"].pial.vertices)
               if {"L", "R"} <= set(by_hemi) else None)
    mosaic, flick = F.plot_anatomy(syn, affine, name("mosaic", "T1w", None, ".png"), surfaces=surfaces,
                                   flicker=flicker, flicker_path=name("flicker", "T1w", None, ".svg"),
                                   midline=midline)
    out.append(FigureEntry(
        mosaic, "anatomy", "Synthetic T1w: six sagittal, coronal and axial slices with white and pial contours",
        "Synthetic T1w in sagittal (top), coronal and axial (bottom) slices, each labelled with its world "
        "coordinate (scanner RAS, mm); slices spread over the cortex, none on the midline. Yellow: white "
        "surface; red: pial surface, where each crosses the slice. L/R: the participant's left and right "
        "(sagittal: the side of the brain's midline); P/A: posterior/anterior.", *_size(mosaic)))
    if flick is not None:
        out.append(FigureEntry(
            flick, "anatomy", "Animation alternating the synthetic and the real T1w on the same slices",
            "Real ↔ synthetic flicker: the same slices of the synthetic T1w and of the real T1w (resampled to the "
            "model grid) alternate every 1.5 s; the label under the slices names the image shown. The "
            "same surface contours are drawn on both as a fixed reference. Each image is scaled to its own "
            "0.5–99.5th percentile.", *_flicker_size(mosaic)))
    if maps is not None:
        path = F.plot_conditioning_maps(maps, maps_affine if maps_affine is not None else affine,
                                        name("conditioningmaps", "qc", None, ".png"), titles=_CONDITIONING_TITLES,
                                        units=_CONDITIONING_UNITS, clip_mm=clip_mm)
        out.append(FigureEntry(
            path, "conditioning", "Axial slice of the five conditioning maps given to the network",
            "What the network is given (axial slice through the grid centre). Signed distance fields in mm "
            "(negative inside the surface; blue inside, red outside"
            + (f", shown clipped at ±{clip_mm:g} mm as the network sees them" if clip_mm else ", clipped at ±10 mm")
            + "); the cortex SDF is 0 in the ribbon and the distance to the nearer surface outside it. The edge "
            "map is 1 on the white and pial surfaces and falls off within about two voxels; the ribbon is 1 "
            "between the surfaces.", *_size(path)))
    measured = [k for k in kinds if any(_finite(r.get(f"thickness_{k}")) for r in rows)]
    if rows:
        path = F.plot_region_profile(rows, name("regions", "qc", None, ".png"), kinds=measured,
                                     region_names={r["region"]: region_name(r["region"]) for r in rows},
                                     kind_labels=KIND_LABELS)
        out.append(FigureEntry(
            path, "qc", "Dot chart of mean cortical thickness per region and hemisphere",
            "Mean cortical thickness per Desikan–Killiany region: black bar, from the surfaces; markers, measured "
            "in each image over the vertices where the measure succeeded (regions with less than half of their "
            "vertices measured have no marker). A line joins each image value to the surface value.",
            *_size(path)))
    if vertex is not None:
        meshes = {h.hemi: (h.pial.vertices, h.pial.faces) for h in hemis}
        values = {}
        for k in kinds:
            if all(f"{h.hemi}_{k}" in vertex for h in hemis):
                values[_SHORT_KIND[k]] = {
                    h.hemi: np.asarray(vertex[f"{h.hemi}_{k}"], dtype=np.float64)
                    - np.asarray(vertex[f"{h.hemi}_surface"], dtype=np.float64) for h in hemis}
        if values:
            path = F.plot_surface_views(meshes, values, name("thicknesserror", "qc", None, ".png"),
                                        colorbar_label="image − surface thickness (mm)")
            out.append(FigureEntry(
                path, "qc", "Pial surfaces coloured by the thickness difference between image and surfaces",
                "Thickness measured in each image minus the surface thickness, per vertex, on the pial surface "
                "(lateral and medial views; one colour scale for every panel, red: the image shows a thicker "
                "cortex). Grey: not measured (outside the coverage).", *_size(path)))
    return out


def _flicker_size(mosaic: Path) -> tuple[int | None, int | None]:
    w, h = _size(mosaic)
    return (w, h + 30) if w and h else (None, None)


def _size(path: Path) -> tuple[int | None, int | None]:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - a size is only a layout hint
        return None, None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


# -- sections ----------------------------------------------------------------------------------------------------


def qc_flags(summary: Mapping[str, Any], dictionary: Mapping[str, Mapping[str, Any]] | None = None
             ) -> list[tuple[Measure, Any, str]]:
    """(measure, value, reason) for every summary value outside its expected range."""
    out = []
    for key, value in summary.items():
        m = describe(key, dictionary)
        reason = flag(value, m)
        if reason:
            out.append((m, value, reason))
    return out


def _model_rows(report: ParticipantReport) -> list[tuple[str, str]]:
    model = report.run.get("model", {})
    text = esc(model.get("name", "unknown"))
    if model.get("demo"):
        text += " <b>(DEMO)</b>"
    if model.get("sha256"):
        text += f" <span class='muted'>sha256 {code(str(model['sha256'])[:16] + '…')}</span>"
    rows = [("Model", text)]
    card = report.model_card or {}
    trained = (card.get("training") or {}).get("participants_train")
    if trained:
        rows.append(("Model trained on", esc(f"{len(trained)} participants ({trained[0]} to {trained[-1]})")))
    return rows


def _summary_section(report: ParticipantReport, flags: list[tuple[Measure, Any, str]]) -> str:
    run = report.run
    rows: list[tuple[str, str]] = [("Participant", esc(f"sub-{report.subject}"))]
    if report.session:
        rows.append(("Session", esc(f"ses-{report.session}")))
    rows.append(("Surfaces", esc({"freesurfer": "FreeSurfer reconstruction (surf/, label/, mri/)",
                                  "gifti": "sMRIPrep GIFTI surfaces"}.get(report.surfaces_source,
                                                                           report.surfaces_source))))
    rows += [(esc(what), code(path)) for what, path in report.inputs]
    rows += _model_rows(report)
    seeds = list(run.get("seeds", []))
    rows.append(("Random seeds", esc(", ".join(map(str, seeds)) or "n/a")
                 + esc(f" ({len(seeds)} synthetic image{'s' if len(seeds) != 1 else ''})")))
    rows.append(("Sampling", esc(f"{run.get('steps', 'n/a')} Brownian-bridge steps, eta {run.get('eta', 'n/a')}, "
                                 f"device {run.get('device', 'n/a')}")))
    now = datetime.now(timezone.utc)
    if report.started:
        try:
            start = datetime.fromisoformat(report.started)
            minutes = (now - start).total_seconds() / 60
            rows.append(("Run time", esc(f"started {start:%Y-%m-%d %H:%M} UTC; report written {now:%H:%M} UTC "
                                         f"({minutes:.1f} min after the start)")))
        except ValueError:
            pass
    warnings = list(report.warnings)
    trained = ((report.model_card or {}).get("training") or {}).get("participants_train") or []
    if f"sub-{report.subject}" in trained:
        warnings.append(f"sub-{report.subject} is one of the model's training participants: if it is the same "
                        "person, its similarity measures are training-set performance, not generalisation.")
    if flags:
        warnings.append(f"{len(flags)} QC measure{'s' if len(flags) != 1 else ''} outside the expected range "
                        "(see Quality control).")
    if report.crash_files:
        warnings.append(f"{len(report.crash_files)} crash file(s) — see About / errors.")
    warn_html = ("<ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>") if warnings else "none"
    rows.append(("Warnings", warn_html))
    body = table(["Item", "Value"], rows, css="kv wide")
    return section("summary", "Summary", body)


def _anatomy_section(report: ParticipantReport, path: Path) -> str:
    figs = [f for f in report.figures if f.section == "anatomy"]
    intro = ("<p>The synthetic T1w overlays the participant's scanner space: the surfaces that conditioned it are "
             "drawn on it. A faithful image has its grey/white boundary on the yellow line and its pial boundary "
             "on the red line.</p>")
    return section("anatomy", "Anatomy", intro + "".join(figure(f, path) for f in figs))


def _conditioning_section(report: ParticipantReport, path: Path) -> str:
    figs = [f for f in report.figures if f.section == "conditioning"]
    return section("conditioning", "Conditioning", "".join(figure(f, path) for f in figs)
                   or "<p>No conditioning figure.</p>")


def _split_kind(key: str) -> tuple[str, str | None]:
    for kind in ("real_native", "synthetic", "real"):
        if key.endswith("_" + kind):
            return key[: -len(kind) - 1] + "_<kind>", kind
    return key, None


def _unit_suffix(m: Measure) -> str:
    """`` mm`` after a value; nothing for unitless indices and fractions (shown as %)."""
    return "" if not m.units or m.units.startswith(("unitless", "fraction")) else f" {m.units}"


def _cell(value: Any, m: Measure) -> str:
    text = esc(format_value(value, m))
    reason = flag(value, m)
    if reason:
        short = "low" if reason.startswith("below") else "high"
        return f"{text} <span class='flag' title='{esc(reason)}'>⚑ {short}</span>"
    if m.expected is not None and _finite(value):
        return f"{text} <span class='ok'>✓</span>"
    return text


_GROUPS = ("Cortical thickness", "Measurement diagnostics", "Tissue", "Similarity to the real T1w", "Bookkeeping",
           "Other")


def _measure_tables(summary: Mapping[str, Any], dictionary: Mapping[str, Mapping[str, Any]],
                    groups: Sequence[str] = _GROUPS) -> str:
    """Per group: measures × images (for per-image keys) or measures × one value."""
    order = {m.key: i for i, m in enumerate(MEASURES)}
    by_group: dict[str, dict[str, dict[str | None, Any]]] = {}
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        stem, kind = _split_kind(key)
        m = describe(key, dictionary)
        if not m.show:
            continue
        by_group.setdefault(m.group, {}).setdefault(stem, {})[kind] = value
    html_parts = []
    for group in groups:
        stems = by_group.get(group)
        if not stems:
            continue
        if group == "Measurement diagnostics":
            html_parts.append("<details><summary>Measurement diagnostics: why vertices were or were not measured"
                              "</summary>")
        kinds = [k for k in ("synthetic", "real", "real_native")
                 if any(_finite(v.get(k)) for s, v in stems.items() if not s.startswith("n_"))]
        plain = [s for s, v in stems.items() if None in v]
        per_kind = [s for s in stems if s not in plain and any(k in stems[s] for k in kinds)]
        if group != "Measurement diagnostics":
            html_parts.append(f"<h3>{esc(group)}</h3>")
        if per_kind:
            header = ["Measure"] + [esc(KIND_LABELS[k][0].upper() + KIND_LABELS[k][1:]) for k in kinds] + [
                "Units", "Expected"]
            rows = []
            for stem in sorted(per_kind, key=lambda s: order.get(s, 999)):
                m = describe(stem.replace("<kind>", kinds[0]), dictionary)
                generic = describe(stem, dictionary) if stem in order else m
                name = generic.name if stem in order else m.name.split(", ")[0]
                cells = [f"<b>{esc(name)}</b><br><span class='muted'>{esc(m.definition)}</span>"]
                for k in kinds:
                    key = stem.replace("<kind>", k)
                    cells.append(_cell(stems[stem].get(k), describe(key, dictionary)) if k in stems[stem] else "—")
                cells += [esc(shown_units(m) or m.units), esc(expected_text(m))]
                rows.append(cells)
            html_parts.append(table(header, rows, numeric=[False] + [True] * len(kinds) + [False, False],
                                    css="wide"))
        if plain:
            rows = []
            for stem in sorted(plain, key=lambda s: order.get(s, 999)):
                m = describe(stem, dictionary)
                rows.append([f"<b>{esc(m.name)}</b><br><span class='muted'>{esc(m.definition)}</span>",
                             _cell(stems[stem][None], m), esc(shown_units(m) or m.units),
                             esc(expected_text(m))])
            html_parts.append(table(["Measure", "Value", "Units", "Expected"], rows,
                                    numeric=[False, True, False, False], css="wide"))
        if group == "Measurement diagnostics":
            html_parts.append("</details>")
    return "".join(html_parts)


def _region_table(report: ParticipantReport) -> str:
    rows = report.rows
    if not rows:
        return ""
    columns = [c for c in rows[0] if c not in ("hemi", "region", "region_source")
               and any(_finite(r.get(c)) for r in rows)]

    def head(c: str) -> str:
        entry = report.table_dictionary.get(c, {})
        name = entry.get("LongName") or c.replace("_", " ")
        units = entry.get("Units")
        return esc(f"{name} ({units})" if units and units not in ("count",) else name)

    header = ["Hemisphere", "Region"] + [head(c) for c in columns]
    body = []
    for r in rows:
        cells = [esc({"L": "left", "R": "right"}.get(r["hemi"], r["hemi"])), esc(region_name(r["region"]))]
        for c in columns:
            v = r.get(c)
            unit = str(report.table_dictionary.get(c, {}).get("Units", ""))
            if _finite(v) and unit.startswith("fraction"):
                cells.append(esc(f"{100 * float(v):.0f} %"))
            elif isinstance(v, float):
                cells.append(esc(format_value(v)))
            else:
                cells.append(esc(v if v is not None else "n/a"))
        body.append(cells)
    return ("<details><summary>Region table (all values of the region TSV)</summary>"
            + table(header, body, numeric=[False, False] + [True] * len(columns)) + "</details>")


def _qc_section(report: ParticipantReport, path: Path, flags: list[tuple[Measure, Any, str]]) -> str:
    s = report.summary
    parts = ["<p>How well the images carry the cortex the surfaces prescribe. Cortical thickness is measured in "
             "each image along FreeSurfer's two lines per vertex and compared with the surface thickness; a "
             "<span class='flag'>⚑</span> marks a value outside the range the method is validated against.</p>"]
    cov = [(k, s.get(f"coverage_{k}")) for k in KIND_LABELS if _finite(s.get(f"coverage_{k}"))]
    if cov:
        parts.append("<p><b>Coverage of the thickness measure:</b> " + "; ".join(
            esc(f"{KIND_LABELS[k]}: {100 * float(v):.1f} % of cortex vertices measured") for k, v in cov)
            + ". The thickness numbers describe the measured vertices only.</p>")
    if flags:
        parts.append("<div class='warn'><b>Outside the expected range:</b><ul>" + "".join(
            f"<li>{esc(m.name)}: {esc(format_value(v, m))}{esc(_unit_suffix(m))} — {esc(r)}</li>"
            for m, v, r in flags)
            + "</ul></div>")
    parts.append(_measure_tables(s, report.summary_dictionary, _GROUPS[:1]))
    parts.extend(figure(f, path) for f in report.figures if f.section == "qc")
    parts.append(_measure_tables(s, report.summary_dictionary, _GROUPS[1:]))
    parts.append(_region_table(report))
    return section("qc", "Quality control", "".join(parts))


def _thinning_text(region: Mapping[str, Any]) -> str:
    if region.get("thinning_mm") is not None:
        return f"{float(region['thinning_mm']):g} mm"
    return f"{100 * float(region.get('thinning_fraction', float('nan'))):g} % of the local thickness"


def series_methods_text(series: Mapping[str, Any]) -> str:
    """The Methods' sentences on the atrophy series and the seed standard-deviation map (empty when neither ran)."""
    parts = []
    spec = series.get("atrophy")
    if spec:
        sides = {"L": "left", "R": "right"}
        regions = "; ".join(
            f"by {_thinning_text(r)} in the {sides.get(r.get('hemi'), r.get('hemi'))} "
            f"{region_name(str(r.get('region') or r.get('label')))} region" for r in spec.get("regions", []))
        seed = series.get("atrophy_seed")
        steps = int(spec.get("steps", 0))
        parts.append(
            f"A progressive atrophy series of {steps} step{'s' if steps != 1 else ''} was made: the pial surface "
            f"was thinned {regions} (thinning at the last step, applied linearly over the steps, tapering to "
            f"zero over {float(spec.get('falloff_mm', float('nan'))):g} mm outside each region; no vertex closer "
            f"than {float(spec.get('floor_mm', float('nan'))):g} mm to its white vertex; white surface unchanged), "
            "and each step was synthesised with the same random seed as the baseline image"
            + (f" (seed {seed})" if seed is not None else "") + ".")
    n = series.get("seed_std_samples")
    if n:
        parts.append(f"A voxel-wise standard-deviation map across the {int(n)} synthetic images made with different "
                     "random seeds was computed to show where the samples disagree.")
    return " ".join(parts)


def methods_html(run: Mapping[str, Any], versions: Mapping[str, str], summary: Mapping[str, Any],
                 surfaces_source: str, model_card: Mapping[str, Any] | None = None,
                 series: Mapping[str, Any] | None = None) -> str:
    """A boilerplate paragraph to copy into a methods section, with numbered references and versions
    (``series``: see :attr:`ParticipantReport.series`)."""
    model = run.get("model", {})
    grid = model.get("grid_shape")
    spacing = model.get("spacing_mm")
    seeds = list(run.get("seeds", []))
    v = dict(versions)
    sw = ", ".join(f"{k} {val}" for k, val in v.items() if k not in ("cor2vox-bids",))
    src = {"freesurfer": "FreeSurfer", "gifti": "sMRIPrep (GIFTI)"}.get(surfaces_source, surfaces_source)
    grid_text = (f" on a {'×'.join(map(str, grid))} grid at {spacing:g} mm" if grid and spacing else "")
    demo = (" The model was the small DEMO model shipped with the software, trained on synthetic "
            "pseudo-participants; its images are illustrations, not research data." if model.get("demo") else "")
    thick_def = summary.get("thickness_definition")
    text = (
        f"Synthetic T1-weighted images were generated with cor2vox-bids {esc(v.get('cor2vox-bids', __version__))} "
        f"from each participant's white and pial surfaces ({esc(src)}), brought to scanner RAS. Signed distance "
        f"fields of both surfaces, a cortex distance map, the cortical ribbon and a tissue-boundary map were "
        f"computed{esc(grid_text)} and given as conditions to a 3D Brownian-bridge diffusion model (Cor2Vox [1, 2]; "
        f"Brownian-bridge diffusion [3]), model {esc(model.get('name', 'unknown'))} (weights sha256 "
        f"{esc(str(model.get('sha256', ''))[:12])}…), sampled in {esc(run.get('steps', 'n/a'))} steps "
        f"(eta {esc(run.get('eta', 'n/a'))}) with random seed{'s' if len(seeds) != 1 else ''} "
        f"{esc(', '.join(map(str, seeds)))}.{esc(demo)} Cortical thickness was measured in each image "
        f"({esc(thick_def) if thick_def else 'along the lines of FreeSurfer’s definition'} [4]) and compared with "
        f"the surface thickness per Desikan–Killiany region [5]; the synthetic image was compared with the real T1w "
        f"by SSIM [6], PSNR and mean absolute error. {esc(series_methods_text(series or {}))}"
        f"{' ' if series_methods_text(series or {}) else ''}The workflow ran in Nipype [7] with PyBIDS [8] "
        f"({esc(sw)})."
    )
    keys = ["cor2vox", "cor2vox_ipmi", "bbdm", "thickness", "dk", "ssim", "nipype", "pybids"]
    refs = "".join(f"<li>{esc(REFERENCES[k])}</li>" for k in keys)
    return (f"<div class='methods'><p>{text}</p></div><p class='muted'>The text above is generated from this run "
            f"and may be copied into a manuscript.</p><h3>References</h3><ol class='refs'>{refs}</ol>")


def _about_section(report: ParticipantReport, path: Path) -> str:
    parts = []
    if report.crash_files:
        parts.append("<h3>Errors</h3><div class='warn'><p>Crash files of this participant:</p><ul>" + "".join(
            f"<li>{link(p, path)}</li>" for p in report.crash_files) + "</ul></div>")
    else:
        parts.append("<h3>Errors</h3><p>No errors were recorded for this participant.</p>")
    if report.outputs:
        parts.append("<h3>Outputs</h3>" + table(["What", "File"], [(esc(w), link(p, path)) for w, p in
                                                                    report.outputs], css="wide"))
    parts.append(_software_table(report))
    return section("about", "About / errors", "".join(parts))


def _software_table(report: ParticipantReport) -> str:
    rows = [("cor2vox-bids", esc(report.versions.get("cor2vox-bids", __version__)))]
    rows += [(esc(k), esc(val)) for k, val in report.versions.items() if k != "cor2vox-bids"]
    if report.run_id:
        rows.append(("Run identifier", code(report.run_id)))
    if report.command:
        rows.append(("Command", code(" ".join(report.command))))
    return "<h3>Software and run</h3>" + table(["Item", "Value"], rows, css="kv wide")


def write_participant_report(path: Path, report: ParticipantReport) -> Path:
    """Write ``sub-<label>.html`` (figures must already exist; they are linked relative to the page)."""
    path = Path(path)
    flags = qc_flags(report.summary, report.summary_dictionary)
    model = report.run.get("model", {})
    body = [f"<h1>{esc(report.label)}</h1><p class='muted'>cor2vox-bids participant report: synthetic T1w from "
            "cortical surfaces, with quality control.</p>"]
    if model.get("demo"):
        body.append(demo_notice(
            "These images were made with the small demonstration model shipped with cor2vox-bids, trained on "
            "pseudo-participants derived from one template brain. They illustrate the pipeline and are not "
            "suitable for research conclusions."))
    body.append(_summary_section(report, flags))
    body.append(_anatomy_section(report, path))
    body.append(_conditioning_section(report, path))
    body.append(_qc_section(report, path, flags))
    body.extend(section(anchor, title, html) for anchor, title, html in report.extra_sections)
    body.append(section("methods", "Methods", methods_html(report.run, report.versions, report.summary,
                                                           report.surfaces_source, report.model_card,
                                                           report.series)))
    body.append(_about_section(report, path))
    nav = [("summary", "Summary"), ("anatomy", "Anatomy"), ("conditioning", "Conditioning"),
           ("qc", "Quality control")] + [(a, t) for a, t, _ in report.extra_sections] + [
           ("methods", "Methods"), ("about", "About / errors")]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = esc(f"cor2vox-bids {report.versions.get('cor2vox-bids', __version__)} — report written {stamp}")
    atomic.write_text(path, page(f"cor2vox-bids: {report.label}", f"cor2vox-bids · {report.label}", nav,
                                 "".join(body), footer))
    return path


# -- the report of a participant whose run failed ----------------------------------------------------------------


@dataclass(frozen=True)
class CrashEntry:
    """One crash file: the step that failed (a Nipype node, or the pre-run stage), its one-line error and the
    whole file (shown collapsed)."""

    path: Path
    step: str
    error: str
    text: str


def read_crash_file(path: Path) -> CrashEntry:
    """Parse a crash file: ours (``stage:`` / ``error:`` lines) or Nipype's (``Node:`` line, then a traceback
    whose last ``…Error``/``…Exception`` line is the error)."""
    text = Path(path).read_text(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]

    def field(name: str) -> str | None:
        return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(name + ":")), None)

    error = field("error")
    if error is None:
        errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
        error = errors[-1] if errors else (lines[-1] if lines else "(empty crash file)")
    return CrashEntry(Path(path), field("Node") or field("stage") or "unknown step", error, text)


def _errors_section(reason: str, crashes: Sequence[CrashEntry], output_dir: Path, path: Path) -> str:
    parts = [f"<div class='warn'><b>The run failed for this participant:</b> {esc(reason)}</div>"]
    if not crashes:
        parts.append("<p>No crash file was written for this participant in this run (see the run's log).</p>")
    for c in crashes:
        shown = Path(c.path).relative_to(output_dir) if Path(c.path).is_relative_to(output_dir) else Path(c.path)
        parts.append(f"<h3>{esc(c.step)}</h3><p><b>Error:</b> {code(c.error)}</p>"
                     f"<p class='muted'>Crash file: {link(c.path, path, str(shown.as_posix()))}</p>"
                     "<details><summary>Crash file contents" + (" (traceback)" if "Traceback" in c.text else "")
                     + f"</summary><pre>{esc(c.text)}</pre></details>")
    return section("errors", "Errors", "".join(parts))


def write_error_report(path: Path, report: ParticipantReport, reason: str, crashes: Sequence[CrashEntry],
                       output_dir: Path) -> Path:
    """Write ``sub-<label>.html`` for a participant whose run failed: the page frame of the normal report with the
    Summary of what is known, an Errors section (per crash file: step, error line, path relative to
    ``output_dir``, the file collapsed) and the software table."""
    path = Path(path)
    body = [f"<h1>{esc(report.label)}</h1><p class='muted'>cor2vox-bids participant report: the run failed for "
            "this participant; no synthetic image or QC was produced.</p>"]
    if report.run.get("model", {}).get("demo"):
        body.append(demo_notice("This run used the small demonstration model shipped with cor2vox-bids; its "
                                "images are illustrations, not research data."))
    body.append(_summary_section(report, []))
    body.append(_errors_section(reason, crashes, Path(output_dir), path))
    body.append(section("about", "About", _software_table(report)))
    nav = [("summary", "Summary"), ("errors", "Errors"), ("about", "About")]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = esc(f"cor2vox-bids {report.versions.get('cor2vox-bids', __version__)} — report written {stamp}")
    atomic.write_text(path, page(f"cor2vox-bids: {report.label} (failed)", f"cor2vox-bids · {report.label}", nav,
                                 "".join(body), footer))
    return path
