"""Self-contained HTML reports (no scripts, no external resources); figures referenced by relative path."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..bids.inputs import participant_key
from ..qc.layout import QC_FOLDER
from ..qc.regions import read_qc_tsv


@dataclass(frozen=True)
class ReportSubject:
    """Who a participant report is about and which inputs it names."""

    subject: str
    session: str | None
    source: str  # "freesurfer" or "gifti"
    t1w: str | None = None
    source_files: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return participant_key(self.subject, self.session)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.demo{background:#fff3cd;border:1px solid #e0c36b;padding:.6em 1em;border-radius:4px}
.fail{color:#a00} figure{margin:1em 0} figcaption{font-size:.9em;color:#555} img{max-width:100%;border:1px solid #eee}
.small{font-size:.85em;color:#666}
"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3f}"
    return html.escape(str(v))


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    cols = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}<p class='small'>cor2vox-bids {__version__}, {stamp}</p>"
        "</body></html>\n"
    )


FIGURE_CAPTIONS = {
    "slices": "Synthetic T1w (top) and real T1w (bottom, when available) on the model grid, with the white "
    "(yellow) and pial (red) surfaces drawn where they cross each slice.",
    "conditioning": "Conditioning maps given to the network: cortex SDF, pial SDF, white SDF, mesh-edge map, ribbon.",
    "scatter": "Per-region mean thickness: measured in the image vs prescribed by the surfaces.",
    "bars": "Per-region thickness: surfaces, synthetic image and real image.",
    "vertexerror": "Per-vertex difference (image − surface thickness) on a flat map of each hemisphere.",
}


def write_participant_report(
    path: Path, who: ReportSubject, run: dict, qc_dir: Path, figures: list[tuple[dict, Path]]
) -> Path:
    """``sub-<label>.html``: model, QC summary, figures and the per-region table.

    ``figures``: (entities ``{"desc", "suffix", "hemi"}``, published file) in display order."""
    model = run["model"]
    summary = json.loads(QC_FOLDER.path(qc_dir, "summary").read_text())
    rows = read_qc_tsv(QC_FOLDER.path(qc_dir, "table"))
    key = who.key
    parts = [f"<h1>cor2vox-bids report: {html.escape(key)}</h1>"]
    if model["demo"]:
        parts.append(
            "<p class='demo'><b>DEMO model.</b> These images were made with the small demonstration model "
            "shipped with cor2vox-bids (trained on pseudo-participants derived from one template brain). "
            "They illustrate the pipeline and are not suitable for research conclusions.</p>"
        )
    parts.append(
        "<h2>Summary</h2>"
        + _table(
            [
                {"item": "surfaces", "value": who.source},
                {"item": "real T1w", "value": who.t1w or "none"},
                {"item": "model", "value": f"{model['name']} (sha256 {model['sha256'][:16]}…)"},
                {"item": "seeds", "value": ", ".join(map(str, run["seeds"]))},
                {"item": "sampling steps / eta", "value": f"{run['steps']} / {run['eta']}"},
                {"item": "device", "value": run["device"]},
            ],
            ["item", "value"],
        )
    )
    metric_rows = [{"measure": k, "value": v} for k, v in summary.items() if not isinstance(v, (dict, list))]
    parts.append("<h2>Quality control</h2>" + _table(metric_rows, ["measure", "value"]))
    for entities, fig in figures:
        rel = fig.relative_to(path.parent).as_posix()
        name = entities["desc"] + (f" (hemi-{entities['hemi']})" if entities.get("hemi") else "")
        caption = next((c for k, c in FIGURE_CAPTIONS.items() if entities["desc"].startswith(k)), name)
        parts.append(
            f"<figure><img src='{html.escape(rel)}' alt='{html.escape(name)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("<h2>Thickness per region</h2>" + _table(rows))
    parts.append(
        "<h2>Sources</h2><ul>" + "".join(f"<li>{html.escape(str(v))}</li>" for v in who.source_files) + "</ul>"
    )
    path.write_text(_page(f"cor2vox-bids: {key}", "".join(parts)))
    return path


def write_group_report(path: Path, rows: list[dict], figures: dict[str, Path], demo: bool) -> Path:
    """``group_desc-qc_report.html``: one row per participant, group plots."""
    parts = ["<h1>cor2vox-bids group report</h1>"]
    if demo:
        parts.append("<p class='demo'><b>DEMO model</b> outputs: for illustration only.</p>")
    parts.append("<h2>Participants</h2>" + _table(rows))
    for name, fig in figures.items():
        parts.append(
            f"<figure><img src='{html.escape(fig.relative_to(path.parent).as_posix())}' "
            f"alt='{html.escape(name)}'><figcaption>{html.escape(name)}</figcaption></figure>"
        )
    path.write_text(_page("cor2vox-bids group report", "".join(parts)))
    return path
