"""A participant whose sub-workflow raises while the graph is built fails alone, like a participant whose inputs
fail validation: one console line, a crash file in ``sub-<label>/log/<run-id>/``, the others run, exit 16 (17 when
every participant failed).

The inputs are placeholders (the per-participant input checks are replaced by a no-op) and the participant
sub-workflow by a one-node stand-in that publishes the synthetic image, so the run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from cor2vox_bids.bids import naming
from cor2vox_bids.cli import run as cli
from cor2vox_bids.errors import ExitCode, ParticipantError
from cor2vox_bids.execution import plan as plan_module
from cor2vox_bids.workflows import base as wf_base


def _dataset(root: Path, labels: list[str]) -> Path:
    bids = root / "bids"
    bids.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    fs = bids / "derivatives" / "freesurfer"
    for label in labels:
        (bids / f"sub-{label}" / "anat").mkdir(parents=True)
        (bids / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz").write_bytes(b"")
        for sub in ("mri/orig.mgz", "surf/lh.white", "surf/lh.pial", "surf/rh.white", "surf/rh.pial"):
            (fs / f"sub-{label}" / sub).parent.mkdir(parents=True, exist_ok=True)
            (fs / f"sub-{label}" / sub).write_bytes(b"")
    (fs / "dataset_description.json").write_text(json.dumps(
        {"Name": "FreeSurfer", "DatasetType": "derivative", "GeneratedBy": [{"Name": "freesurfer"}]}))
    return bids


def _publish(path: str) -> str:
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(b"synthetic")
    return path


BAD_ANNOT = "/data/sub-02/label/lh.aparc.annot"


def _fake_participant_wf(*, name, participant, output_dir, seeds, **_):
    """``sub-02``: a bad input found while building; ``sub-03``: an unforeseen error; others: one node."""
    if participant.subject == "02":
        raise ParticipantError("the annotation has no region names", BAD_ANNOT)
    if participant.subject == "03":
        raise KeyError("hemisphere 'X' in the spec")
    wf = pe.Workflow(name=name)
    node = pe.Node(niu.Function(input_names=["path"], output_names=["out"], function=_publish), name="publish")
    node.inputs.path = str(Path(output_dir) / naming.synth_path(participant.subject, participant.session, seeds[0], 1))
    wf.add_nodes([node])
    return wf


@pytest.fixture
def fake_graph(monkeypatch, tmp_path):
    monkeypatch.setattr(plan_module, "check_participant", lambda p: [])
    monkeypatch.setattr(wf_base, "init_participant_wf", _fake_participant_wf)
    plugin = tmp_path / "linear.yml"
    plugin.write_text("plugin: Linear\n")
    return plugin


def _run(capfd, bids: Path, out: Path, plugin: Path, *extra: str) -> tuple[int, str]:
    capfd.readouterr()
    code = cli.main([str(bids), str(out), "participant", "--skip-bids-validation", "--use-plugin", str(plugin),
                     "-w", str(out.parent / "work"), "--device", "cpu", *extra])
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def _crash_files(out: Path, label: str) -> list[Path]:
    return sorted((out / f"sub-{label}" / "log").glob("*/crash-*-graph.txt"))


def test_a_participant_whose_graph_cannot_be_built_fails_alone(fake_graph, tmp_path, capfd):
    bids = _dataset(tmp_path, ["01", "02", "03"])
    out = tmp_path / "out"
    code, console = _run(capfd, bids, out, fake_graph)
    assert code == ExitCode.SOME_PARTICIPANTS_FAILED, console
    assert (out / naming.synth_path("01", None, 0, 1)).is_file()  # the healthy participant ran
    assert not _crash_files(out, "01")
    assert "Traceback" not in console
    # a foreseen error: its message and file on the console, and in the crash file
    assert [ln for ln in console.splitlines() if "sub-02" in ln and BAD_ANNOT in ln], console
    (crash2,) = _crash_files(out, "02")
    text = crash2.read_text()
    assert "stage: building the participant's workflow" in text and f"file: {BAD_ANNOT}" in text
    assert "Traceback" not in text
    # an unforeseen error: one line naming it; the traceback only in the crash file
    assert [ln for ln in console.splitlines() if "sub-03" in ln and "KeyError" in ln], console
    (crash3,) = _crash_files(out, "03")
    assert "Traceback" in crash3.read_text() and "_fake_participant_wf" in crash3.read_text()
    assert "FAILED: sub-02, sub-03" in console


def test_every_graph_failing_to_build_ends_with_all_failed(fake_graph, tmp_path, capfd):
    bids = _dataset(tmp_path, ["02", "03"])
    out = tmp_path / "out"
    code, console = _run(capfd, bids, out, fake_graph)
    assert code == ExitCode.ALL_PARTICIPANTS_FAILED, console
    assert _crash_files(out, "02") and _crash_files(out, "03")
    assert "Traceback" not in console
