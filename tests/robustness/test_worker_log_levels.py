"""MultiProc workers log at the main process's Nipype levels, even though the fork server imported Nipype (at its
default INFO) before the CLI lowered them: node chatter ("[Node] Setting-up ...") stays off the console without -v."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux fork server needed")

SCRIPT = textwrap.dedent("""
    import logging, multiprocessing as mp, os, sys
    from concurrent.futures import ProcessPoolExecutor
    from cor2vox_bids.execution.lifetime import nipype_log_levels, worker_initializer

    def level(_):
        return logging.getLogger("nipype.workflow").getEffectiveLevel()

    if __name__ == "__main__":
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["nipype"])  # as start_worker_server: Nipype imported before the CLI's levels
        from multiprocessing import forkserver
        forkserver.ensure_running()
        from nipype import config
        for option in ("workflow_level", "interface_level", "utils_level"):
            config.set("logging", option, "WARNING")
        levels = nipype_log_levels() if sys.argv[1] == "pass" else None
        with ProcessPoolExecutor(1, initializer=worker_initializer, initargs=(os.getcwd(), os.getpid(), levels),
                                 mp_context=context) as pool:
            print(logging.getLevelName(pool.submit(level, 0).result()))
""")


@pytest.mark.parametrize("mode, expected", [("pass", "WARNING"), ("none", "INFO")])
def test_workers_take_the_main_process_nipype_levels(tmp_path, mode, expected):
    script = tmp_path / "main.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={"NIPYPE_NO_ET": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == expected  # "none": what the workers did before (the fork server's INFO)
