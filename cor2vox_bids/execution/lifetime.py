"""Worker processes end with the main process.

* SIGKILL of the main process: each MultiProc worker watches the main process from a thread (a pidfd, polled
  where pidfds are missing) and terminates itself the moment it ends, instead of finishing its node as an orphan.
  (The workers' parent is the fork server, which lives on while any worker does, so the kernel's parent-death
  signal alone would not fire; it is set as well, for workers forked directly.) The fork server then exits too.
* SIGTERM/SIGHUP of the main process (a scheduler's time limit, ``kill``): the handler terminates every descendant
  (SIGTERM, then SIGKILL after a grace period) and the run ends as interrupted (exit 130 from the CLI).

Linux only (``/proc`` and ``prctl``); elsewhere the helpers do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1

#: what a worker needs to run any node of the participant graph (Nipype and every interface module): imported once
#: by the fork server, which forks the workers with it, instead of by every worker (about 3 CPU-s each)
WORKER_PRELOAD = ("cor2vox_bids.workflows.participant",)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; True when that was set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before the request: act now
        os.kill(os.getpid(), sig)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(pid: int) -> None:
    """Block until process ``pid`` ends, then terminate this process."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    except (AttributeError, OSError):  # no pidfds (old kernel or not Linux): poll
        while _alive(pid):
            time.sleep(1.0)
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5.0)
    os._exit(143)


def watch_process(pid: int) -> None:
    """Terminate this process as soon as process ``pid`` ends (a daemon thread)."""
    import threading

    threading.Thread(target=_watch, args=(pid,), name="cor2vox-watch-main", daemon=True).start()


def nipype_log_levels() -> dict[str, str]:
    """This process's Nipype log levels (``[logging]`` options of its config), for workers to take over."""
    from nipype import config

    return {o: config.get("logging", o) for o in ("workflow_level", "interface_level", "utils_level")}


def worker_initializer(cwd: str, main_pid: int | None = None, log_levels: dict[str, str] | None = None) -> None:
    """Initializer of MultiProc workers: Nipype's own (working folder, no telemetry), the main process's Nipype log
    levels ``log_levels`` (the fork server imported Nipype before the CLI set them: without this every node's
    "Setting-up"/"Executing" lines reach the console without ``-v``), then end with the main process ``main_pid``
    (and with the parent)."""
    from nipype.pipeline.plugins.multiproc import process_initializer

    process_initializer(cwd)
    if log_levels:
        from nipype import config
        from nipype import logging as nipype_logging

        for option, level in log_levels.items():
            config.set("logging", option, level)
        nipype_logging.update_logging(config)
    die_with_parent(signal.SIGTERM)
    if main_pid is not None:
        watch_process(main_pid)


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of every descendant of ``pid`` (default: this process), read from ``/proc``."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def terminate_descendants(grace_s: float = 5.0) -> list[int]:
    """SIGTERM every descendant, then SIGKILL those still alive after ``grace_s``; returns the pids signalled."""
    pids = descendants()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rfind(")") + 2:].split()[0] == "Z"


def _on_termination(signum, _frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
    terminate_descendants()
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def end_workers_with_main() -> None:
    """In the main process: SIGTERM and SIGHUP end the workers first, then the run (as KeyboardInterrupt)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _on_termination)
        except (ValueError, OSError):  # not the main thread, or no such signal here
            pass


def start_worker_server(mp_context: str | None):
    """The multiprocessing context of the MultiProc workers; for ``forkserver``, start the server now with
    :data:`WORKER_PRELOAD` (idempotent), so its imports run while this process does other work (BIDS indexing,
    input checks, graph building: started at the beginning of the participant level)."""
    import multiprocessing as mp

    context = mp.get_context(mp_context)
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["__main__", *WORKER_PRELOAD])
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return context


def multiproc_plugin(plugin_args: dict):
    """Nipype's MultiProc plugin whose workers die with the main process (see the module docstring)."""
    from concurrent.futures import ProcessPoolExecutor

    from nipype.pipeline.plugins.multiproc import MultiProcPlugin

    plugin = MultiProcPlugin(plugin_args=plugin_args)
    plugin.pool.shutdown(wait=False)  # no worker has started yet: the pool spawns them on the first submit
    context = start_worker_server(plugin_args.get("mp_context"))
    plugin.pool = ProcessPoolExecutor(max_workers=plugin.processors, initializer=worker_initializer,
                                      initargs=(plugin._cwd, os.getpid(), nipype_log_levels()),
                                      mp_context=context)
    return plugin
