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
from .measures import KEY_MEASURES, describe, expected_text, flag, format_value
from .page import FigureEntry, code, demo_notice, esc, figure, link, page, section, table

__all__ = ["GroupReport", "group_outliers", "make_group_figures", "write_group_report", "key_columns"]

#: column headers of the compact table (the Definitions section gives each measure's full name and meaning)
SHORT_NAMES = {"pearson_r_synthetic": "Region r, synthetic", "coverage_synthetic": "Coverage, synthetic",
               "median_abs_diff_mm_vertex_synthetic": "Median |difference|, synthetic",
               "ribbon_dice_synthetic": "Ribbon Dice, synthetic", "ssim_brain": "Brain SSIM",
               "pearson_r_real": "Region r, real", "coverage_real": "Coverage, real"}

#: a value this many scaled MADs from the group median is an outlier (with ≥ 5 participants)
MAD_THRESHOLD = 3.5
MIN_FOR_MAD = 5


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
        unit = f" ({m.units})" if m.units and not m.units.startswith("unitless") else ""
        panels.append({"title": SHORT_NAMES.get(key, m.name) + unit, "values": vals, "limits": limits,
                       "expected": m.expected, "flags": flags})
    out = F.plot_group_measures(panels, labels, path, columns=2)
    from .participant import _size

    return [FigureEntry(out, "measures", "Dot plots of the key QC measures, one dot per participant",
                        "Key measures, one dot per participant (red diamond and label: flagged); green band: the "
                        "expected range; dashed line: group median. Axes span at least a meaningful range of "
                        "each measure, so small differences do not look large.", *_size(out))]


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
        m = describe(k, report.dictionary)
        unit = m.units if m.units and not m.units.startswith("unitless") else ""
        return esc(SHORT_NAMES.get(k, m.name)) + (f" <span class='muted'>({esc(unit)})</span>" if unit else "")

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
    intro = (f"<p>{n_flagged} of {len(rows)} flagged. A ⚑ marks a value outside the expected range or far from the "
             f"group (more than {MAD_THRESHOLD:g} median absolute deviations from the median, with at least "
             f"{MIN_FOR_MAD} participants). Each participant links to its report.</p>")
    body.append(section("participants", "Participants", intro + table(
        header, trs, numeric=[False] + [True] * len(cols) + [False], css="wide")))
    tables = "<ul>" + "".join(f"<li>{esc(what)}: {link(p, path)}" + (
        f" (data dictionary {link(p.with_suffix('.json'), path)})" if p.with_suffix(".json").is_file() else "")
        + "</li>" for what, p in report.tables) + "</ul>"
    body.append(section("tables", "Full tables", "<p>Every measure of every participant:</p>" + tables))
    body.append(section("measures", "Measures across participants",
                        "".join(figure(f, path) for f in report.figures) or "<p>No figure.</p>"))
    described = [(k, describe(k, report.dictionary)) for k in cols]
    defs = table(["Column", "Measure", "Units", "Expected", "Definition"], [
        (esc(SHORT_NAMES.get(k, "")), esc(m.name), esc(m.units), esc(expected_text(m)), esc(m.definition))
        for k, m in described], css="wide")
    body.append(section("definitions", "Definitions", defs))
    nav = [("participants", "Participants"), ("tables", "Full tables"), ("measures", "Measures"),
           ("definitions", "Definitions")]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    atomic.write_text(path, page("cor2vox-bids group report", "cor2vox-bids · group", nav, "".join(body),
                                 esc(f"cor2vox-bids {__version__} — report written {stamp}")))
    return path


__all__ += ["row_label", "code"]
