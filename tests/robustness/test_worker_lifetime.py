"""MultiProc-style workers end with the main process: on SIGKILL (fork server exits, workers get their
parent-death signal) and on SIGTERM (the handler terminates every descendant)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc needed")

MAIN = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from cor2vox_bids.execution.lifetime import end_workers_with_main, worker_initializer

    def pid_then_sleep(_):
        time.sleep(120)

    def report(_):
        return os.getpid()

    if __name__ == "__main__":
        end_workers_with_main()
        pool = ProcessPoolExecutor(2, initializer=worker_initializer, initargs=(os.getcwd(), os.getpid()),
                                   mp_context=mp.get_context("forkserver"))
        pids = sorted(set(pool.map(report, range(8))))
        for _ in range(2):
            pool.submit(pid_then_sleep, 0)
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_main(tmp_path, sig):
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=env)
    try:
        line = proc.stdout.readline()
        workers = [int(x) for x in line.split()]
        assert workers and all(_alive(p) for p in workers), proc.stderr.read() if not workers else workers
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), f"workers still running after {sig!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
