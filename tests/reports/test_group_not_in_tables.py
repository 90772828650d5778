"""The group level names every participant of the output folder that has no row in its tables: one whose
participant level failed (the error line of its newest crash file) or whose QC table is corrupt — on the console and
in the report's Participants section."""

from __future__ import annotations

import os

from cor2vox_bids.execution.group import participants_without_qc
from cor2vox_bids.reports.group import GroupReport, write_group_report


def _crash(path, text, age_s=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = path.stat().st_mtime - age_s
    os.utime(path, (stamp, stamp))


def test_participants_without_qc_name_the_newest_crash(tmp_path):
    out = tmp_path
    (out / "sub-01" / "anat").mkdir(parents=True)  # has QC (passed as have_qc)
    _crash(out / "sub-02/log/run-old/crash-sub-02-validation.txt",
           "participant: sub-02\nstage: input validation\nerror: /data/lh.pial: old problem\n", age_s=100)
    _crash(out / "sub-02/log/run-new/crash-sub-02-validation.txt",
           "participant: sub-02\nstage: input validation\nfile: /data/lh.pial\nerror: /data/lh.pial: empty FreeSurfer "
           "surface file (0 bytes)\n")
    _crash(out / "sub-03/log/run-new/crash-20261202-node.txt",
           "Node: synthesis\nTraceback (most recent call last):\n  File x\nRuntimeError: out of memory\n")
    (out / "sub-04" / "log").mkdir(parents=True)  # started, nothing recorded
    (out / "sub-05" / "log").mkdir(parents=True)  # not asked for (labels)
    missing = participants_without_qc(out, {"01"}, ["01", "02", "03", "04"])
    assert list(missing) == ["sub-02", "sub-03", "sub-04"]
    assert missing["sub-02"].startswith("/data/lh.pial: empty FreeSurfer surface file (0 bytes) (crash file: sub-02/"
                                        "log/run-new/")
    assert missing["sub-03"].startswith("RuntimeError: out of memory (crash file: sub-03/log/run-new/")
    assert "did not finish" in missing["sub-04"]


def test_group_report_lists_them(tmp_path):
    rows = [{"participant_id": "sub-01", "pearson_r_synthetic": 0.95}]
    page = write_group_report(tmp_path / "group.html", GroupReport(
        rows=rows, reports={}, tables=[],
        not_in_tables={"sub-02": "/data/lh.pial: empty FreeSurfer surface file (0 bytes)"})).read_text()
    assert "1 participant not in the group tables (no usable QC):" in page
    assert "<li>sub-02: /data/lh.pial: empty FreeSurfer surface file (0 bytes)</li>" in page
    assert "not in the group tables" not in write_group_report(
        tmp_path / "g2.html", GroupReport(rows=rows, reports={}, tables=[])).read_text()
