"""``sub-<label>.html`` for the participants whose run failed (fMRIPrep's manner: a report whose Errors section
shows the crash), written in the main process after the graph ended; the report of a participant that finished
is left as the graph wrote it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..bids import naming
from ..reports.participant import ParticipantReport, read_crash_file, write_error_report
from ..settings import Settings
from ..workflows.participant import report_inputs
from .model import ModelInfo
from .plan import WorkPlan, seeds_of, steps_of

LOGGER = logging.getLogger("cor2vox_bids.workflow")


def crash_files_of(output_dir: Path, subject: str, key: str, run_id: str) -> list[Path]:
    """This run's crash files of one participant: its pre-run crash file(s) and the Nipype node crash files (the
    folder is per subject, so another session's pre-run crash files are left out)."""
    folder = Path(output_dir) / naming.log_dir(subject, run_id)
    files = sorted(folder.glob(naming.NIPYPE_CRASH_GLOB)) if folder.is_dir() else []
    return [f for f in files if naming.is_crash_of(f.name, key)]


def write_failure_reports(settings: Settings, plan: WorkPlan, model: ModelInfo, run_id: str,
                          failures: dict[str, str]) -> list[Path]:
    """One error report per failed participant (validation, workflow building or the graph); returns them."""
    output_dir = Path(settings.output_dir)
    snapshot_path = output_dir / naming.config_snapshot_path(run_id)
    snapshot = json.loads(snapshot_path.read_text()) if snapshot_path.is_file() else {}
    run = {"model": model.summary(), "seeds": seeds_of(settings), "steps": steps_of(settings, model),
           "eta": settings.eta, "device": model.device}
    found = {**plan.refused, **{p.key: p for p in plan.ready}}  # the files of each participant, where known
    known = [(p.subject, p.session, p.key) for p in plan.ready] + [(f.subject, f.session, f.key) for f in plan.failed]
    at_fault = {f.key: f.path for f in plan.failed}
    written = []
    for subject, session, key in known:
        if key not in failures:
            continue
        p = found.get(key)
        inputs = report_inputs(p) if p is not None else []
        if at_fault.get(key) is not None:
            inputs.append(("File at fault", str(at_fault[key])))
        report = ParticipantReport(
            subject=subject, session=session, surfaces_source=p.source if p is not None else "not known",
            inputs=inputs, run=run, summary={}, rows=[], figures=[],
            warnings=["The run failed for this participant (see Errors)."],
            versions=snapshot.get("versions") or {}, started=snapshot.get("started"), run_id=run_id,
            command=snapshot.get("command"))
        crashes = [read_crash_file(f) for f in crash_files_of(output_dir, subject, key, run_id)]
        path = output_dir / naming.report_path(subject, session)
        reason = failures[key].split(" (crash file: ")[0] if crashes else failures[key]  # the files are listed
        try:
            written.append(write_error_report(path, report, reason, crashes, output_dir))
        except OSError as exc:  # the report is a courtesy: the crash files and the console already tell
            LOGGER.warning("%s: could not write the error report %s (%s)", key, path, exc.strerror)
    return written
