"""cor2vox-bids on a live (one-node) SLURM cluster: plugins SLURM and SLURMGraph, reruns, failures, array mode.

Start the cluster with ``scripts/slurm_test.sh`` (up → these tests → down). Every run uses a tiny model made
here and the two-participant demo data; the MultiProc run of the same settings is the reference.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from slurm_helpers import TIMINGS, common_args, completed_jobs, cor2vox, synth_arrays, timed

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900, func_only=True)]  # not counting the shared set-up


def plugin_file(folder: Path, plugin: str, sbatch_args: str | None = "--time=10", **cor2vox_opts) -> Path:
    lines = [f"plugin: {plugin}"]
    if sbatch_args is not None:
        lines += ["plugin_args:", f"  sbatch_args: {sbatch_args}"]
    opts = {"poll_interval": 1, "wait_timeout": 540, **cor2vox_opts}
    lines += ["cor2vox:", *(f"  {k}: {v}" for k, v in opts.items())]
    path = folder / f"{plugin.lower()}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def env_without_logname() -> dict:
    env = os.environ.copy()
    env.pop("LOGNAME", None)  # Nipype's SLURM plugin needs it: cor2vox-bids sets it
    return env


def submitted(stderr: str) -> int:
    m = re.findall(r"(\d+) job\(s\) submitted", stderr)
    assert m, stderr[-3000:]
    return int(m[-1])


@pytest.fixture(scope="module")
def reference(slurm_cluster, slurm_demo, tiny_model, tmp_path_factory):
    """The MultiProc run (local) of the settings every cluster run uses."""
    root = tmp_path_factory.mktemp("multiproc")
    with timed("MultiProc run"):
        res = cor2vox(slurm_demo["bids"], root / "out", "participant", "-w", root / "work",
                      *common_args(tiny_model), "--nprocs", "2")  # synthesis stays on one thread
    assert res.returncode == 0, res.stderr[-4000:]
    images = synth_arrays(root / "out")
    assert sorted(images) == ["sub-01/anat/sub-01_desc-synth_T1w.nii.gz", "sub-02/anat/sub-02_desc-synth_T1w.nii.gz"]
    return images


def test_slurm_plugin_same_images_named_jobs_and_rerun_submits_nothing(reference, slurm_demo, tiny_model, tmp_path):
    plugin = plugin_file(tmp_path, "SLURM")
    out, work = tmp_path / "out", tmp_path / "work"
    before = {j for j, *_ in completed_jobs()}
    with timed("SLURM plugin run"):
        res = cor2vox(slurm_demo["bids"], out, "participant", "-w", work, "--use-plugin", plugin,
                      *common_args(tiny_model), env=env_without_logname())
    assert res.returncode == 0, res.stderr[-4000:]
    assert synth_arrays(out) == reference
    n = submitted(res.stderr)
    jobs = [(j, name, st) for j, name, st in completed_jobs() if j not in before]
    assert len(jobs) == n >= 8  # ingest, conditioning, synthesis, real_on_grid, qc per participant
    names = {name for _, name, _ in jobs}
    for sub in ("sub_01", "sub_02"):
        for node in ("ingest", "conditioning", "synthesis", "qc"):
            assert f"c2v.{sub}.{node}" in names, names
    assert all(st == "COMPLETED" for *_, st in jobs), jobs
    logs = list((work / "cor2vox_wf" / "batch").glob("c2v.sub_0*-*.out"))
    assert len(logs) == n

    with timed("SLURM rerun (cached)"):
        again = cor2vox(slurm_demo["bids"], out, "participant", "-w", work, "--use-plugin", plugin,
                        *common_args(tiny_model), env=env_without_logname())
    assert again.returncode == 0, again.stderr[-4000:]
    rerun = sorted(name for j, name, _ in completed_jobs() if j not in before and j not in {k for k, *_ in jobs})
    assert submitted(again.stderr) == 0, f"the cached rerun submitted {rerun}"
    assert {j for j, *_ in completed_jobs()} - before == {j for j, *_ in jobs}


def _break_surface(bids: Path) -> Path:
    pial = bids / "derivatives" / "freesurfer" / "sub-02" / "surf" / "lh.pial"
    data = pial.read_bytes()
    pial.unlink()  # it may be a link into the shared demo data
    pial.write_bytes(data[: len(data) // 3])
    return pial


def test_slurmgraph_waits_and_a_broken_participant_fails_alone(reference, slurm_demo, tiny_model, tmp_path):
    """SLURMGraph without plugin_args (Nipype's own would raise AttributeError), whose Nipype plugin returns
    right after submitting: cor2vox waits. sub-02's truncated surface leaves it out before the graph (crash
    file, exit 16); sub-01 finishes with the reference image. (Reruns: test_slurm_engine.py.)"""
    bids = tmp_path / "bids"
    shutil.copytree(slurm_demo["bids"], bids, symlinks=True)
    _break_surface(bids)
    plugin = plugin_file(tmp_path, "SLURMGraph", sbatch_args=None)
    out, work = tmp_path / "out", tmp_path / "work"
    with timed("SLURMGraph run (1 participant + 1 broken)"):
        res = cor2vox(bids, out, "participant", "-w", work, "--use-plugin", plugin, *common_args(tiny_model),
                      env=env_without_logname())
    assert res.returncode == 16, res.stderr[-4000:]
    assert "sub-02" in res.stderr and "lh.pial" in res.stderr
    assert list((out / "sub-02" / "log").glob("*/crash-*.txt"))
    key = "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"
    assert synth_arrays(out) == {key: reference[key]}  # the outputs exist when cor2vox-bids returns
    assert submitted(res.stderr) >= 5  # the derivatives node runs in cor2vox-bids itself, after the jobs


def test_array_mode_same_images(reference, slurm_demo, tiny_model, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    plugin = plugin_file(tmp_path, "SLURM", poll_interval=1)
    with timed("SLURM array run"):
        res = cor2vox(slurm_demo["bids"], out, "participant", "--slurm-array", "--slurm-wait", "-w", work,
                      "--use-plugin", plugin, *common_args(tiny_model), env=env_without_logname())
    assert res.returncode == 0, res.stderr[-4000:]
    assert synth_arrays(out) == reference
    assert (work / "sub-01" / "cor2vox_wf").is_dir() and (work / "sub-02" / "cor2vox_wf").is_dir()
    logs = list((work / "slurm").glob("*/array-*_[01].out"))
    assert len(logs) == 2
    script = next(out.glob("log/*/slurm-array.sbatch")).read_text()
    assert "#SBATCH --array=0-1" in script and "LABELS=(01 02)" in script and "--gres" not in script
    assert "--slurm-array" not in script.split("LABELS")[1]


def test_report_timings():
    """Not a check: the timings end up in the terminal summary."""
    assert isinstance(TIMINGS, dict)
