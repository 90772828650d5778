"""Group level: collect every participant's QC (indexed with pybids) into group tables, plots and a report."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from ..bids import naming
from ..errors import MissingInputError
from ..qc.regions import read_qc_tsv
from ..reports.html import write_group_report
from ..settings import Settings

LOGGER = logging.getLogger("cor2vox_bids.group")


def collect_participant_qc(output_dir: Path, labels: list[str] | None) -> list[tuple[dict, Path, Path, bool]]:
    """(entities, summary JSON, thickness TSV, made by a DEMO model) of every participant found in the
    derivatives by pybids. DEMO: any of the participant's synthetic T1w sidecars says ``ModelIsDemo``."""
    from bids import BIDSLayout

    layout = BIDSLayout(str(output_dir), validate=False, is_derivative=True)
    found = []
    for f in layout.get(suffix="qc", desc="summary", extension=".json"):
        ents = f.get_entities()
        if labels and ents["subject"] not in labels:
            continue
        sub, ses = ents["subject"], ents.get("session")
        tsv = Path(output_dir) / naming.qc_table_path(sub, ses)
        sidecars = [
            s
            for s in layout.get(subject=sub, suffix="T1w", extension=".json")
            if s.get_entities().get("session") == ses
        ]
        demo = any(bool(json.loads(Path(s.path).read_text()).get("ModelIsDemo")) for s in sidecars)
        found.append((ents, Path(f.path), tsv, demo))
    return sorted(found, key=lambda x: (x[0]["subject"], x[0].get("session") or ""))


def _write_tsv(path: Path, rows: list[dict]) -> Path:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols, delimiter="\t", restval="n/a", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("n/a" if v is None or (isinstance(v, float) and v != v) else v) for k, v in r.items()})
    return path


def run_group(settings: Settings) -> list[Path]:
    """Write ``group_desc-qc_summary.tsv``, ``group_desc-qc_thickness.tsv``, plots and the group report."""
    out = Path(settings.output_dir)
    found = collect_participant_qc(out, settings.participant_label)
    if not found:
        raise MissingInputError("no participant QC found; run the participant level first", out)
    summary_rows, region_rows = [], []
    demo = False
    for ents, summary_path, tsv, made_by_demo in found:
        summary = json.loads(summary_path.read_text())
        demo = demo or made_by_demo
        pid = {"participant_id": f"sub-{ents['subject']}"}
        if ents.get("session"):
            pid["session_id"] = f"ses-{ents['session']}"
        summary_rows.append({**pid, **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))}})
        if tsv.is_file():
            region_rows += [{**pid, **row} for row in read_qc_tsv(tsv)]
    written = [
        _write_tsv(out / naming.group_path("summary", ".tsv"), summary_rows),
        _write_tsv(out / naming.group_path("thickness", ".tsv"), region_rows),
    ]
    from ..qc.figures import plot_group_summary, plot_thickness_scatter

    (out / naming.group_figure_path("summary")).parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "QC measures per participant (line: median)": plot_group_summary(
            summary_rows, out / naming.group_figure_path("summary"), label_key="participant_id"
        )
    }
    if region_rows:
        figures["Thickness per region, all participants: image vs surfaces"] = plot_thickness_scatter(
            region_rows, out / naming.group_figure_path("scatter"), title="All participants: thickness per region"
        )
    written += list(figures.values())
    written.append(write_group_report(out / naming.group_report_path(), summary_rows, figures, demo))
    for p in written:
        LOGGER.info("wrote %s", p)
    return written
