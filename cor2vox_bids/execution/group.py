"""Group level: collect every participant's QC (indexed with pybids) into group tables, plots and a report."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path

from ..bids import atomic, naming
from ..bids.dataset import write_json
from ..errors import CorruptTableError, MissingInputError
from ..qc.regions import read_qc_tsv
from ..settings import Settings

LOGGER = logging.getLogger("cor2vox_bids.group")


def _says_demo(sidecar: Path) -> bool:
    """``ModelIsDemo`` of a synthetic T1w sidecar (an unreadable sidecar counts as DEMO: the notice stays on)."""
    try:
        return bool(json.loads(sidecar.read_text(encoding="utf-8")).get("ModelIsDemo"))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        LOGGER.warning("%s: unreadable sidecar; the DEMO notice is kept on", sidecar)
        return True


def collect_participant_qc(output_dir: Path, labels: list[str] | None) -> list[tuple[dict, Path, Path, bool]]:
    """(entities, summary JSON, thickness TSV, made by a DEMO model) of every participant found in the
    derivatives by pybids. DEMO: any of the participant's synthetic T1w sidecars says ``ModelIsDemo``."""
    from bids import BIDSLayout

    # the default work folder (OUTPUT_DIR/work) and the logs hold no derivatives: do not crawl them
    from bids.layout import BIDSLayoutIndexer

    skip = [naming.default_work_dir(Path(".")).name, "log", "group", "code", "sourcedata", re.compile(r"^\.")]
    layout = BIDSLayout(str(output_dir), validate=False, is_derivative=True,
                        indexer=BIDSLayoutIndexer(validate=False, ignore=skip))
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
        demo = any(_says_demo(Path(s.path)) for s in sidecars)
        found.append((ents, Path(f.path), tsv, demo))
    return sorted(found, key=lambda x: (x[0]["subject"], x[0].get("session") or ""))


def _crash_line(crash: Path) -> str:
    """The error line of a crash file: our pre-run ``error:`` line, else Nipype's last ``...Error`` line."""
    lines = [ln.strip() for ln in crash.read_text(errors="replace").splitlines() if ln.strip()]
    ours = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
    theirs = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
    return (ours or theirs or lines or ["empty crash file"])[-1]


def participants_without_qc(output_dir: Path, have_qc: set[str], labels: list[str] | None) -> dict[str, str]:
    """``sub-<label>`` folders of the output whose participant has no QC summary (the participant level failed
    for it or did not finish): ``sub-<label>`` → why (the newest crash file's error line and that file)."""
    out = {}
    for folder in sorted(Path(output_dir).glob("sub-*")):
        subject = folder.name.removeprefix("sub-")
        if not folder.is_dir() or subject in have_qc or (labels and subject not in labels):
            continue
        crashes = sorted(folder.glob(f"log/*/{naming.NIPYPE_CRASH_GLOB}"), key=lambda f: f.stat().st_mtime)
        if crashes:
            why = f"{_crash_line(crashes[-1])} (crash file: {crashes[-1].relative_to(output_dir)})"
        else:
            why = "no QC summary (the participant level did not finish for it)"
        out[folder.name] = why
    return out


def _tsv_cell(value) -> str:
    """BIDS TSV cell: ``n/a`` for missing, floats rounded to 4 decimals (no 17-digit noise)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _write_tsv(path: Path, rows: list[dict]) -> Path:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, cols, delimiter="\t", restval="n/a", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _tsv_cell(v) for k, v in r.items()})
    return path


_ID_COLUMNS = {
    "participant_id": {"LongName": "Participant", "Description": "BIDS participant label (sub-<label>)."},
    "session_id": {"LongName": "Session", "Description": "BIDS session label (ses-<label>), when sessions exist."},
}


def read_participant_tables(summary_path: Path, tsv: Path) -> tuple[dict, list[dict] | None]:
    """One participant's QC summary (JSON object) and thickness rows (None without a TSV); a corrupt file raises
    :class:`CorruptTableError` naming it."""
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptTableError(f"corrupt QC summary ({' '.join(str(exc).split())})", summary_path) from None
    if not tsv.is_file():
        return summary, None
    try:
        rows = read_qc_tsv(tsv)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError) as exc:
        raise CorruptTableError(f"corrupt QC table ({' '.join(str(exc).split())})", tsv) from None
    return summary, rows


def _write_harmonization(out: Path, result):
    """``group_desc-harmonization_qc.tsv`` with its data dictionary, and the report section's figure."""
    from ..qc.harmonization import HARMONIZATION_DICTIONARY
    from ..reports.group import harmonization_section

    tsv = _write_tsv(out / naming.harmonization_table_path(), result.rows)
    columns = list(dict.fromkeys(k for r in result.rows for k in r))
    write_json(tsv.with_suffix(".json"), {k: HARMONIZATION_DICTIONARY[k] for k in columns})
    figure = out / naming.group_figure_path("harmonization")
    figure.parent.mkdir(parents=True, exist_ok=True)
    return harmonization_section(tsv, figure, result.rows, result.before, result.after, result.reference,
                                 result.spread, result.reference_dir, result.reference_labels, result.left_out)


def run_group(settings: Settings) -> list[Path]:
    """Write ``group_desc-qc_summary.tsv`` and ``group_desc-qc_thickness.tsv`` (each with its data dictionary),
    the group figures and the group report; with ``--reference-dataset`` also ``group_desc-harmonization_qc.tsv``
    (:mod:`cor2vox_bids.execution.harmonization`) and its report section."""
    from ..interfaces.reports import qc_summary_dictionary
    from ..reports.group import GroupReport, make_group_figures, write_group_report
    from ..reports.measures import summary_dictionary

    out = Path(settings.output_dir)
    reference = None
    if settings.reference_dataset is not None:  # a bad reference stops the run before anything is written
        from .harmonization import collect_reference

        reference = collect_reference(settings)
    found = collect_participant_qc(out, settings.participant_label)
    if not found:
        raise MissingInputError("no participant QC found; run the participant level first", out)
    not_in_tables = participants_without_qc(out, {e["subject"] for e, *_ in found}, settings.participant_label)
    for key, why in not_in_tables.items():
        LOGGER.warning("%s has no QC and is not in the group outputs: %s", key, why)
    summary_rows, region_rows = [], []
    reports: dict[str, Path] = {}
    demo = False
    table_dictionary: dict = {}
    skipped: dict[Path, str] = {}  # a corrupt participant table: named, that participant left out, exit 65 at the end
    harmonized: list = []  # the participants the harmonization table measures (with --reference-dataset)
    for ents, summary_path, tsv, made_by_demo in found:
        try:
            summary, rows = read_participant_tables(summary_path, tsv)
        except CorruptTableError as exc:
            LOGGER.warning("sub-%s left out of the group tables: %s", ents["subject"], exc)
            skipped[exc.path] = str(exc)
            not_in_tables[f"sub-{ents['subject']}" + (f" ses-{ents['session']}" if ents.get("session") else "")] = (
                f"{exc.message} ({exc.path.relative_to(out) if exc.path.is_relative_to(out) else exc.path})")
            continue
        demo = demo or made_by_demo
        pid = {"participant_id": f"sub-{ents['subject']}"}
        if ents.get("session"):
            pid["session_id"] = f"ses-{ents['session']}"
        summary_rows.append({**pid, **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))}})
        if reference is not None:
            from .harmonization import Harmonized

            harmonized.append(Harmonized(ents["subject"], ents.get("session"), summary_path, summary, rows))
        report = out / naming.report_path(ents["subject"], ents.get("session"))
        if report.is_file():
            reports[" ".join(pid.values())] = report
        if rows is not None:
            region_rows += [{**pid, **row} for row in rows]
            sidecar = tsv.with_suffix(".json")
            if not table_dictionary and sidecar.is_file():
                try:
                    table_dictionary = json.loads(sidecar.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    LOGGER.warning("%s: unreadable data dictionary; another participant's is used", sidecar)
    if not summary_rows:
        first = next(iter(skipped))
        raise CorruptTableError(f"every participant's QC table is corrupt ({len(skipped)}); nothing to collect",
                                first)
    harmonization = None
    if reference is not None:
        from .harmonization import run_harmonization

        harmonization = run_harmonization(settings, harmonized, reference)
    summary_tsv = _write_tsv(out / naming.group_path("summary", ".tsv"), summary_rows)
    thickness_tsv = _write_tsv(out / naming.group_path("thickness", ".tsv"), region_rows)
    keys = [k for k in dict.fromkeys(k for r in summary_rows for k in r) if k not in _ID_COLUMNS]
    qc_dictionary = qc_summary_dictionary()
    written = [
        summary_tsv,
        write_json(summary_tsv.with_suffix(".json"), {**_ID_COLUMNS, **summary_dictionary(keys, qc_dictionary)}),
        thickness_tsv,
        write_json(thickness_tsv.with_suffix(".json"), {**_ID_COLUMNS, **table_dictionary}),
    ]
    figure = out / naming.group_figure_path("measures")
    figure.parent.mkdir(parents=True, exist_ok=True)
    figures = make_group_figures(figure, summary_rows, qc_dictionary)
    written += [f.path for f in figures]
    section = None
    if harmonization is not None:
        section = _write_harmonization(out, harmonization)
        written += [section.table, section.table.with_suffix(".json")] + [f.path for f in section.figures]
    group = GroupReport(
        rows=summary_rows,
        reports=reports,
        tables=[("Summary measures, one row per participant", summary_tsv),
                ("Thickness per region, one row per participant and region", thickness_tsv)]
        + ([("Harmonization: distances to the reference site, one row per participant and tissue", section.table)]
           if section is not None else []),
        figures=figures,
        demo=demo,
        dictionary=qc_dictionary,
        harmonization=section,
        not_in_tables=not_in_tables,
    )
    written.append(write_group_report(out / naming.group_report_path(), group))
    for p in written:
        LOGGER.debug("wrote %s", p)
    LOGGER.info("group report: %s", written[-1])
    LOGGER.info("group tables: %s, %s (data dictionaries beside them)", summary_tsv, thickness_tsv)
    if section is not None:
        LOGGER.info("harmonization table: %s (%s)", section.table, section.verdict)
    if skipped:
        first = next(iter(skipped))
        raise CorruptTableError(f"{len(skipped)} participant table(s) corrupt and left out of the group outputs "
                                f"(the others were written); first: {skipped[first]}", first)
    return written
