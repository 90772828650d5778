"""Progress of long-running nodes on the console, whatever the Nipype plugin: nodes append lines to files in
``naming.progress_dir`` (workers of MultiProc, SLURM jobs on a shared filesystem, or this process under Linear),
and :class:`ProgressTail` — a thread in the main process — prints every new complete line through the logger."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..bids import naming


class ProgressTail:
    """Context manager: while open, every ``interval`` seconds log the new lines of ``directory/*.log``."""

    def __init__(self, directory: Path, logger: logging.Logger, interval: float = 1.0) -> None:
        self.directory = Path(directory)
        self.logger = logger
        self.interval = interval
        self._offsets: dict[Path, int] = {}
        self._lock = threading.Lock()  # the thread and the node-status callback both poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cor2vox-progress", daemon=True)

    def poll(self) -> list[str]:
        """Log and return the complete lines added since the last poll (partial last lines wait)."""
        with self._lock:
            return self._poll()

    def _poll(self) -> list[str]:
        lines: list[str] = []
        if not self.directory.is_dir():
            return lines
        for path in sorted(self.directory.glob("*.log")):
            try:
                size = path.stat().st_size
                start = self._offsets.get(path, 0)
                if size < start:  # the file was started again (a rerun of the node)
                    start = 0
                if size == start:
                    continue
                with open(path, "rb") as fh:
                    fh.seek(start)
                    chunk = fh.read(size - start)
            except OSError:
                continue
            end = chunk.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] = start + end + 1
            for raw in chunk[: end + 1].decode("utf-8", errors="replace").splitlines():
                if raw.strip():
                    lines.append(raw)
                    self.logger.info("%s", raw)
        return lines

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> ProgressTail:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.directory.glob("*.log"):  # lines of an earlier run are not news
            try:
                self._offsets[path] = path.stat().st_size
            except OSError:
                pass
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()


def closing_summary(
    logger: logging.Logger,
    output_dir: Path,
    reports: list[Path],
    failures: dict[str, str],
    work_dir: Path | None = None,
) -> list[str]:
    """The last lines of a run: where the outputs are, each report, each failed participant (with why), and the
    work folder a rerun resumes from. Returns the lines (also logged)."""
    lines = [f"outputs: {Path(output_dir)}"]
    lines += [f"report: {r}" for r in reports if Path(r).is_file()]
    if failures:
        crash_dir = naming.log_dir("<label>", "<run-id>")
        lines.append(f"FAILED: {', '.join(sorted(failures))} (reasons above; crash files in {crash_dir})")
    if work_dir is not None:
        lines.append(f"work folder (rerun with the same OUTPUT_DIR or -w to resume): {work_dir}")
    for line in lines:
        (logger.error if line.startswith("FAILED") else logger.info)("%s", line)
    return lines


def nipype_worker_logging(directory: Path, verbose: int) -> Path:
    """Nipype's log levels for worker processes too (they read their config at import, from
    ``NIPYPE_CONFIG_DIR/nipype.cfg``): node chatter only with ``-v``, so progress lines stay readable."""
    level = "INFO" if verbose >= 1 else "WARNING"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "nipype.cfg"
    cfg.write_text(f"[logging]\nworkflow_level = {level}\ninterface_level = {level}\nutils_level = {level}\n"
                   "[monitoring]\nenabled = false\n")
    import os

    os.environ["NIPYPE_CONFIG_DIR"] = str(directory)
    return cfg


#: what each node of a participant's graph does, for the console
STEP_NAMES = {"ingest": "reading and checking the surfaces", "conditioning": "conditioning maps",
              "synthesis": "synthesis", "real_on_grid": "real T1w onto the model grid", "qc": "quality control",
              "derivatives": "writing derivatives", "figures": "report figures", "report": "report",
              "seed_std": "standard deviation across seeds", "atrophy_surfaces": "atrophy series: thinned surfaces",
              "atrophy_conditioning": "atrophy series: conditioning maps",
              "atrophy_synthesis": "atrophy series: synthesis", "atrophy_qc": "atrophy series: quality control",
              "atrophy_derivatives": "atrophy series: writing derivatives"}


def _result_older_than(node, when: float) -> bool:
    """Whether the node's result file in the work folder predates ``when`` (epoch s): a cached result."""
    try:
        result = Path(node.output_dir()) / f"result_{node.name}.pklz"
        return result.stat().st_mtime < when - 0.5
    except (AttributeError, OSError, TypeError):
        return False


def _interface_seconds(node) -> float | None:
    """The interface time Nipype recorded in the node's result file (None when there is none)."""
    try:
        return float(node.result.runtime.duration)
    except (AttributeError, OSError, TypeError, ValueError):
        return None


def _map_node_seconds(node) -> float | None:
    """A map node's wall time: first start to last end of its pieces (one per seed), from its result file; None
    for other nodes. (Nipype calls a map node "start" only when its pieces are done and it collects them.)"""
    from datetime import datetime

    try:
        runtimes = node.result.runtime
        if not isinstance(runtimes, list) or not runtimes:
            return None
        starts = [datetime.fromisoformat(r.startTime) for r in runtimes]
        ends = [datetime.fromisoformat(r.endTime) for r in runtimes]
    except (AttributeError, OSError, TypeError, ValueError):
        return None
    return (max(ends) - min(starts)).total_seconds()


def node_status_logger(logger: logging.Logger, participants: dict[str, str], flush=None):
    """A Nipype ``status_callback`` (called in the main process by MultiProc, Linear and the batch plugins): one
    console line when a participant's step ends (with its time, or "reused" when its result was already in the
    work folder) or fails; progress lines (``ProgressTail``) cover what happens inside a long step.
    ``participants``: work-dir sub-workflow name (``sub_01_wf``) → participant key.

    MultiProc runs nodes marked ``run_without_submitting`` in the main process without a "start" call: such a
    node ran when its result file is newer than this callback (the run's start); its time is then the interface
    time from the result file."""
    import time

    started: dict[str, float] = {}
    run_start = time.time()

    def callback(node, status: str) -> None:
        parts = str(getattr(node, "fullname", "")).split(".")
        key = next((participants[p] for p in parts if p in participants), None)
        step = STEP_NAMES.get(parts[-1]) if parts else None
        if key is None or step is None:  # map-node pieces (one per seed) are covered by the progress lines
            return
        name = parts[-1]
        if status == "start":  # Nipype says "start" before it looks for a cached result: print at "end"
            started[name + key] = time.time()
        elif status == "end":
            if flush is not None:  # the step's own progress lines (ProgressTail.poll) come before its "done" line
                flush()
            start = started.pop(name + key, None)
            if _result_older_than(node, run_start if start is None else start):  # in the work folder: nothing ran
                logger.info("%s: %s reused from the work folder", key, step)
            else:
                seconds = _map_node_seconds(node)
                if seconds is None:
                    seconds = time.time() - start if start is not None else _interface_seconds(node)
                logger.info("%s: %s done%s", key, step, "" if seconds is None else f" ({seconds:.0f} s)")
        elif status == "exception":
            logger.error("%s: %s failed (crash file in the participant's log folder)", key, step)

    return callback
