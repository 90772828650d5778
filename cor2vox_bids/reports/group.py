"""The group report (``group_desc-qc_report.html``): a compact table of key measures with a link to each
participant's report, the full TSVs linked, outliers flagged (outside the expected range, or far from the group
by the median absolute deviation), small multiples with sensible axis ranges, and the DEMO notice."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..bids import atomic
from . import figures as F
from .measures import KEY_MEASURES, describe, expected_text, flag, format_value, shown_scale, shown_units
from .page import FigureEntry, code, demo_notice, esc, figure, link, page, section, table

__all__ = ["GroupReport", "HarmonizationSection", "group_outliers", "harmonization_section", "make_group_figures",
           "write_group_report", "key_columns"]

#: column headers of the compact table (the Definitions section gives each measure's full name and meaning)
SHORT_NAMES = {"pearson_r_synthetic": "Region r, synthetic", "coverage_synthetic": "Coverage, synthetic",
               "median_abs_diff_mm_vertex_synthetic": "Median |difference|, synthetic",
               "ribbon_soft_dice_synthetic": "Ribbon soft Dice, synthetic",
               "ribbon_dice_synthetic": "Ribbon Dice (hard), synthetic", "ssim_brain": "Brain SSIM",
               "pearson_r_real": "Region r, real", "coverage_real": "Coverage, real"}

#: a value this many scaled MADs from the group median is an outlier (with ≥ 5 participants)
MAD_THRESHOLD = 3.5
MIN_FOR_MAD = 5


#: the anatomy survives harmonization when the synthetic image keeps this fraction of the real image's thickness r
THICKNESS_R_RATIO_TARGET = 0.9


@dataclass
class HarmonizationSection:
    """The group report's harmonization section: the table (written), its rows, the figure, the reference."""

    table: Path
    rows: list[dict[str, Any]]
    figures: list[FigureEntry]
    reference: Path
    reference_labels: list[str]
    left_out: Mapping[str, str] = field(default_factory=dict)

    def closer(self) -> tuple[int, int]:
        """(participant-tissue pairs with distance_after < distance_before, pairs with both distances)."""
        both = [r for r in self.rows if _finite(r.get("distance_before")) and _finite(r.get("distance_after"))]
        return sum(r["distance_after"] < r["distance_before"] for r in both), len(both)

    @property
    def verdict(self) -> str:
        k, n = self.closer()
        return f"closer to the reference after harmonization in {k} of {n} participant-tissue pairs"


@dataclass
class GroupReport:
    """Rows: one per participant (``participant_id``, optional ``session_id``, the summary keys)."""

    rows: list[dict[str, Any]]
    reports: Mapping[str, Path]  # row label → participant report
    tables: list[tuple[str, Path]]  # (what, TSV) linked in full
    figures: list[FigureEntry] = field(default_factory=list)
    demo: bool = False
    dictionary: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    crashes: Mapping[str, list[Path]] = field(default_factory=dict)  # row label → crash files
    harmonization: HarmonizationSection | None = None
    not_in_tables: Mapping[str, str] = field(default_factory=dict)  # participant → why it has no row (failed, corrupt)


def row_label(row: Mapping[str, Any]) -> str:
    return str(row.get("participant_id", "?")) + (f" {row['session_id']}" if row.get("session_id") else "")


def key_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The :data:`KEY_MEASURES` some participant has a number for."""
    return [k for k in KEY_MEASURES if any(_finite(r.get(k)) for r in rows)]


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def group_outliers(values: Sequence[Any]) -> list[bool]:
    """True where a value is more than :data:`MAD_THRESHOLD` scaled MADs from the median (≥ 5 values)."""
    v = np.array([float(x) if _finite(x) else np.nan for x in values])
    ok = np.isfinite(v)
    if ok.sum() < MIN_FOR_MAD:
        return [False] * len(v)
    med = np.median(v[ok])
    mad = 1.4826 * np.median(np.abs(v[ok] - med))
    if mad <= 0:
        return [False] * len(v)
    return [bool(o and abs(x - med) / mad > MAD_THRESHOLD) for x, o in zip(v, ok)]


def _flags(rows: Sequence[Mapping[str, Any]], key: str, dictionary) -> list[str | None]:
    m = describe(key, dictionary)
    out = [flag(r.get(key), m) for r in rows]
    far = group_outliers([r.get(key) for r in rows])
    return [o or ("far from the group" if f else None) for o, f in zip(out, far)]


def make_group_figures(path: Path, rows: Sequence[Mapping[str, Any]],
                       dictionary: Mapping[str, Mapping[str, Any]] | None = None) -> list[FigureEntry]:
    """Small multiples of the key measures (one panel each, expected range shaded, flagged points red)."""
    columns = key_columns(rows)
    if not columns:
        return []
    labels = [row_label(r) for r in rows]
    panels = []
    for key in columns:
        m = describe(key, dictionary)
        vals = np.array([float(r[key]) if _finite(r.get(key)) else np.nan for r in rows])
        flags = [f is not None for f in _flags(rows, key, dictionary)]
        limits = F.group_axis_limits(vals, m.natural, m.min_span, m.expected)
        # shown as in the tables: fractions of the cortex in percent
        k = shown_scale(m)
        expected = None if m.expected is None else tuple(None if b is None else k * b for b in m.expected)
        unit = f" ({shown_units(m)})" if shown_units(m) else ""
        panels.append({"title": SHORT_NAMES.get(key, m.name) + unit, "values": k * vals,
                       "limits": (k * limits[0], k * limits[1]), "expected": expected, "flags": flags})
    out = F.plot_group_measures(panels, labels, path, columns=2)
    from .participant import _size

    return [FigureEntry(out, "measures", "Dot plots of the key QC measures, one dot per participant",
                        "Key measures, one dot per participant (red diamond and label: flagged); green band: the "
                        "expected range; dashed line: group median. Axes span at least a meaningful range of "
                        "each measure, so small differences do not look large.", *_size(out))]


def harmonization_section(table_path: Path, figure_path: Path, rows: Sequence[Mapping[str, Any]],
                          before: Mapping[str, Mapping[str, np.ndarray]], after: Mapping[str, Mapping[str, np.ndarray]],
                          reference: Mapping[str, np.ndarray], spread: Mapping[str, float], reference_dir: Path,
                          reference_labels: list[str], left_out: Mapping[str, str] | None = None
                          ) -> HarmonizationSection:
    """The section's figure (per-tissue histograms before/after vs the reference, and each participant's distances)
    drawn to ``figure_path``, and the section that shows it with the rows of ``table_path``."""
    from ..qc.harmonization import TISSUES, barycentre

    panels = []
    for tissue in TISSUES:
        trs = [r for r in rows if r.get("tissue") == tissue]
        b = [q[tissue] for q in before.values() if tissue in q]
        a = [q[tissue] for q in after.values() if tissue in q]
        panels.append({"title": {"WM": "White matter", "GM": "Cortical grey matter",
                                 "CSF": "CSF shell outside the pial surface"}[tissue],
                       "reference": reference.get(tissue), "before": barycentre(b) if b else None,
                       "after": barycentre(a) if a else None,
                       "distance_before": [r.get("distance_before") for r in trs],
                       "distance_after": [r.get("distance_after") for r in trs],
                       "spread": spread.get(tissue)})
    out = F.plot_harmonization(panels, figure_path)
    from .participant import _size

    entry = FigureEntry(
        out, "harmonization", "Per-tissue intensity histograms of the reference site, the participants' own T1w "
        "and their harmonized images, and each participant's distance to the reference before and after",
        "Top: intensity distributions per tissue after each image's robust normalisation (its 1st and 99th "
        "percentiles inside the tissue masks map to 0 and 1). Grey: the reference site; orange: the participants' "
        "own T1w; blue: their harmonized (synthetic) T1w — each the Wasserstein barycentre (mean quantile function) "
        f"of its images ({len(reference_labels)} reference participants, {len(before)} harmonized). Bottom: each "
        "participant's W1 distance to the reference, own T1w → harmonized; green: closer after harmonization, red: "
        "not; shaded: the reference site's own spread (median leave-one-out W1 of its participants).", *_size(out))
    return HarmonizationSection(Path(table_path), [dict(r) for r in rows], [entry], Path(reference_dir),
                                list(reference_labels), dict(left_out or {}))


def _harmonization_html(section: HarmonizationSection, path: Path) -> str:
    k, n = section.closer()
    tissues = {}
    for r in section.rows:
        if _finite(r.get("distance_before")) and _finite(r.get("distance_after")):
            c = tissues.setdefault(r["tissue"], [0, 0])
            c[0] += r["distance_after"] < r["distance_before"]
            c[1] += 1
    per_tissue = ", ".join(f"{t} {c[0]}/{c[1]}" for t, c in tissues.items())
    ratios = {r["participant_id"] + (f" {r['session_id']}" if r.get("session_id") else ""): r.get("thickness_r_ratio")
              for r in section.rows}
    kept = [v for v in ratios.values() if _finite(v)]
    n_kept = sum(v >= THICKNESS_R_RATIO_TARGET for v in kept)
    intro = (
        f"<p>Reference site: {code(section.reference.name)} ({len(section.reference_labels)} participants with a T1w "
        "and surfaces). For every participant and tissue, the 1-D Wasserstein distance (W1) between the normalised "
        "intensity distribution and the reference site's, for the participant's own T1w (before) and its "
        "harmonized, synthetic T1w (after). W1 is in units of each image's robust intensity range (0.1 = a tenth "
        "of it). Harmonization moved a tissue towards the reference where after &lt; before.</p>"
        f"<p><b>Closer after harmonization: {k} of {n}</b> participant-tissue pairs ({esc(per_tissue)}). "
        f"Anatomy kept (thickness r of the harmonized image ≥ {THICKNESS_R_RATIO_TARGET:g} × the real image's): "
        f"<b>{n_kept} of {len(ratios)}</b> participants"
        + (f" ({len(ratios) - len(kept)} without a thickness r for both images)" if len(kept) < len(ratios) else "")
        + ".</p>")
    fig = "".join(figure(f, path) for f in section.figures)
    header = ["Participant", "Tissue", "W1 before", "W1 after", "Change", "Reference spread",
              "Thickness r real", "Thickness r harmonized", "Ratio"]
    trs = []
    for r in section.rows:
        label = r["participant_id"] + (f" {r['session_id']}" if r.get("session_id") else "")
        change = r.get("distance_change")
        ch = format_value(change)
        if _finite(change):
            ch = (f"<span class='ok'>{esc(ch)}</span>" if change < 0
                  else f"<span class='flag' title='not closer to the reference'>⚑ {esc(ch)}</span>")
        ratio = r.get("thickness_r_ratio")
        rt = esc(format_value(ratio))
        if _finite(ratio) and ratio < THICKNESS_R_RATIO_TARGET:
            rt = f"<span class='flag' title='below {THICKNESS_R_RATIO_TARGET:g}'>⚑ {rt}</span>"
        trs.append([esc(label), esc(r["tissue"]), esc(format_value(r.get("distance_before"))),
                    esc(format_value(r.get("distance_after"))), ch if _finite(change) else esc(ch),
                    esc(format_value(r.get("reference_spread"))), esc(format_value(r.get("thickness_r_real"))),
                    esc(format_value(r.get("thickness_r_synthetic"))), rt])
    tab = table(header, trs, numeric=[False, False] + [True] * 7, css="wide")
    files = (f"<p>Full table: {link(section.table, path)} (data dictionary "
             f"{link(section.table.with_suffix('.json'), path)}: units and meaning of every column).</p>")
    left = ""
    if section.left_out:
        left = ("<div class='warn'><b>Left out of the harmonization table:</b><ul>"
                + "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in section.left_out.items()) + "</ul></div>")
    return intro + left + fig + tab + files


def write_group_report(path: Path, report: GroupReport) -> Path:
    """Write the group report page."""
    path = Path(path)
    rows = report.rows
    cols = key_columns(rows)
    body = ["<h1>Group report</h1>"
            f"<p class='muted'>cor2vox-bids quality control of {len(rows)} participant"
            f"{'s' if len(rows) != 1 else ''}.</p>"]
    if report.demo:
        body.append(demo_notice("Some or all images were made with the small demonstration model shipped with "
                                "cor2vox-bids (trained on pseudo-participants from one template brain). They "
                                "illustrate the pipeline and are not suitable for research conclusions."))
    flags = {k: _flags(rows, k, report.dictionary) for k in cols}
    def head(k: str) -> str:
        unit = shown_units(describe(k, report.dictionary))
        return esc(SHORT_NAMES.get(k, describe(k, report.dictionary).name)) + (
            f" <span class='muted'>({esc(unit)})</span>" if unit else "")

    header = ["Participant"] + [head(k) for k in cols] + ["Flags"]
    trs = []
    n_flagged = 0
    for i, r in enumerate(rows):
        label = row_label(r)
        target = report.reports.get(label)
        cell = link(target, path, label) if target is not None else esc(label)
        cells = [cell]
        reasons = []
        for k in cols:
            m = describe(k, report.dictionary)
            f = flags[k][i]
            text = esc(format_value(r.get(k), m))
            if f:
                why = "far from the group" if f.startswith("far") else ("low" if f.startswith("below") else "high")
                reasons.append(f"{SHORT_NAMES.get(k, m.name)}: {why}")
                text = f"<span class='flag' title='{esc(f)}'>⚑ {text}</span>"
            cells.append(text)
        if report.crashes.get(label):
            reasons.append(f"{len(report.crashes[label])} crash file(s)")
        n_flagged += bool(reasons)
        cells.append(esc("; ".join(reasons)) if reasons else "<span class='ok'>none</span>")
        trs.append(cells)
    missing = ""
    if report.not_in_tables:
        n = len(report.not_in_tables)
        missing = ("<div class='warn'><b>" + esc(f"{n} participant{'s' if n != 1 else ''} not in the group tables "
                                                 "(no usable QC):") + "</b><ul>"
                   + "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in report.not_in_tables.items())
                   + "</ul></div>")
    intro = (f"<p>{n_flagged} of {len(rows)} flagged. A ⚑ marks a value outside the expected range or far from the "
             f"group (more than {MAD_THRESHOLD:g} median absolute deviations from the median, with at least "
             f"{MIN_FOR_MAD} participants). Each participant links to its report.</p>")
    body.append(section("participants", "Participants", missing + intro + table(
        header, trs, numeric=[False] + [True] * len(cols) + [False], css="wide")))
    tables = "<ul>" + "".join(f"<li>{esc(what)}: {link(p, path)}" + (
        f" (data dictionary {link(p.with_suffix('.json'), path)})" if p.with_suffix(".json").is_file() else "")
        + "</li>" for what, p in report.tables) + "</ul>"
    body.append(section("tables", "Full tables", "<p>Every measure of every participant:</p>" + tables))
    body.append(section("measures", "Measures across participants",
                        "".join(figure(f, path) for f in report.figures) or "<p>No figure.</p>"))
    if report.harmonization is not None:
        body.append(section("harmonization", "Harmonization", _harmonization_html(report.harmonization, path)))
    described = [(k, describe(k, report.dictionary)) for k in cols]
    defs = table(["Column", "Measure", "Units", "Expected", "Definition"], [
        (esc(SHORT_NAMES.get(k, "")), esc(m.name), esc(shown_units(m) or m.units), esc(expected_text(m)),
         esc(m.definition))
        for k, m in described], css="wide")
    body.append(section("definitions", "Definitions", defs))
    nav = [("participants", "Participants"), ("tables", "Full tables"), ("measures", "Measures")]
    if report.harmonization is not None:
        nav.append(("harmonization", "Harmonization"))
    nav.append(("definitions", "Definitions"))
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    atomic.write_text(path, page("cor2vox-bids group report", "cor2vox-bids · group", nav, "".join(body),
                                 esc(f"cor2vox-bids {__version__} — report written {stamp}")))
    return path


__all__ += ["row_label", "code"]
