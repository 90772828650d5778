"""The SLURM plugins on a live cluster with a small synthetic graph (seconds, not a pipeline run): a node that
fails in its own job, dependants that can never start, the wait limit, a refused submission."""

from __future__ import annotations

from pathlib import Path

import pytest

from cor2vox_bids.errors import ExitCode
from cor2vox_bids.execution.plugins import Cor2voxSLURMGraphPlugin, Cor2voxSLURMPlugin
from cor2vox_bids.execution.slurm import ClusterOptions, SchedulerError

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


def _step(a, delay):
    import time

    if a < 0:
        raise ValueError("this participant's input is broken")
    time.sleep(delay)
    return a + 1


def _graph(base: Path, broken: str | None = None, delay: float = 0.0):
    """cor2vox_wf / sub_0N_wf / ingest → (synthesis MapNode over two seeds, qc)."""
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    root = pe.Workflow(name="cor2vox_wf", base_dir=str(base))
    for sub in ("sub_01_wf", "sub_02_wf"):
        wf = pe.Workflow(name=sub)
        ingest = pe.Node(Function(function=_step, input_names=["a", "delay"], output_names=["out"]),
                         name="ingest", mem_gb=0.5)
        ingest.inputs.a = -1 if sub == broken else 1
        ingest.inputs.delay = delay
        synth = pe.MapNode(Function(function=_step, input_names=["a", "delay"], output_names=["out"]),
                           iterfield=["delay"], name="synthesis", n_procs=1, mem_gb=1.0)
        synth.inputs.delay = [0.0, 0.0]
        qc = pe.Node(Function(function=_step, input_names=["a", "delay"], output_names=["out"]), name="qc")
        qc.inputs.delay = 0.0
        wf.connect([(ingest, synth, [("out", "a")]), (ingest, qc, [("out", "a")])])
        crash = base / "crash" / sub
        for name in wf.list_node_names():
            wf.get_node(name).config = {"execution": {"crashdump_dir": str(crash), "crashfile_format": "txt"}}
        root.add_nodes([wf])
    root.config["execution"].update({"crashfile_format": "txt", "stop_on_first_crash": False})
    return root


def _results(base: Path, sub: str) -> list[Path]:
    return list((base / "cor2vox_wf" / sub).glob("*/result_*.pklz"))


def test_graph_failed_job_cancels_its_dependants(slurm_cluster, tmp_path):
    plugin = Cor2voxSLURMGraphPlugin(plugin_args={}, options=ClusterOptions(poll_interval=1, wait_timeout=120))
    with pytest.raises(RuntimeError) as exc:
        _graph(tmp_path, broken="sub_02_wf").run(plugin=plugin)
    message = str(exc.value)
    assert "c2v.sub_02.ingest" in message and "FAILED" in message
    assert "c2v.sub_02.qc" in message and "CANCELLED" in message  # kill_invalid_depend (or our wait) ended it
    assert "sub_01" not in message and len(_results(tmp_path, "sub_01_wf")) == 3
    assert list((tmp_path / "crash" / "sub_02_wf").glob("crash-*.txt"))


def test_graph_rerun_submits_nothing(slurm_cluster, tmp_path):
    plugin = Cor2voxSLURMGraphPlugin(plugin_args={}, options=ClusterOptions(poll_interval=1))
    _graph(tmp_path).run(plugin=plugin)
    assert len(plugin.submitted) == 6  # ingest, synthesis (both seeds in one job), qc per participant
    again = Cor2voxSLURMGraphPlugin(plugin_args={}, options=ClusterOptions(poll_interval=1))
    _graph(tmp_path).run(plugin=again)
    assert again.submitted == []


def test_plugin_failed_job_fails_its_branch_only(slurm_cluster, tmp_path):
    plugin = Cor2voxSLURMPlugin(plugin_args={"sbatch_args": "--time=5"}, options=ClusterOptions(poll_interval=1))
    with pytest.raises(RuntimeError):
        _graph(tmp_path, broken="sub_02_wf").run(plugin=plugin)
    assert len(_results(tmp_path, "sub_01_wf")) == 3 and not _results(tmp_path, "sub_02_wf")
    assert list((tmp_path / "crash" / "sub_02_wf").glob("crash-*.txt"))
    # seeds of a MapNode are jobs of their own, named after participant, node and index
    names = {p.name.rsplit("-", 1)[0] for p in tmp_path.rglob("c2v.*.out")}
    assert {"c2v.sub_01.ingest", "c2v.sub_01.synthesis.0", "c2v.sub_01.synthesis.1", "c2v.sub_01.qc"} <= names


def test_wait_limit_cancels_the_jobs(slurm_cluster, tmp_path):
    plugin = Cor2voxSLURMGraphPlugin(plugin_args={}, options=ClusterOptions(poll_interval=1, wait_timeout=4))
    with pytest.raises(RuntimeError, match="did not complete"):
        _graph(tmp_path, delay=60).run(plugin=plugin)


def test_refused_submission_is_a_temporary_failure(slurm_cluster, tmp_path):
    for cls in (Cor2voxSLURMPlugin, Cor2voxSLURMGraphPlugin):
        plugin = cls(plugin_args={"sbatch_args": "--partition=no_such_partition", "max_tries": 0},
                     options=ClusterOptions(poll_interval=1))
        with pytest.raises(SchedulerError) as exc:
            _graph(tmp_path / cls.__name__).run(plugin=plugin)
        assert exc.value.exit_code == ExitCode.TEMPFAIL and "partition" in str(exc.value).lower()
