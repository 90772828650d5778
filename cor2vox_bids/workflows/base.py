"""Top-level participant workflow: validation before the graph, ``init_cor2vox_wf``, execution, failures."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import Cor2VoxError
from ..inputs import InputFailure, ParticipantInputs, collect_inputs, resolve_fs_subjects_dir
from ..settings import Settings
from . import outputs
from .model import ModelInfo

LOGGER = logging.getLogger("cor2vox_bids.workflow")
WORKFLOW_NAME = "cor2vox_wf"


@dataclass
class WorkPlan:
    """Participants ready to run and those left out before any work (with reasons)."""

    ready: list[ParticipantInputs] = field(default_factory=list)
    failed: list[InputFailure] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def participant_spec(p: ParticipantInputs, settings: Settings) -> dict:
    """JSON-ready description of a participant's inputs (what the ingest node reads)."""
    return {
        "key": p.key, "subject": p.subject, "session": p.session, "source": p.source,
        "hemis": {h: {k: (str(v) if v else None) for k, v in asdict(files).items()} for h, files in p.hemis.items()},
        "t1w": str(p.t1w) if p.t1w else None,
        "fs_subject_dir": str(p.fs_subject_dir) if p.fs_subject_dir else None,
        "orig": str(p.orig) if p.orig else None,
        "bids_dir": str(Path(settings.bids_dir).resolve()),
        "fs_dir": str(resolve_fs_subjects_dir(settings).resolve()) if p.source == "freesurfer" else None,
        "smriprep_dir": str(settings.derivatives_map()["smriprep"].resolve()) if p.source == "gifti" else None,
    }


def write_crash_report(output_dir: Path, subject: str, run_id: str, key: str, message: str,
                       path: Path | None) -> Path:
    """A plain-text crash file for a participant that failed before the graph ran."""
    crash = output_dir / outputs.log_dir(subject, run_id) / f"crash-{key}-validation.txt"
    crash.parent.mkdir(parents=True, exist_ok=True)
    crash.write_text(f"participant: {key}\nstage: input validation (before any work)\nfile: {path or 'n/a'}\n"
                     f"error: {message}\n")
    return crash


def validate_participants(settings: Settings, run_id: str, found: tuple[list, list] | None = None) -> WorkPlan:
    """Find every participant's files (unless ``found`` from ``collect_inputs``) and validate their surfaces.

    Failed participants get a crash report in ``sub-<label>/log/<run-id>/``; nothing else is written.
    """
    from .. import steps

    ready, failed = found if found is not None else collect_inputs(settings)[:2]
    plan = WorkPlan(failed=list(failed))
    for p in ready:
        try:
            _, warnings = steps.load_hemispheres(participant_spec(p, settings))
        except Cor2VoxError as exc:
            LOGGER.error("%s: %s", p.key, exc)
            plan.failed.append(InputFailure(p.key, str(exc), exc.path))
            continue
        plan.warnings[p.key] = warnings
        for w in warnings:
            LOGGER.warning("%s: %s", p.key, w)
        plan.ready.append(p)
    for f in plan.failed:
        subject = f.key.split("_")[0][4:]
        write_crash_report(settings.output_dir, subject, run_id, f.key, f.message, f.path)
    return plan


def seeds_of(settings: Settings) -> list[int]:
    return [settings.random_seed + i for i in range(settings.num_samples)]


def plan_lines(settings: Settings, plan: WorkPlan, model: ModelInfo) -> list[str]:
    """What ``--dry-run`` prints: per participant, its inputs and the outputs it would write."""
    lines = [f"model: {model.label} sha256={model.sha256[:12]}… grid {model.grid_shape} @ {model.spacing_mm} mm, "
             f"device {model.device}; {settings.steps} steps, seeds {seeds_of(settings)}"]
    for p in plan.ready:
        lines.append(f"{p.key}: surfaces from {p.source} ({p.hemis['L'].white.parent}), T1w: {p.t1w or 'none'}")
        for seed in seeds_of(settings):
            lines.append(f"  would write {outputs.synth_path(p.subject, p.session, seed, settings.num_samples)}")
        lines.append(f"  would write {outputs.qc_table_path(p.subject, p.session)} and "
                     f"{outputs.report_path(p.subject, p.session)}")
    for f in plan.failed:
        lines.append(f"{f.key}: SKIPPED — {f.message}")
    return lines


def work_dir_of(settings: Settings, run_id: str) -> Path:
    if settings.work_dir is not None:
        return Path(settings.work_dir).resolve()
    return Path(tempfile.gettempdir()) / f"cor2vox_work_{run_id}"


def _write_if_changed(path: Path, payload: dict) -> Path:
    text = json.dumps(payload, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def node_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", key) + "_wf"


def init_cor2vox_wf(settings: Settings, plan: WorkPlan, model: ModelInfo, run_id: str, work_dir: Path):
    """One Nipype workflow holding a sub-workflow per participant (and session)."""
    from nipype.pipeline import engine as pe

    from .participant import init_participant_wf

    wf = pe.Workflow(name=WORKFLOW_NAME, base_dir=str(work_dir))
    # Threads per synthesis node: not derived from --nprocs, because the network's arithmetic (oneDNN, bf16) is
    # only bit-reproducible for a fixed thread count; --nprocs must not change the images.
    threads = settings.omp_nthreads or os.cpu_count() or 1
    run_info = {"model": model.summary(), "seeds": seeds_of(settings), "steps": settings.steps, "eta": settings.eta,
                "device": model.device, "num_samples": settings.num_samples,
                "save_conditioning": settings.save_conditioning, "run_id": run_id}
    run_json = work_dir / "inputs" / "run.json"
    run_json.parent.mkdir(parents=True, exist_ok=True)
    run_json.write_text(json.dumps(run_info, indent=2) + "\n")
    for p in plan.ready:
        pjson = _write_if_changed(work_dir / "inputs" / f"{p.key}.json", participant_spec(p, settings))
        wf.add_nodes([init_participant_wf(
            name=node_name(p.key), participant_json=pjson, run_json=run_json,
            output_dir=Path(settings.output_dir).resolve(), model=str(Path(model.path).resolve()),
            model_sha256=model.sha256, grid_shape=list(model.grid_shape), spacing_mm=model.spacing_mm,
            seeds=seeds_of(settings), steps=settings.steps, eta=settings.eta, device=model.device,
            threads=threads, has_t1w=p.t1w is not None, label=p.key,
            crashdump_dir=Path(settings.output_dir).resolve() / outputs.log_dir(p.subject, run_id))])
    wf.config["execution"].update({"crashfile_format": "txt", "hash_method": "content",
                                   "stop_on_first_crash": False, "remove_unnecessary_outputs": False,
                                   "parameterize_dirs": False})
    return wf


# MultiProc workers are started by a fork server, not forked from this process: a parent that already ran the
# threaded geometry kernels (numba's thread pool is not fork-safe), torch or BLAS threads cannot hang them.
MP_CONTEXT = "forkserver"


def local_plugin_args(settings: Settings, plugin: str = "MultiProc") -> dict:
    """Arguments of a local multiprocessing plugin from the settings: processes, memory, worker start method."""
    args: dict = {"n_procs": settings.nprocs or os.cpu_count() or 1}
    if settings.mem is not None:
        args["memory_gb"] = settings.mem
    if plugin == "MultiProc":
        args["mp_context"] = MP_CONTEXT
    return args


def plugin_of(settings: Settings, model: ModelInfo) -> tuple[str, dict]:
    """Nipype plugin and its arguments: ``--use-plugin`` YAML, else MultiProc honouring nprocs/mem/GPU."""
    if settings.use_plugin is not None:
        from .plugins import load_plugin_file

        return load_plugin_file(settings.use_plugin, settings, model)
    args = {**local_plugin_args(settings), "raise_insufficient": False}
    if model.device.startswith("cuda"):
        args["n_gpu_procs"] = 1  # one synthesis node on the GPU at a time
    return "MultiProc", args


def crash_message(crash_dir: Path) -> str | None:
    """The last error line of the newest Nipype crash file in ``crash_dir``, if any."""
    files = sorted(crash_dir.glob("crash-*.txt"), key=lambda f: f.stat().st_mtime)
    if not files:
        return None
    lines = [ln.strip() for ln in files[-1].read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
    return (errors[-1] if errors else lines[-1]) + f" (crash file: {files[-1]})"


def run_participants(settings: Settings, plan: WorkPlan, model: ModelInfo, run_id: str) -> dict[str, str]:
    """Run the graph; returns {participant key: failure reason} for those that failed in it."""
    work_dir = work_dir_of(settings, run_id)
    if settings.clean_workdir and (work_dir / WORKFLOW_NAME).exists():
        LOGGER.info("removing %s (--clean-workdir)", work_dir / WORKFLOW_NAME)
        shutil.rmtree(work_dir / WORKFLOW_NAME)
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"cannot create the work directory: {exc.strerror}", work_dir) from None
    outputs.write_dataset_description(Path(settings.output_dir), Path(settings.bids_dir),
                                      resolve_fs_subjects_dir(settings), model.label,
                                      os.environ.get("COR2VOX_CONTAINER"))
    wf = init_cor2vox_wf(settings, plan, model, run_id, work_dir)
    plugin, args = plugin_of(settings, model)
    LOGGER.info("running %d participant(s) with %s %s; work dir %s", len(plan.ready), plugin, args, work_dir)
    try:
        wf.run(plugin=plugin, plugin_args=args)
    except RuntimeError as exc:  # Nipype: "Workflow did not execute cleanly"; details in crash files
        LOGGER.debug("nipype: %s", exc)
    failures: dict[str, str] = {}
    for p in plan.ready:
        crash_dir = Path(settings.output_dir) / outputs.log_dir(p.subject, run_id)
        expected = [Path(settings.output_dir) / outputs.synth_path(p.subject, p.session, s, settings.num_samples)
                    for s in seeds_of(settings)]
        message = crash_message(crash_dir) if crash_dir.is_dir() else None
        if message or not all(f.is_file() for f in expected):
            failures[p.key] = message or "outputs missing after the run (see the log)"
    return failures
