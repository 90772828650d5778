"""SLURM helpers (submit, wait, job states) and the array mode (``--slurm-array``).

Array mode is for clusters whose jobs may not submit jobs: instead of running the Nipype graph with a
cluster plugin, ``cor2vox-bids BIDS OUT participant --slurm-array -w WORK`` validates everything on the submit
host, writes one ``sbatch`` script with ``#SBATCH --array=0-(N-1)`` where task *i* runs ``cor2vox-bids`` for
the i-th participant alone (same options, ``--participant-label L -w WORK/sub-L``, MultiProc inside the job)
and submits it. ``--dry-run`` prints the script instead; ``--slurm-wait`` waits for the tasks and exits with
the participants' combined status (0, 16, 17).

Only SLURM's command-line clients are used (``sbatch``, ``squeue``, ``scancel``, ``sacct``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import __version__
from ..errors import ExitCode, MissingInputError, RunError, UsageError
from ..settings import Settings

LOGGER = logging.getLogger("cor2vox_bids.slurm")
JOB_PREFIX = "c2v"
# Array tasks: the default request when --nprocs / --mem are not given (sbatch_args may override both).
ARRAY_DEFAULT_CPUS = 2
ARRAY_DEFAULT_MEM_GB = 8
# States in which a job will not run (any more): see squeue(1) "JOB STATE CODES".
FAILED_STATES = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                 "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}


class SchedulerError(RunError):
    """The batch system cannot be used (client missing, controller unreachable, sbatch refused): exit 75."""

    exit_code = ExitCode.TEMPFAIL


@dataclass
class ClusterOptions:
    """cor2vox's own keys of a plugin file (the ``cor2vox:`` mapping); the rest is Nipype's."""

    node_resources: bool = True    # per-node --cpus-per-task/--mem/--gres defaults
    wait_timeout: float = 0.0      # seconds to wait for jobs; 0: no limit
    poll_interval: float = 5.0     # seconds between squeue polls
    launcher: str | None = None    # array mode: command that replaces "cor2vox-bids" in each task

    @classmethod
    def from_mapping(cls, data: dict | None, path: Path) -> "ClusterOptions":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown key(s) under 'cor2vox:': {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})", path)
        try:
            opts = cls(node_resources=bool(data.get("node_resources", True)),
                       wait_timeout=float(data.get("wait_timeout", 0) or 0),
                       poll_interval=float(data.get("poll_interval", 5)),
                       launcher=None if data.get("launcher") is None else str(data["launcher"]))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad value under 'cor2vox:': {exc}", path) from None
        if opts.poll_interval <= 0 or opts.wait_timeout < 0:
            raise UsageError("'cor2vox: poll_interval' must be > 0 and 'wait_timeout' >= 0", path)
        return opts


# -- clients ------------------------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def check_clients(*names: str) -> None:
    """Exit 75 when a SLURM client is missing or the controller does not answer."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SchedulerError(f"SLURM client(s) not found on PATH: {', '.join(missing)}. Run on a SLURM submit "
                             "host (or load its module), or use a local plugin (MultiProc)")
    try:
        res = _run(["squeue", "-h", "-j", "1"], timeout=60)
    except subprocess.TimeoutExpired:
        raise SchedulerError("the SLURM controller did not answer squeue within 60 s") from None
    if res.returncode != 0 and "Invalid job id" not in res.stderr:
        raise SchedulerError(f"the SLURM controller cannot be reached: {res.stderr.strip() or res.stdout.strip()}")


def sbatch(args: list[str], script: str | Path, retries: int = 2, retry_wait: float = 2.0) -> str:
    """Submit ``script`` with ``args``; returns the job id (``--parsable``). Exit 75 when sbatch refuses."""
    cmd = ["sbatch", "--parsable", *args, str(script)]
    last = ""
    for attempt in range(retries + 1):
        try:
            res = _run(cmd, timeout=120)
        except FileNotFoundError:
            raise SchedulerError("sbatch is not on PATH") from None
        except subprocess.TimeoutExpired:
            last = "sbatch did not answer within 120 s"
        else:
            if res.returncode == 0 and res.stdout.strip():
                return res.stdout.strip().splitlines()[-1].split(";")[0]
            last = (res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}")
        if attempt < retries:
            time.sleep(retry_wait)
    raise SchedulerError(f"sbatch failed ({shlex.join(cmd)}): {last}")


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        try:
            _run(["scancel", *job_ids], timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            LOGGER.warning("scancel %s failed: %s", " ".join(job_ids), exc)


def queued(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{job id: (state, reason)} of the jobs still in the queue; None when squeue fails (transient)."""
    if not job_ids:
        return {}
    try:
        res = _run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return {} if "Invalid job id" in res.stderr else None
    out = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def wait_for_jobs(job_ids: list[str], timeout: float = 0, poll: float = 10.0) -> list[str]:
    """Block until none of ``job_ids`` (jobs or array jobs) is queued or running.

    Jobs that can never start (dependency never satisfied: a cluster without ``kill_invalid_depend``) are
    cancelled. On ``timeout`` (seconds, 0 = none) the remaining jobs are cancelled. Returns the ids that were
    cancelled here.
    """
    cancelled: list[str] = []
    start = time.monotonic()
    failures = 0
    while True:
        state = queued(job_ids)
        if state is None:
            failures += 1
            if failures in (1, 10) or failures % 60 == 0:
                LOGGER.warning("squeue failed (%d time(s)); still waiting for %d job(s)", failures, len(job_ids))
        else:
            failures = 0
            if not state:
                return cancelled
            stuck = [j for j, (st, reason) in state.items() if st == "PENDING" and "DependencyNeverSatisfied" in reason]
            if stuck:
                LOGGER.error("job(s) %s can never start (a job they depend on failed): cancelling them",
                             ", ".join(stuck))
                scancel(stuck)
                cancelled += stuck
        if timeout and time.monotonic() - start > timeout:
            rest = sorted(state or job_ids)
            LOGGER.error("waited %.0f s for SLURM jobs: cancelling %s", timeout, ", ".join(rest))
            scancel(rest)
            return cancelled + rest
        time.sleep(poll)


def job_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: final state} from accounting (``sacct``), or job completion logging (``sacct -c``) when
    accounting storage is disabled; {} when neither answers."""
    if not job_ids:
        return {}
    for extra in ([], ["-c"]):
        cmd = ["sacct", *extra, "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"]
        if not extra:
            cmd.insert(1, "-X")
        try:
            res = _run(cmd, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode != 0 or not res.stdout.strip():
            continue
        out = {}
        for line in res.stdout.splitlines():
            if "|" in line:
                jid, st = line.split("|", 1)
                out[jid.strip()] = st.strip().split(" ")[0]
        if out:
            return out
    return {}


def job_name(parts: list[str]) -> str:
    """A SLURM job name from parts (participant workflow, node, index): ``c2v.sub_01.synthesis.0``."""
    clean = [re.sub(r"[^A-Za-z0-9_.-]", "_", p) for p in parts if p]
    return ".".join([JOB_PREFIX, *clean])


# -- array mode ------------------------------------------------------------------------------------------------
# Options the array tasks do not inherit (each task sets its own, or they only concern the submission).
_NOT_FORWARDED = {"participant_label", "work_dir", "slurm_array", "slurm_wait", "dry_run", "use_plugin",
                  "bids_dir", "output_dir", "analysis_level"}


def task_arguments(settings: Settings) -> list[str]:
    """The options every array task gets: the run's settings that differ from their defaults."""
    from ..cli.parser import iter_fields

    args: list[str] = []
    for spec in iter_fields(Settings):
        name = spec["name"]
        if spec["positional"] or name in _NOT_FORWARDED or not spec["flags"]:
            continue
        value = getattr(settings, name)
        if value == spec["default"] or value is None:
            continue
        flag = next((f for f in spec["flags"] if f.startswith("--")), spec["flags"][0])
        if spec["action"] == "count":
            args += [spec["flags"][0]] * int(value)
        elif spec["kind"] == "Flag":
            args.append(flag)
        elif spec["list"]:
            args += [flag, *[_as_arg(v) for v in value]]
        else:
            args += [flag, _as_arg(value)]
    return args


def _as_arg(value) -> str:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, str) and "=" in value:  # NAME=PATH (--derivatives): make the path absolute
        name, _, path = value.partition("=")
        return f"{name}={Path(path).resolve()}" if path and not path.startswith("/") else value
    return str(value)


def default_launcher() -> list[str]:
    """How a task starts cor2vox-bids: the console script beside this Python, else ``python -m``."""
    script = Path(sys.executable).parent / "cor2vox-bids"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cor2vox_bids.cli.run"]


def array_script(settings: Settings, labels: list[str], work_dir: Path, run_id: str,
                 options: ClusterOptions) -> str:
    """The text of the sbatch array script: task i runs cor2vox-bids for ``labels[i]``."""
    state_dir = work_dir / "slurm" / run_id
    launcher = shlex.split(options.launcher) if options.launcher else default_launcher()
    cpus = settings.nprocs or ARRAY_DEFAULT_CPUS
    mem_gb = settings.mem or ARRAY_DEFAULT_MEM_GB
    gpu = settings.device.startswith("cuda")
    command = [*(shlex.quote(a) for a in launcher), shlex.quote(str(Path(settings.bids_dir).resolve())),
               shlex.quote(str(Path(settings.output_dir).resolve())), "participant",
               '--participant-label "$LABEL"', "-w", shlex.quote(str(work_dir)) + '/"sub-$LABEL"']
    if settings.nprocs is None:  # follow the CPUs SLURM gives the task (sbatch -c may change them)
        command += ["--nprocs", '"${SLURM_CPUS_PER_TASK:-1}"']
    command += [shlex.quote(a) for a in task_arguments(settings)]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={JOB_PREFIX}.array",
        f"#SBATCH --array=0-{len(labels) - 1}",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --mem={int(round(mem_gb * 1024))}M",
        *(["#SBATCH --gres=gpu:1"] if gpu else []),
        f"#SBATCH --output={state_dir}/array-%A_%a.out",
        f"# Generated by cor2vox-bids {__version__} on {datetime.now():%Y-%m-%d %H:%M:%S} (run {run_id}).",
        "# One task per participant; each runs cor2vox-bids alone with the same options and its own work dir.",
        "# sbatch options given on the command line override the #SBATCH lines above.",
        "set -u",
        f"LABELS=({' '.join(shlex.quote(lb) for lb in labels)})",
        'LABEL="${LABELS[$SLURM_ARRAY_TASK_ID]}"',
        "export NIPYPE_NO_ET=1",
        'export LOGNAME="${LOGNAME:-${USER:-cor2vox}}"',
        f"STATE={shlex.quote(str(state_dir))}",
        'mkdir -p "$STATE"',
        'echo "cor2vox-bids array task $SLURM_ARRAY_TASK_ID: sub-$LABEL on $(hostname)"',
        " ".join(command),
        "rc=$?",
        'echo "$rc" > "$STATE/sub-$LABEL.rc"',
        'exit "$rc"',
    ]
    return "\n".join(lines) + "\n"


def read_cluster_file(settings: Settings) -> tuple[list[str], ClusterOptions]:
    """sbatch arguments and cor2vox options from ``--use-plugin`` (if given) for the array job."""
    if settings.use_plugin is None:
        return [], ClusterOptions()
    from .plugins import read_plugin_file

    plugin, args, options = read_plugin_file(settings.use_plugin)
    if plugin not in ("SLURM", "SLURMGraph"):
        LOGGER.warning("--slurm-array: the plugin file names %s; only its sbatch_args and cor2vox: keys are used",
                       plugin)
    return shlex.split(str(args.get("sbatch_args") or "")), options


def run_array(settings: Settings, run_id: str) -> int:
    """``--slurm-array``: validate, write the array script, submit it (or print it), optionally wait."""
    from .base import validate_participants
    from .model import check_model_and_device

    if settings.work_dir is None:
        raise UsageError("--slurm-array needs -w/--work-dir on a filesystem that the compute nodes share")
    work_dir = Path(settings.work_dir).resolve()
    sbatch_args, options = read_cluster_file(settings)
    # The GPU is on the compute nodes: check the model here, the device in each task.
    check_model_and_device(settings.model_copy(update={"device": "cpu"}))
    plan = validate_participants(settings, run_id)
    if not plan.ready:
        details = "; ".join(f"{f.key}: {f.message}" for f in plan.failed)
        raise MissingInputError(f"no participant has usable inputs ({details})")
    labels = list(dict.fromkeys(p.subject for p in plan.ready))
    failed_subjects = {f.key.split("_")[0][4:] for f in plan.failed} - set(labels)
    state_dir = work_dir / "slurm" / run_id
    text = array_script(settings, labels, work_dir, run_id, options)
    if settings.dry_run:
        state_dir.mkdir(parents=True, exist_ok=True)  # SLURM writes the task logs there
        print(text, end="")
        if sbatch_args:
            print(f"# submit with: sbatch {shlex.join(sbatch_args)} SCRIPT")
        return int(ExitCode.OK)
    check_clients("sbatch", "squeue")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        script = state_dir / "array.sbatch"
        script.write_text(text)
        log_copy = Path(settings.output_dir) / "log" / run_id / "slurm-array.sbatch"
        log_copy.parent.mkdir(parents=True, exist_ok=True)
        log_copy.write_text(text)
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"cannot write the array script: {exc.strerror}", state_dir) from None
    job = sbatch(sbatch_args, script)
    LOGGER.info("submitted SLURM array job %s: %d task(s) (%s); script %s; logs %s/array-%s_<task>.out",
                job, len(labels), ", ".join(f"sub-{lb}" for lb in labels), script, state_dir, job)
    (state_dir / "job.json").write_text(json.dumps({"job_id": job, "labels": labels}, indent=2) + "\n")
    for f in plan.failed:
        LOGGER.error("%s left out: %s", f.key, f.message)
    if not settings.slurm_wait:
        return int(ExitCode.SOME_PARTICIPANTS_FAILED if failed_subjects else ExitCode.OK)
    wait_for_jobs([job], timeout=options.wait_timeout, poll=min(options.poll_interval, 10.0))
    failures = {f"sub-{s}": "input validation failed (see its crash file)" for s in failed_subjects}
    for i, label in enumerate(labels):
        rc_file = state_dir / f"sub-{label}.rc"
        rc = rc_file.read_text().strip() if rc_file.is_file() else None
        if rc != "0":
            why = f"exit {rc}" if rc is not None else "did not finish (cancelled, timed out or killed)"
            failures[f"sub-{label}"] = f"array task {job}_{i} {why}; log {state_dir}/array-{job}_{i}.out"
    total = len(labels) + len(failed_subjects)
    for key, message in sorted(failures.items()):
        LOGGER.error("%s failed: %s", key, message)
    if not failures:
        LOGGER.info("all %d array task(s) finished", len(labels))
        return int(ExitCode.OK)
    return int(ExitCode.ALL_PARTICIPANTS_FAILED if len(failures) >= total else ExitCode.SOME_PARTICIPANTS_FAILED)
