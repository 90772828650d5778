"""A participant whose run fails still gets ``sub-<label>.html``: the Summary of its known inputs and an Errors
section with each crash file (step, error line, path, contents collapsed); a participant that finished keeps the
report its graph wrote.

As in ``test_graph_build_failures``: placeholder inputs, the input checks reduced to the real empty-file check of
``lh.pial``, and a one-node stand-in for each participant's sub-workflow (``sub-01`` publishes its image and a
stand-in report; ``sub-03``'s node raises), so the run takes seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from cor2vox_bids.bids import naming
from cor2vox_bids.errors import ExitCode
from cor2vox_bids.execution import plan as plan_module
from cor2vox_bids.geometry.surfaces import _require
from cor2vox_bids.workflows import base as wf_base
from test_graph_build_failures import _dataset, _run

NORMAL_REPORT = "<html>the normal report of sub-01</html>\n"


def _publish(path: str, report: str, html: str) -> str:
    from pathlib import Path

    for p, data in ((path, "synthetic"), (report, html)):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
        Path(p).write_text(data)
    return path


def _explode(path: str) -> str:
    raise ValueError("the network returned NaN at step 3")


def _stand_in_wf(*, name, participant, output_dir, seeds, crashdump_dir, **_):
    wf = pe.Workflow(name=name)
    out = Path(output_dir)
    if participant.subject == "03":
        node = pe.Node(niu.Function(input_names=["path"], output_names=["out"], function=_explode), name="synthesis")
        node.inputs.path = "x"
    else:
        node = pe.Node(niu.Function(input_names=["path", "report", "html"], output_names=["out"], function=_publish),
                       name="publish")
        node.inputs.path = str(out / naming.synth_path(participant.subject, participant.session, seeds[0], 1))
        node.inputs.report = str(out / naming.report_path(participant.subject, participant.session))
        node.inputs.html = NORMAL_REPORT
    node.config = {"execution": {"crashdump_dir": str(crashdump_dir), "crashfile_format": "txt"}}
    wf.add_nodes([node])
    return wf


@pytest.fixture
def stand_in_graph(monkeypatch, tmp_path):
    monkeypatch.setattr(plan_module, "check_participant", lambda p: [] if _require(p.hemis["L"].pial, "pial surface")
                        else [])
    monkeypatch.setattr(wf_base, "init_participant_wf", _stand_in_wf)
    plugin = tmp_path / "linear.yml"
    plugin.write_text("plugin: Linear\n")
    return plugin


def test_failed_participants_get_an_error_report(stand_in_graph, tmp_path, capfd):
    bids = _dataset(tmp_path, ["01", "02", "03"])
    fs = bids / "derivatives" / "freesurfer"
    for label in ("01", "03"):  # sub-02 keeps its empty lh.pial
        (fs / f"sub-{label}" / "surf" / "lh.pial").write_bytes(b"a surface")
    out = tmp_path / "out"
    code, console = _run(capfd, bids, out, stand_in_graph)
    assert code == ExitCode.SOME_PARTICIPANTS_FAILED, console
    assert "Traceback" not in console
    # the participant that finished: its own report, untouched
    assert (out / naming.report_path("01", None)).read_text() == NORMAL_REPORT
    # validation failure: the error line, the file at fault and the crash file's relative path
    html2 = (out / naming.report_path("02", None)).read_text()
    pial = fs / "sub-02" / "surf" / "lh.pial"
    assert "empty pial surface (0 bytes)" in html2 and str(pial) in html2
    assert f"<td>Left pial surface</td><td><code>{pial}</code>" in html2  # the Summary names the files found
    (crash2,) = (out / "sub-02" / "log").glob("*/crash-sub-02-validation.txt")
    assert crash2.relative_to(out).as_posix() in html2 and "input validation (before any work)" in html2
    # failure inside the graph: the Nipype node, the error line and the traceback (collapsed)
    html3 = (out / naming.report_path("03", None)).read_text()
    assert "ValueError: the network returned NaN at step 3" in html3
    assert "synthesis" in html3 and "crash-" in html3 and "<details>" in html3 and "Traceback" in html3
    for html in (html2, html3):
        assert "id='errors'" in html and "DEMO model" in html
