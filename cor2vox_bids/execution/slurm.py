"""SLURM client: submit, wait, cancel, job states, job names, and the ``cor2vox:`` options of a plugin file.

Only SLURM's command-line clients are used (``sbatch``, ``squeue``, ``scancel``, ``sacct``).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExitCode, RunError, UsageError

LOGGER = logging.getLogger("cor2vox_bids.slurm")
JOB_PREFIX = "c2v"
# States in which a job will not run (any more): see squeue(1) "JOB STATE CODES".
FAILED_STATES = {
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
}


class SchedulerError(RunError):
    """The batch system cannot be used (client missing, controller unreachable, sbatch refused): exit 75."""

    exit_code = ExitCode.TEMPFAIL


@dataclass
class ClusterOptions:
    """cor2vox's own keys of a plugin file (the ``cor2vox:`` mapping); the rest is Nipype's."""

    node_resources: bool = True  # per-node --cpus-per-task/--mem/--gres defaults
    wait_timeout: float = 0.0  # seconds to wait for jobs; 0: no limit
    poll_interval: float = 5.0  # seconds between squeue polls
    launcher: str | None = None  # array mode: command that replaces "cor2vox-bids" in each task

    @classmethod
    def from_mapping(cls, data: dict | None, path: Path) -> ClusterOptions:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"unknown key(s) under 'cor2vox:': {', '.join(unknown)} (known: {', '.join(sorted(known))})", path
            )
        try:
            opts = cls(
                node_resources=bool(data.get("node_resources", True)),
                wait_timeout=float(data.get("wait_timeout", 0) or 0),
                poll_interval=float(data.get("poll_interval", 5)),
                launcher=None if data.get("launcher") is None else str(data["launcher"]),
            )
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
        raise SchedulerError(
            f"SLURM client(s) not found on PATH: {', '.join(missing)}. Run on a SLURM submit "
            "host (or load its module), or use a local plugin (MultiProc)"
        )
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
            last = res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}"
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
                LOGGER.error(
                    "job(s) %s can never start (a job they depend on failed): cancelling them", ", ".join(stuck)
                )
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
