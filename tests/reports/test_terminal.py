"""Terminal output: progress from worker files, the closing summary, --help without pydantic notation, close-match
suggestions for unknown options, the default work folder inside OUTPUT_DIR."""

from __future__ import annotations

import logging

import pytest

from cor2vox_bids.bids import naming
from cor2vox_bids.execution.progress import ProgressTail, closing_summary


def test_progress_tail_prints_complete_new_lines_once(tmp_path, caplog):
    folder = tmp_path / "progress"
    folder.mkdir()
    old = folder / "sub-01_seed-0.log"
    old.write_text("from an earlier run\n")
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with ProgressTail(folder, logger, interval=60) as tail:
            with open(old, "a") as fh:
                fh.write("sub-01 seed 0: sampling step 1/2\nsub-01 seed 0: sampl")
            assert tail.poll() == ["sub-01 seed 0: sampling step 1/2"]
            with open(old, "a") as fh:
                fh.write("ing step 2/2\n")
            (folder / "sub-02_seed-0.log").write_text("sub-02 seed 0: sampling step 1/2\n")
            assert tail.poll() == ["sub-01 seed 0: sampling step 2/2", "sub-02 seed 0: sampling step 1/2"]
            assert tail.poll() == []
    messages = [r.getMessage() for r in caplog.records]
    assert "from an earlier run" not in messages
    assert messages.count("sub-01 seed 0: sampling step 2/2") == 1


def test_synthesis_progress_goes_to_the_file_the_main_process_reads(tmp_path):
    from cor2vox_bids.interfaces.synthesis import progress_writer

    write = progress_writer(str(tmp_path), "sub-01", 3)
    write("sub-01 seed 3: sampling step 1/10")
    assert naming.progress_file(tmp_path, "sub-01", 3).read_text() == "sub-01 seed 3: sampling step 1/10\n"


def test_closing_summary_names_outputs_reports_failures_and_work_folder(tmp_path):
    report = tmp_path / "sub-01.html"
    report.write_text("x")
    lines = closing_summary(logging.getLogger("test"), tmp_path, [report, tmp_path / "missing.html"],
                            {"sub-02": "boom"}, tmp_path / "work")
    text = "\n".join(lines)
    assert f"outputs: {tmp_path}" in text and f"report: {report}" in text and "missing.html" not in text
    assert "FAILED: sub-02" in text and "work folder" in text


def _help() -> str:
    from cor2vox_bids.cli.run import get_parser

    return get_parser().format_help()


def test_help_has_no_pydantic_notation_and_shows_defaults():
    text = _help()
    assert "[ge" not in text and "le 1000]" not in text and "gt 0]" not in text
    flat = " ".join(text.split())
    assert "--random-seed RANDOM_SEED Seed of the first sample; sample i uses random-seed + i. Default: 0." in flat
    assert "Range: 1 to 1000." in flat and "OUTPUT_DIR/work" in flat


@pytest.mark.parametrize("typo,suggestion",
                         [("--random-sed", "--random-seed"), ("--participant-lable", "--participant-label")])
def test_unknown_option_gets_a_close_match(typo, suggestion):
    from cor2vox_bids.cli.parser import parse_settings
    from cor2vox_bids.cli.run import main
    from cor2vox_bids.errors import UsageError
    from cor2vox_bids.settings import Settings

    with pytest.raises(UsageError, match=f"did you mean {suggestion}"):
        parse_settings(Settings, ["in", "out", "participant", typo, "1"], "cor2vox-bids", "")
    assert main(["in", "out", "participant", typo, "1"]) == 64


def test_default_work_folder_is_inside_the_output_and_ignored(tmp_path):
    from cor2vox_bids.execution.local import work_dir_of
    from cor2vox_bids.settings import Settings

    s = Settings(bids_dir=tmp_path / "in", output_dir=tmp_path / "out", analysis_level="participant")
    assert work_dir_of(s, "run") == (tmp_path / "out" / "work").resolve()
    assert "work/" in naming.BIDSIGNORE


def test_node_status_lines_name_the_participant_and_the_step(caplog, tmp_path):
    import os
    import time
    from types import SimpleNamespace

    from cor2vox_bids.execution.progress import node_status_logger

    def node(name, folder=None):
        return SimpleNamespace(fullname=f"cor2vox_wf.sub_01_wf.{name}", name=name.split(".")[-1],
                               output_dir=lambda: str(folder or tmp_path / "none"))

    cached = tmp_path / "ingest"
    cached.mkdir()
    (cached / "result_ingest.pklz").write_bytes(b"")
    os.utime(cached / "result_ingest.pklz", (time.time() - 3600, time.time() - 3600))
    cb = node_status_logger(logging.getLogger("test.steps"), {"sub_01_wf": "sub-01"})
    with caplog.at_level(logging.INFO, logger="test.steps"):
        cb(node("qc"), "start")
        cb(node("qc"), "end")
        cb(node("synthesis._synthesis0"), "start")  # a map-node piece: the progress lines cover it
        cb(node("ingest", cached), "start")
        cb(node("ingest", cached), "end")
        cb(node("report"), "exception")
        # MultiProc runs run_without_submitting nodes in the main process with no "start": a result written
        # during the run means the node ran (its time from the result file), an older one that it was reused
        ran = tmp_path / "derivatives"
        ran.mkdir()
        (ran / "result_derivatives.pklz").write_bytes(b"")
        here = SimpleNamespace(**vars(node("derivatives", ran)),
                               result=SimpleNamespace(runtime=SimpleNamespace(duration=7.4)))
        cb(here, "end")
        cb(node("ingest", cached), "end")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("sub-01: quality control done (") and lines[0].endswith(" s)")
    assert lines[1] == "sub-01: reading and checking the surfaces reused from the work folder"
    assert "report failed" in lines[2]
    assert lines[3] == "sub-01: writing derivatives done (7 s)"
    assert lines[4] == "sub-01: reading and checking the surfaces reused from the work folder" and len(lines) == 5


def test_map_node_step_time_spans_its_pieces(caplog, tmp_path):
    """Nipype calls a map node (synthesis with --num-samples N) "start" only when it collects its finished pieces:
    the step's time is first piece start to last piece end, not the instant of collecting."""
    from types import SimpleNamespace

    from cor2vox_bids.execution.progress import node_status_logger

    folder = tmp_path / "synthesis"
    folder.mkdir()
    (folder / "result_synthesis.pklz").write_bytes(b"")
    pieces = [SimpleNamespace(startTime="2026-01-01T10:00:00.000000+00:00", endTime="2026-01-01T10:00:02.500000+00:00"),
              SimpleNamespace(startTime="2026-01-01T10:00:02.700000+00:00", endTime="2026-01-01T10:00:05.600000+00:00")]
    node = SimpleNamespace(fullname="cor2vox_wf.sub_01_wf.synthesis", name="synthesis",
                           output_dir=lambda: str(folder), result=SimpleNamespace(runtime=pieces))
    cb = node_status_logger(logging.getLogger("test.mapnode"), {"sub_01_wf": "sub-01"})
    with caplog.at_level(logging.INFO, logger="test.mapnode"):
        cb(node, "start")
        cb(node, "end")
    assert [r.getMessage() for r in caplog.records] == ["sub-01: synthesis done (6 s)"]


def test_step_line_comes_after_the_steps_own_progress_lines(caplog, tmp_path):
    """The node-status callback polls the progress files first, so "sampling step 5/5" is not printed after
    "synthesis done"."""
    from types import SimpleNamespace

    from cor2vox_bids.execution.progress import ProgressTail, node_status_logger

    folder = tmp_path / "progress"
    folder.mkdir()
    logger = logging.getLogger("test.order")
    node = SimpleNamespace(fullname="cor2vox_wf.sub_01_wf.qc", name="qc", output_dir=lambda: str(tmp_path / "qc"))
    with caplog.at_level(logging.INFO, logger="test.order"):
        with ProgressTail(folder, logger, interval=3600) as tail:  # the thread would poll only after an hour
            cb = node_status_logger(logger, {"sub_01_wf": "sub-01"}, flush=tail.poll)
            cb(node, "start")
            (folder / "sub-01_qc.log").write_text("sub-01: last progress line\n")
            cb(node, "end")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sub-01: last progress line" and lines[1].startswith("sub-01: quality control done (")
    assert len(lines) == 2  # polled once: not printed again when the tail closes


def test_every_graph_node_has_a_console_step_name():
    """Each node of the participant graph (atrophy and seed nodes too) gets a "done" line on the console."""
    import re
    from pathlib import Path

    import cor2vox_bids.workflows as workflows
    from cor2vox_bids.execution.progress import STEP_NAMES

    source = "".join(p.read_text() for p in Path(workflows.__file__).parent.glob("*.py"))
    nodes = set(re.findall(r'\bname="([a-z_]+)"', source)) - {"cor2vox_wf"}
    assert nodes and nodes <= set(STEP_NAMES), sorted(nodes - set(STEP_NAMES))


def test_failures_named_before_the_start_are_not_repeated():
    """A participant refused by the checks had its one line before the run started; the closing summary only
    counts it (the FAILED line lists it), a participant that failed in the graph gets its line here."""
    from cor2vox_bids.execution.local import LOGGER, summarize

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # the CLI's logger may not propagate (setup_logging): listen on it directly
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.INFO)
    try:
        code = summarize({"sub-01": "lh.pial: empty", "sub-02": "synthesis failed"}, 3, reported={"sub-01"})
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
    lines = [r.getMessage() for r in records]
    assert code == 16
    assert lines == ["sub-02 failed: synthesis failed", "2 of 3 participant(s) failed; the others finished"]
