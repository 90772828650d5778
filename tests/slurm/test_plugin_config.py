"""Plugin files, per-node requests, job names, the array script and the SLURM client wrappers — no cluster
needed (fake ``sbatch``/``squeue``/``scancel`` scripts stand in), so these run in ``make test`` too."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from cor2vox_bids.cli.parser import parse_settings, task_arguments
from cor2vox_bids.errors import ExitCode
from cor2vox_bids.execution import array, plugins, slurm
from cor2vox_bids.settings import Settings


def _settings(*extra: str) -> Settings:
    return parse_settings(Settings, ["bids", "out", "participant", *extra], "p", "d")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/squeue/scancel stand-ins driven by files in ``tmp_path/state``."""
    state = tmp_path / "state"
    state.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'echo "$@" >> {state}/sbatch.log\n'
                  f'if [ -f {state}/refuse ]; then echo "sbatch: error: invalid partition specified" >&2; exit 1; fi\n'
                  'n=$(wc -l < ' f'{state}/sbatch.log); echo "$((100 + n))"\n',
        "squeue": f'if [ -f {state}/queue ]; then cat {state}/queue; fi\n',
        "scancel": f'echo "$@" >> {state}/scancel.log; rm -f {state}/queue\n',
        "sinfo": "echo idle\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return state


# -- plugin files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needle", [
    ("plugin: [unclosed", "not valid YAML"),
    ("plugin_args: {}\n", "must define 'plugin:'"),
    ("plugin: NoSuchThing\n", "unknown Nipype plugin"),
    ("plugin: SLURM\nplugin_args: [1, 2]\n", "must be a mapping"),
    ("plugin: SLURM\nplugin_args: {sbatch_args: {a: 1}}\n", "must be a string"),
    ("plugin: SLURM\ncor2vox: {colour: blue}\n", "unknown key(s) under 'cor2vox:'"),
    ("plugin: SLURM\ncor2vox: {poll_interval: 0}\n", "poll_interval"),
    ("plugin: SLURM\nextra: 1\n", "unknown top-level key"),
])
def test_bad_plugin_file_is_a_usage_error(tmp_path, text, needle):
    from cor2vox_bids.errors import UsageError

    with pytest.raises(UsageError) as exc:
        plugins.read_plugin_file(_write(tmp_path / "p.yml", text))
    assert exc.value.exit_code == ExitCode.USAGE and needle in str(exc.value)


def test_missing_plugin_file_is_missing_input(tmp_path):
    from cor2vox_bids.errors import MissingInputError

    with pytest.raises(MissingInputError):
        plugins.read_plugin_file(tmp_path / "nope.yml")


def test_multiproc_file_gets_nprocs_and_memory(tmp_path):
    plugin, args = plugins.load_plugin_file(_write(tmp_path / "p.yml", "plugin: MultiProc\n"),
                                            _settings("--nprocs", "3", "--mem", "5"), None)
    assert plugin == "MultiProc" and args == {"n_procs": 3, "memory_gb": 5.0, "mp_context": "forkserver"}


def test_slurm_without_sbatch_exits_75(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM client anywhere
    with pytest.raises(slurm.SchedulerError) as exc:
        plugins.load_plugin_file(_write(tmp_path / "p.yml", "plugin: SLURM\n"), _settings(), None)
    assert exc.value.exit_code == ExitCode.TEMPFAIL and "sbatch" in str(exc.value)


def test_slurm_file_gives_plugin_instances_and_sets_logname(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.delenv("LOGNAME", raising=False)
    plugin, args = plugins.load_plugin_file(_write(tmp_path / "p.yml", "plugin: SLURMGraph\n"), _settings(), None)
    assert isinstance(plugin, plugins.Cor2voxSLURMGraphPlugin) and str(plugin) == "SLURMGraph"
    assert plugin._dont_resubmit_completed_jobs is True and plugin._sbatch_args == ""  # no AttributeError
    assert os.environ.get("LOGNAME")
    plugin, _ = plugins.load_plugin_file(
        _write(tmp_path / "q.yml", "plugin: SLURM\nplugin_args:\n  sbatch_args: [--time=5, --qos=low]\n"
                                   "cor2vox: {poll_interval: 2, wait_timeout: 60}\n"), _settings(), None)
    assert isinstance(plugin, plugins.Cor2voxSLURMPlugin)
    assert plugin._sbatch_args == "--time=5 --qos=low" and plugin.options.poll_interval == 2


# -- per-node requests and job names -------------------------------------------------------------------------
def _node(n_procs=1, mem_gb=0.5, use_gpu=None, name="ingest", hierarchy="cor2vox_wf.sub_01_wf", base_dir="/w",
          plugin_args=None, run_without_submitting=False):
    inputs = SimpleNamespace() if use_gpu is None else SimpleNamespace(use_gpu=use_gpu)
    return SimpleNamespace(n_procs=n_procs, mem_gb=mem_gb, interface=SimpleNamespace(inputs=inputs), name=name,
                           _id=name, _hierarchy=hierarchy, base_dir=base_dir, plugin_args=plugin_args or {},
                           run_without_submitting=run_without_submitting)


def test_node_requests_defaults_and_user_precedence():
    synth_cpu = _node(n_procs=4, mem_gb=3.0, use_gpu=False, name="synthesis")
    synth_gpu = _node(n_procs=4, mem_gb=3.0, use_gpu=True, name="synthesis")
    assert plugins.node_requests(synth_cpu, "") == "--cpus-per-task=4 --mem=3072M"
    assert plugins.node_requests(synth_gpu, "") == "--cpus-per-task=4 --mem=3072M --gres=gpu:1"
    assert plugins.node_requests(_node(), "") == "--cpus-per-task=1 --mem=512M"
    # whatever the file's sbatch_args ask for is not requested again (sbatch would take the last one)
    assert plugins.node_requests(synth_gpu, "--mem=16G -c8 --gres=gpu:a100:1") == ""
    assert plugins.node_requests(synth_gpu, "--mem-per-cpu=2G --time=1:00:00") == "--cpus-per-task=4 --gres=gpu:1"


def test_apply_node_requests_keeps_node_args_and_overwrite():
    plain = _node()
    own = _node(plugin_args={"sbatch_args": "--constraint=avx512"})
    fixed = _node(plugin_args={"sbatch_args": "--mem=1G", "overwrite": True})
    local = _node(run_without_submitting=True)
    plugins.apply_node_requests(SimpleNamespace(nodes=lambda: [plain, own, fixed, local]), "--time=10")
    assert plain.plugin_args == {"sbatch_args": "--cpus-per-task=1 --mem=512M", "overwrite": False}
    assert own.plugin_args["sbatch_args"] == "--cpus-per-task=1 --mem=512M --constraint=avx512"
    assert fixed.plugin_args == {"sbatch_args": "--mem=1G", "overwrite": True}
    assert local.plugin_args == {}


def test_job_names_and_log_location():
    assert plugins.job_name_of(_node(name="conditioning")) == "c2v.sub_01.conditioning"
    item = _node(name="_synthesis3", hierarchy=None, base_dir="/w/cor2vox_wf/sub_02_ses_A_wf/synthesis/mapflow")
    assert plugins.job_name_of(item) == "c2v.sub_02_ses_A.synthesis.3"
    node = _node(plugin_args={"sbatch_args": "--cpus-per-task=2", "overwrite": False})
    args = plugins._batch_args("--time=10", node, "/w/batch")
    assert args == ["--time=10", "--cpus-per-task=2", "-o", "/w/batch/c2v.sub_01.ingest-%j.out",
                    "-J", "c2v.sub_01.ingest"]
    assert plugins._batch_args("--output=/logs/%j.out", node, "/w/batch") == [
        "--output=/logs/%j.out", "--cpus-per-task=2", "-J", "c2v.sub_01.ingest"]


# -- client wrappers ----------------------------------------------------------------------------------------
def test_sbatch_refusal_exits_75_with_message(fake_slurm):
    (fake_slurm / "refuse").write_text("")
    with pytest.raises(slurm.SchedulerError) as exc:
        slurm.sbatch(["--partition=x"], "job.sh", retries=1, retry_wait=0)
    assert exc.value.exit_code == ExitCode.TEMPFAIL and "invalid partition" in str(exc.value)
    assert len((fake_slurm / "sbatch.log").read_text().splitlines()) == 2  # tried again once


def test_sbatch_returns_job_id(fake_slurm):
    assert slurm.sbatch(["--time=1"], "job.sh") == "101"


def test_wait_cancels_jobs_that_can_never_start(fake_slurm):
    (fake_slurm / "queue").write_text("7|PENDING|DependencyNeverSatisfied\n")
    assert slurm.wait_for_jobs(["7"], poll=0.01) == ["7"]
    assert "7" in (fake_slurm / "scancel.log").read_text()


def test_wait_times_out_and_cancels(fake_slurm, monkeypatch):
    (fake_slurm / "queue").write_text("8|RUNNING|None\n")
    assert slurm.wait_for_jobs(["8"], timeout=0.05, poll=0.02) == ["8"]


# -- array mode ------------------------------------------------------------------------------------------------
def test_task_arguments_round_trip():
    s = _settings("--participant-label", "01", "-w", "/work", "--nprocs", "2", "--num-samples", "3",
                  "--device", "cuda", "--save-conditioning", "-vv", "--derivatives", "smriprep=/d/smriprep",
                  "--slurm-array", "--slurm-wait", "--dry-run")
    args = task_arguments(s)
    back = parse_settings(Settings, ["bids", "out", "participant", *args], "p", "d")
    for field in ("nprocs", "num_samples", "device", "save_conditioning", "verbose", "derivatives"):
        assert getattr(back, field) == getattr(s, field), field
    assert not back.slurm_array and not back.dry_run and back.work_dir is None and back.participant_label is None


def test_array_script(tmp_path):
    s = _settings("--device", "cuda", "--mem", "12", "-w", str(tmp_path))
    text = array.array_script(s, ["01", "02", "03"], tmp_path, "RUN", slurm.ClusterOptions(), task_arguments(s))
    assert "#SBATCH --array=0-2" in text and "LABELS=(01 02 03)" in text
    assert "#SBATCH --gres=gpu:1" in text and "#SBATCH --mem=12288M" in text
    assert '--participant-label "$LABEL"' in text and f'-w {tmp_path}/"sub-$LABEL"' in text
    assert '--nprocs "${SLURM_CPUS_PER_TASK:-1}"' in text
    assert "--slurm-array" not in text.split("LABELS")[1]
    cpu_settings = _settings("--nprocs", "3")
    cpu = array.array_script(cpu_settings, ["01"], tmp_path, "RUN",
                             slurm.ClusterOptions(launcher="apptainer run --nv img.sif"), task_arguments(cpu_settings))
    assert "--gres" not in cpu and "#SBATCH --cpus-per-task=3" in cpu and "apptainer run --nv img.sif " in cpu


def test_array_mode_needs_work_dir(tmp_path):
    from cor2vox_bids.errors import UsageError

    with pytest.raises(UsageError, match="work-dir"):
        array.run_array(_settings("--slurm-array"), "RUN", [])


def test_example_plugin_file_parses():
    example = Path(__file__).resolve().parents[2] / "examples" / "slurm_plugin.yml"
    plugin, args, options = plugins.read_plugin_file(example)
    assert plugin == "SLURM" and "--partition" in args["sbatch_args"] and options.node_resources


@pytest.mark.parametrize("argv", [["participant", "--slurm-wait"], ["group", "--slurm-array"]])
def test_slurm_flags_misused_are_usage_errors(argv):
    from cor2vox_bids.errors import UsageError

    with pytest.raises(UsageError):
        parse_settings(Settings, ["bids", "out", *argv], "p", "d")
