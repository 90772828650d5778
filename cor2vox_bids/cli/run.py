"""``cor2vox-bids BIDS_DIR OUTPUT_DIR {participant,group}``: the BIDS App entry point."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..bids import atomic, naming
from ..errors import Cor2VoxError, ExitCode, MissingInputError, OutputError, ParticipantError
from ..settings import Settings
from .parser import build_parser, parse_settings, task_arguments

PROG = "cor2vox-bids"
DESCRIPTION = (
    "cor2vox-bids: synthesize anatomically faithful T1-weighted MRI from a participant's cortical surfaces "
    "(Cor2Vox: white/pial signed distance fields -> 3D Brownian-bridge diffusion), with QC of cortical "
    "thickness per Desikan-Killiany region.\n\nExit codes: " + ", ".join(f"{int(c)} {c.name.lower()}" for c in ExitCode)
    + ".\n\nOUTPUT_DIR: a new or empty folder, or an earlier cor2vox-bids output (its dataset_description.json names "
    "cor2vox-bids; a folder holding only cor2vox-bids logs also counts). Inside BIDS_DIR only a folder under "
    "BIDS_DIR/derivatives/ is allowed, e.g. BIDS_DIR/derivatives/cor2vox. Refused with exit 64 before anything is "
    "written: BIDS_DIR itself or any folder inside it outside derivatives/; derivatives/ itself; a folder whose "
    "dataset_description.json another pipeline wrote (e.g. derivatives/freesurfer) or that holds another dataset or "
    "FreeSurfer subjects; any other non-empty folder.\n\nA problem with one participant's files (unreadable, "
    "truncated, non-3D or non-finite T1w, invalid surfaces, surfaces in another frame or of another person) fails "
    "that participant only: one console line names the file, details go to OUTPUT_DIR/sub-<label>/log/<run-id>/, "
    "and the run exits 16 (17 if all failed, 66 if no participant was usable)."
)
LOGGER = logging.getLogger("cor2vox_bids")


def get_parser():
    """The generated parser (used by docs and tests)."""
    return build_parser(Settings, PROG, DESCRIPTION)


def setup_logging(verbose: int) -> None:
    level = {0: logging.INFO, 1: logging.INFO, 2: logging.DEBUG}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%y%m%d-%H:%M:%S"))
    root = logging.getLogger("cor2vox_bids")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    nipype_level = "INFO" if verbose >= 1 else "WARNING"
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).setLevel(nipype_level)
    # Nipype re-applies its own config's levels when a workflow runs: set them there too (progress and the
    # closing summary come from cor2vox's own loggers; Nipype's node chatter only with -v)
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    for option in ("workflow_level", "interface_level", "utils_level"):
        nipype_config.set("logging", option, nipype_level)
    nipype_logging.update_logging(nipype_config)


def new_run_id() -> str:
    """fMRIPrep-style run id: date-time and a UUID."""
    return f"{datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4()}"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"cor2vox-bids": __version__, "python": platform.python_version()}
    for dist in ("torch", "nipype", "pybids", "nibabel", "numpy", "scipy", "safetensors"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def write_snapshot(settings: Settings, output_dir: Path, run_id: str, extra: dict | None = None) -> Path:
    """Config snapshot of the run (all settings, versions, run id) in ``OUTPUT_DIR/log/<run-id>/``."""
    path = output_dir / naming.config_snapshot_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": run_id,
        "started": datetime.now(timezone.utc).isoformat(),
        "settings": settings.snapshot(),
        "versions": versions(),
        "command": [PROG, *sys.argv[1:]],
        **(extra or {}),
    }
    atomic.write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def prepare_output(settings: Settings) -> None:
    from ..bids.inputs import check_output_dir

    if not settings.bids_dir.is_dir():
        raise MissingInputError("the BIDS dataset folder does not exist", settings.bids_dir)
    check_output_dir(settings.bids_dir, settings.output_dir)
    try:
        settings.output_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.output_dir / f".cor2vox-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot create or write the output directory: {exc.strerror}", settings.output_dir) from None


def remove_if_only_snapshot(output_dir: Path, run_id: str) -> bool:
    """After a whole-run error, for an output folder this run created: remove it when the only file in it is this
    run's config snapshot (empty folders aside), so that a refused run leaves nothing behind. True when removed."""
    import shutil

    output_dir = Path(output_dir)
    snapshot = output_dir / naming.config_snapshot_path(run_id)
    try:
        files = [p for p in output_dir.rglob("*") if not p.is_dir()]
        if any(p != snapshot for p in files):
            return False
        shutil.rmtree(output_dir)
    except OSError:
        return False
    return True


def participant_level(settings: Settings, run_id: str) -> int:
    """Validate everything, then build and run the graph; returns the exit code."""
    from ..bids.inputs import collect_inputs
    from ..execution.failure_reports import write_failure_reports
    from ..execution.local import run_participants, summarize, work_dir_of
    from ..execution.model import check_model_and_device
    from ..execution.plan import plan_lines, validate_participants
    from ..execution.progress import closing_summary

    if settings.atrophy is not None:  # the atrophy spec (and its label files) first: 64 content, 66 unreadable
        from ..geometry.atrophy import load_atrophy_spec

        load_atrophy_spec(settings.atrophy)
    if settings.slurm_array:  # one SLURM array task per participant instead of the graph here
        from ..execution.array import run_array

        return run_array(settings, run_id, task_arguments(settings))
    if settings.use_plugin is None and not settings.dry_run:  # the default MultiProc: its worker server imports
        from ..execution.lifetime import start_worker_server  # Nipype and the interfaces during the checks below
        from ..execution.plugins import MP_CONTEXT

        start_worker_server(MP_CONTEXT)
    ready, failed, _ = collect_inputs(settings)  # usage / missing-input errors first (64, 66)
    model_info = check_model_and_device(settings)  # then the model (65) and the device (75)
    work = validate_participants(settings, run_id, (ready, failed))
    if settings.dry_run:  # a dry run only prints its plan (the output folder stays as it was)
        for line in plan_lines(settings, work, model_info):
            print(line)
        return int(ExitCode.OK)
    write_snapshot(
        settings,
        settings.output_dir,
        run_id,
        {
            "model": model_info.summary(),
            "participants": [p.key for p in work.ready],
            "failed_before_start": {f.key: f.message for f in work.failed},
        },
    )
    if not work.ready:
        details = "; ".join(f"{f.key}: {f.message}" for f in work.failed)
        raise MissingInputError(f"no participant has usable inputs ({details})")
    failures = run_participants(settings, work, model_info, run_id)
    failures.update({f.key: f.message for f in work.failed})
    write_failure_reports(settings, work, model_info, run_id, failures)  # after the graph: the crash files exist
    total = len(work.ready) + len(work.failed)
    code = summarize(failures, total, reported={f.key for f in work.failed})  # those were named before the start
    reports = [settings.output_dir / naming.report_path(p.subject, p.session) for p in work.ready
               if p.key not in failures]
    closing_summary(LOGGER, settings.output_dir, reports, failures, work_dir_of(settings, run_id))
    return code


def group_level(settings: Settings, run_id: str) -> int:
    from ..execution.group import run_group

    write_snapshot(settings, settings.output_dir, run_id)
    run_group(settings)
    return int(ExitCode.OK)


def main(argv: list[str] | None = None) -> int:
    """Run the BIDS App; returns the exit code (``sys.exit(main())`` in the console script)."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")  # no telemetry call (offline clusters, containers)
    try:
        settings = parse_settings(Settings, argv, PROG, DESCRIPTION)
    except Cor2VoxError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    setup_logging(settings.verbose)
    from ..execution.console import keep_tracebacks_off_console
    from ..execution.lifetime import end_workers_with_main

    keep_tracebacks_off_console(settings.verbose)  # node tracebacks go to crash files only
    end_workers_with_main()  # SIGTERM/SIGHUP end the workers first (SIGKILL: they watch this process)
    run_id = new_run_id()
    output_existed = Path(settings.output_dir).exists()
    try:
        prepare_output(settings)
        if settings.analysis_level == "participant":
            code = participant_level(settings, run_id)
            if settings.dry_run and not output_existed:
                remove_if_only_snapshot(settings.output_dir, run_id)
            return code
        return group_level(settings, run_id)
    except ParticipantError as exc:  # should not escape the workflow; treat as a failed run
        LOGGER.error("%s", exc)
        return int(ExitCode.ALL_PARTICIPANTS_FAILED)
    except Cor2VoxError as exc:
        LOGGER.error("%s", exc)
        if not output_existed:  # e.g. an unknown participant label: no empty output folder left behind
            remove_if_only_snapshot(settings.output_dir, run_id)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        LOGGER.error("interrupted; rerun with the same -w/--work-dir to resume")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # unexpected: keep the traceback in a file, not on the screen
        crash = Path(settings.output_dir) / naming.run_crash_path(run_id)
        try:
            import traceback

            crash.parent.mkdir(parents=True, exist_ok=True)
            crash.write_text(traceback.format_exc())
            where = f"; details in {crash}"
        except OSError:
            where = ""
        LOGGER.error("unexpected error: %s%s", " ".join(str(exc).split()), where)
        return int(ExitCode.ERROR)


if __name__ == "__main__":
    sys.exit(main())
