"""Running the participant graph here (MultiProc by default, or the plugin of ``--use-plugin``) and collecting
which participants failed in it."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from ..bids import atomic, naming
from ..bids.dataset import write_dataset_description
from ..bids.inputs import InputFailure, resolve_fs_subjects_dir
from ..errors import Cor2VoxError, ExitCode, OutputError
from ..settings import Settings
from ..workflows.base import BuildFailure, SynthesisSpec, init_cor2vox_wf, node_name
from .model import ModelInfo
from .plan import WorkPlan, seeds_of, steps_of, write_crash_report
from .plugins import load_plugin_file, local_plugin_args
from .progress import ProgressTail, nipype_worker_logging, node_status_logger

LOGGER = logging.getLogger("cor2vox_bids.workflow")
#: seconds between MultiProc's checks for finished nodes and ready ones (each check is cheap and local)
LOCAL_POLL_S = 0.1


def work_dir_of(settings: Settings, run_id: str) -> Path:
    """``-w`` (absolute), else ``OUTPUT_DIR/work`` (in ``.bidsignore``), so a plain rerun resumes."""
    if settings.work_dir is not None:
        return Path(settings.work_dir).resolve()
    return naming.default_work_dir(Path(settings.output_dir)).resolve()


def plugin_of(settings: Settings, model: ModelInfo) -> tuple[object, dict]:
    """Nipype plugin and its arguments: ``--use-plugin`` YAML, else MultiProc honouring nprocs/mem/GPU."""
    if settings.use_plugin is not None:
        return load_plugin_file(settings.use_plugin, settings, model)
    args = {**local_plugin_args(settings), "raise_insufficient": False}
    if model.device.startswith("cuda"):
        args["n_gpu_procs"] = 1  # one synthesis node on the GPU at a time
    from .lifetime import multiproc_plugin

    return multiproc_plugin(args), args  # MultiProc whose workers end with this process


def crash_message(crash_dir: Path) -> str | None:
    """The last error line of the newest Nipype crash file in ``crash_dir``, if any (a participant's pre-run crash
    files there belong to another session of the subject: they are not this run's node failures)."""
    files = sorted((f for f in crash_dir.glob(naming.NIPYPE_CRASH_GLOB) if not naming.is_pre_run_crash(f.name)),
                   key=lambda f: f.stat().st_mtime)
    if not files:
        return None
    lines = [ln.strip() for ln in files[-1].read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
    return (errors[-1] if errors else lines[-1]) + f" (crash file: {files[-1]})"


def synthesis_spec(settings: Settings, model: ModelInfo) -> SynthesisSpec:
    # Threads per synthesis node: not derived from --nprocs, because the network's arithmetic (oneDNN, bf16) is
    # only bit-reproducible for a fixed thread count; --nprocs must not change the images.
    return SynthesisSpec(
        model=str(Path(model.path).resolve()),
        model_sha256=model.sha256,
        grid_shape=model.grid_shape,
        spacing_mm=model.spacing_mm,
        device=model.device,
        seeds=seeds_of(settings),
        steps=steps_of(settings, model),
        eta=settings.eta,
        threads=settings.omp_nthreads or os.cpu_count() or 1,
        atrophy=None if settings.atrophy is None else str(settings.atrophy),
    )


def write_run_info(settings: Settings, model: ModelInfo, run_id: str, work_dir: Path) -> Path:
    """The run description the derivatives nodes read (model, seeds, steps, device, what to publish)."""
    run_info = {
        "model": model.summary(),
        "seeds": seeds_of(settings),
        "steps": steps_of(settings, model),
        "eta": settings.eta,
        "device": model.device,
        "num_samples": settings.num_samples,
        "save_conditioning": settings.save_conditioning,
        "atrophy": None if settings.atrophy is None else str(settings.atrophy),
        "run_id": run_id,
    }
    path = naming.run_info_path(work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(run_info, indent=2) + "\n")
    return path


def record_build_failure(output_dir: Path, run_id: str, failure: BuildFailure) -> str:
    """A participant whose sub-workflow could not be built: one log line, a crash file (``…-graph.txt``, with the
    traceback when the error was not a foreseen ``Cor2VoxError``); returns the reason."""
    p, exc = failure.participant, failure.error
    if isinstance(exc, Cor2VoxError):
        message, path, details = str(exc), exc.path, None
    else:
        message = f"unexpected error while building the workflow ({type(exc).__name__}: {' '.join(str(exc).split())})"
        path, details = None, failure.traceback
    LOGGER.error("%s: %s%s", p.key, message, " (traceback in the crash file)" if details else "")
    crash = write_crash_report(output_dir, run_id, InputFailure(p.subject, p.session, message, path), details,
                               stage="graph")
    return f"{message} (crash file: {crash})"


def run_participants(settings: Settings, plan: WorkPlan, model: ModelInfo, run_id: str) -> dict[str, str]:
    """Build and run the graph; returns {participant key: failure reason} for those that failed while their
    sub-workflow was built or in the graph (each alone: the others run)."""
    work_dir = work_dir_of(settings, run_id)
    if settings.clean_workdir and (work_dir / naming.WORKFLOW_NAME).exists():
        LOGGER.info("removing %s (--clean-workdir)", work_dir / naming.WORKFLOW_NAME)
        shutil.rmtree(work_dir / naming.WORKFLOW_NAME)
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the work directory: {exc.strerror}", work_dir) from None
    write_dataset_description(
        Path(settings.output_dir),
        Path(settings.bids_dir),
        resolve_fs_subjects_dir(settings),
        model.label,
        os.environ.get("COR2VOX_CONTAINER"),
    )
    run_json = write_run_info(settings, model, run_id, work_dir)
    wf, build_failures = init_cor2vox_wf(
        plan.ready, synthesis_spec(settings, model), run_json, Path(settings.output_dir), run_id, work_dir
    )
    failures = {b.participant.key: record_build_failure(Path(settings.output_dir), run_id, b) for b in build_failures}
    built = [p for p in plan.ready if p.key not in failures]
    if not built:
        return failures
    plugin, args = plugin_of(settings, model)
    plugin_name = plugin if isinstance(plugin, str) else getattr(plugin, "__name__", type(plugin).__name__)
    if "MultiProc" in plugin_name:  # local workers: look for finished nodes often (Nipype's default is 2 s)
        wf.config["execution"]["poll_sleep_duration"] = LOCAL_POLL_S
    shown = ", ".join(f"{k} {v}" for k, v in args.items() if k in ("n_procs", "memory_gb", "n_gpu_procs"))
    LOGGER.info("running %d participant(s) with %s%s; work folder %s", len(built),
                plugin_name.removesuffix("Plugin"), f" ({shown})" if shown else "", work_dir)
    nipype_worker_logging(work_dir / "nipype_config", settings.verbose)
    tail = ProgressTail(naming.progress_dir(work_dir), logging.getLogger("cor2vox_bids.progress"))
    if "Graph" not in plugin_name:  # graph plugins submit everything at once and report no node status
        steps = node_status_logger(logging.getLogger("cor2vox_bids.progress"),
                                   {node_name(p.key): p.key for p in built}, flush=tail.poll)
        args = {**args, "status_callback": steps}
        if not isinstance(plugin, str) and hasattr(plugin, "_status_callback"):
            plugin._status_callback = steps  # a plugin object was built from its args before: give it the callback
    try:
        with tail:
            wf.run(plugin=plugin, plugin_args=args)
    except RuntimeError as exc:  # Nipype: "Workflow did not execute cleanly"; details in crash files
        LOGGER.debug("nipype: %s", exc)
    for p in built:
        crash_dir = Path(settings.output_dir) / naming.log_dir(p.subject, run_id)
        expected = [
            Path(settings.output_dir) / naming.synth_path(p.subject, p.session, s, settings.num_samples)
            for s in seeds_of(settings)
        ]
        message = crash_message(crash_dir) if crash_dir.is_dir() else None
        if message or not all(f.is_file() for f in expected):
            failures[p.key] = message or "outputs missing after the run (see the log)"
    return failures


def summarize(failures: dict[str, str], total: int, what: str = "participant(s)",
              reported: frozenset[str] | set[str] = frozenset()) -> int:
    """Log which participants failed and why (not again for the keys in ``reported``, whose line the console
    already showed before the run started); 0, 16 (some failed) or 17 (all failed)."""
    for key, message in sorted(failures.items()):
        if key not in reported:
            LOGGER.error("%s failed: %s", key, message)
    if not failures:
        LOGGER.info("all %d %s finished", total, what)
        return int(ExitCode.OK)
    if len(failures) >= total:
        LOGGER.error("all %d participant(s) failed", total)
        return int(ExitCode.ALL_PARTICIPANTS_FAILED)
    LOGGER.error("%d of %d participant(s) failed; the others finished", len(failures), total)
    return int(ExitCode.SOME_PARTICIPANTS_FAILED)
