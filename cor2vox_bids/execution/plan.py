"""Before the graph: every participant's surfaces read and validated; what ``--dry-run`` prints."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bids import atomic, naming
from ..bids.inputs import InputFailure, ParticipantInputs, collect_inputs
from ..bids.preflight import load_t1w
from ..errors import Cor2VoxError
from ..geometry.surfaces import tkr_to_scanner_matrix
from ..geometry.validation import check_tissue_contrast
from ..interfaces.surfaces import load_and_validate
from ..settings import Settings
from .model import ModelInfo

LOGGER = logging.getLogger("cor2vox_bids.workflow")


@dataclass
class WorkPlan:
    """Participants ready to run and those left out before any work (with reasons)."""

    ready: list[ParticipantInputs] = field(default_factory=list)
    failed: list[InputFailure] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    tracebacks: dict[str, str] = field(default_factory=dict)  # unexpected errors: for the crash file only
    refused: dict[str, ParticipantInputs] = field(default_factory=dict)  # failed their checks: the files found


#: what a pre-run crash file says of each stage (``write_crash_report``)
CRASH_STAGES = {"validation": "input validation (before any work)",
                "graph": "building the participant's workflow (before any work)"}


def write_crash_report(output_dir: Path, run_id: str, failure: InputFailure, details: str | None = None,
                       stage: str = "validation") -> Path:
    """A plain-text crash file for a participant that failed before the graph ran (``details``: a traceback;
    ``stage``: a key of :data:`CRASH_STAGES`)."""
    crash = Path(output_dir) / naming.validation_crash_path(failure.subject, run_id, failure.key, stage)
    atomic.write_text(
        crash,
        f"participant: {failure.key}\nstage: {CRASH_STAGES[stage]}\n"
        f"file: {failure.path or 'n/a'}\nerror: {failure.message}\n" + (f"\n{details}" if details else "")
    )
    return crash


def check_participant(p: ParticipantInputs) -> list[str]:
    """Every input of one participant before the graph: the T1w read in full and checked, the surfaces read and
    validated, and the surfaces checked against the T1w's WM > GM > CSF contrast (frame and identity).
    Returns warnings; raises a ``ParticipantError`` naming the file at fault."""
    t1 = load_t1w(p.t1w) if p.t1w is not None else None
    hemis, warnings = load_and_validate(p.hemis, p.source, p.orig, p.t1w, t1)
    if t1 is not None:
        data = np.asarray(t1.dataobj, dtype=np.float32)
        # offsets a tkr/scanner RAS mix-up would be off by: FreeSurfer's c_ras (from orig.mgz) and the T1w's
        # centre (close to the c_ras of the conformed T1w: GIFTI surfaces, or an orig.mgz that lost its c_ras)
        frame_shift = [t1.affine[:3, :3] @ (np.asarray(t1.shape[:3]) / 2.0) + t1.affine[:3, 3]]
        if p.orig is not None:
            frame_shift.insert(0, tkr_to_scanner_matrix(p.orig)[:3, 3])
        for h in hemis:
            warnings += check_tissue_contrast(h, data, t1.affine, frame_shift)[1]
    return warnings


def validate_participants(
    settings: Settings, run_id: str, found: tuple[list[ParticipantInputs], list[InputFailure]] | None = None
) -> WorkPlan:
    """Find every participant's files (unless ``found`` from ``collect_inputs``) and validate their surfaces.

    Failed participants get a crash report in ``sub-<label>/log/<run-id>/`` (not in a ``--dry-run``, which writes
    nothing); nothing else is written.
    """
    ready, failed = found if found is not None else collect_inputs(settings)[:2]
    plan = WorkPlan(failed=list(failed))
    for p in ready:
        try:
            warnings = check_participant(p)
        except Cor2VoxError as exc:
            LOGGER.error("%s: %s", p.key, exc)
            plan.refused[p.key] = p
            plan.failed.append(InputFailure(p.subject, p.session, str(exc), exc.path))
            continue
        except Exception as exc:  # a bug or an input no check foresaw: this participant only, traceback to file
            message = f"unexpected error while checking the inputs ({type(exc).__name__}: {exc})"
            LOGGER.error("%s: %s (traceback in the crash file)", p.key, " ".join(message.split()))
            plan.failed.append(InputFailure(p.subject, p.session, message, p.t1w))
            plan.tracebacks[p.key] = traceback.format_exc()
            plan.refused[p.key] = p
            continue
        plan.warnings[p.key] = warnings
        for w in warnings:
            LOGGER.warning("%s: %s", p.key, w)
        plan.ready.append(p)
    for f in [] if settings.dry_run else plan.failed:
        write_crash_report(settings.output_dir, run_id, f, plan.tracebacks.get(f.key))
    return plan


def seeds_of(settings: Settings) -> list[int]:
    """The random seeds of the samples: ``--random-seed`` + 0 … ``--num-samples`` − 1."""
    return [settings.random_seed + i for i in range(settings.num_samples)]


def steps_of(settings: Settings, model: ModelInfo) -> int:
    """Sampling steps: ``--steps``, else the model's default (``sampling.steps`` in its config.json)."""
    return settings.steps if settings.steps is not None else model.sampling_steps


def plan_lines(settings: Settings, plan: WorkPlan, model: ModelInfo) -> list[str]:
    """What ``--dry-run`` prints: per participant, its inputs and the outputs it would write."""
    lines = [
        f"model: {model.label} sha256={model.sha256[:12]}… grid {model.grid_shape} @ {model.spacing_mm} mm, "
        f"device {model.device}; {steps_of(settings, model)} steps, seeds {seeds_of(settings)}"
    ]
    for p in plan.ready:
        lines.append(f"{p.key}: surfaces from {p.source} ({p.hemis['L'].white.parent}), T1w: {p.t1w or 'none'}")
        for seed in seeds_of(settings):
            lines.append(f"  would write {naming.synth_path(p.subject, p.session, seed, settings.num_samples)}")
        lines.append(
            f"  would write {naming.qc_table_path(p.subject, p.session)} and {naming.report_path(p.subject, p.session)}"
        )
    for f in plan.failed:
        lines.append(f"{f.key}: SKIPPED — {f.message}")
    return lines
