"""The Docker helper scripts: syntax, the daemon's isolation flags, stopping by pid only; the real build-and-run
test (``-m docker``) is scripts/docker_test.sh."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from container_helpers import ROOT

SCRIPTS = ["build_wheelhouse.sh", "docker_up.sh", "docker_down.sh", "docker_test.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_syntax_and_mode(name):
    path = ROOT / "scripts" / name
    assert path.stat().st_mode & 0o111, f"{name} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_docker_up_isolates_the_daemon():
    text = (ROOT / "scripts" / "docker_up.sh").read_text()
    for flag in ("--bridge=none", "--iptables=false", "--data-root", "--exec-root", "--pidfile", "--host"):
        assert flag in text, flag
    assert "debootstrap --variant=minbase --include=python3,python3-venv bookworm" in text
    assert "dpkg -L docker.io" in text


def test_docker_test_runs_locked_down():
    text = (ROOT / "scripts" / "docker_test.sh").read_text()
    for option in ("--network none", "--read-only", "--user 1000:1000", "--tmpfs /tmp", "--network host",
                   "trap cleanup EXIT", "--random-seed 0", "--nprocs 2"):
        assert option in text, option


def test_docker_down_is_idempotent_without_a_daemon(tmp_path):
    env = {**os.environ, "CI_DOCKER_STATE": str(tmp_path)}
    for _ in range(2):
        result = subprocess.run(["bash", str(ROOT / "scripts" / "docker_down.sh")], env=env, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_docker_down_never_kills_a_process_that_is_not_dockerd(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "dockerd.pid").write_text(str(other.pid))
        env = {**os.environ, "CI_DOCKER_STATE": str(tmp_path)}
        result = subprocess.run(["bash", str(ROOT / "scripts" / "docker_down.sh")], env=env, capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 0
        time.sleep(0.2)
        assert other.poll() is None, "docker_down.sh killed a process that is not its dockerd"
        assert not (tmp_path / "dockerd.pid").exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_image_builds_and_runs_the_demo():
    """Same as `.ci/run`'s container step (needs root for docker_up.sh's packages and daemon)."""
    if os.geteuid() != 0:
        pytest.skip("docker_up.sh needs root")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "docker_test.sh")], capture_output=True, text=True,
                            timeout=900)
    print(result.stdout[-5000:])
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
