"""The BIDS-App command line: generated parser, label forms, usage errors and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from cor2vox_bids.cli import run as cli
from cor2vox_bids.cli.parser import build_parser, iter_fields, parse_settings
from cor2vox_bids.errors import EXIT_CODE_DESCRIPTIONS, ExitCode
from cor2vox_bids.settings import Settings


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for spec in iter_fields(Settings):
        for flag in spec["flags"]:
            assert flag in out, flag
    for group in ("Options for filtering BIDS queries", "Synthesis", "Options to handle performance"):
        assert group in out


def test_new_field_appears_in_help_without_parser_edits():
    class Extended(Settings):
        brand_new_option: int = Field(default=3, description="A freshly added option.",
                                      json_schema_extra={"group": "Synthesis", "flags": ["--brand-new-option"]})

    text = build_parser(Extended, "x", "y").format_help()
    assert "--brand-new-option" in text and "A freshly added option." in text
    settings = parse_settings(Extended, ["b", "o", "participant", "--brand-new-option", "7"], "x", "y")
    assert settings.brand_new_option == 7


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert "cor2vox-bids" in capsys.readouterr().out


@pytest.mark.parametrize("labels,expected", [
    (["01"], ["01"]), (["sub-01"], ["01"]), (["sub-01", "02", "sub-02"], ["01", "02"]), (["01,02"], ["01", "02"]),
])
def test_participant_label_forms(labels, expected):
    s = parse_settings(Settings, ["b", "o", "participant", "--participant-label", *labels], "p", "d")
    assert s.participant_label == expected


def test_session_label_forms():
    s = parse_settings(Settings, ["b", "o", "participant", "--session-label", "ses-A", "B"], "p", "d")
    assert s.session_label == ["A", "B"]


@pytest.mark.parametrize("argv", [
    ["b", "o", "bogus"],
    ["b", "o", "participant", "--device", "gpu"],
    ["b", "o", "participant", "--num-samples", "0"],
    ["b", "o", "participant", "--participant-label", "sub_01!"],
    ["b", "o", "participant", "--derivatives", "smriprep"],
    ["b", "o", "participant", "--nprocs", "1", "--omp-nthreads", "2"],
    ["b", "o", "participant", "--unknown-flag"],
])
def test_usage_errors_exit_64(argv, capsys):
    assert cli.main(argv) == ExitCode.USAGE
    assert "error" in capsys.readouterr().err


def test_settings_forbid_extra_fields():
    with pytest.raises(ValueError):  # pydantic's ValidationError
        Settings(bids_dir="b", output_dir="o", analysis_level="participant", not_an_option=1)


def test_exit_code_table_is_complete():
    assert set(EXIT_CODE_DESCRIPTIONS) == set(ExitCode)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"exit code {int(code)} not documented in README"


def test_console_script_runs_out_of_process():
    res = subprocess.run([sys.executable, "-m", "cor2vox_bids.cli.run", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "cor2vox-bids" in res.stdout


def test_missing_dataset_exit_66(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"]) == ExitCode.NO_INPUT
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_output_inside_input_exit_64(demo_copy, capsys):
    code = cli.main([str(demo_copy["bids"]), str(demo_copy["bids"] / "out"), "participant", "--dry-run"])
    assert code == ExitCode.USAGE
    assert "inside the input dataset" in capsys.readouterr().err


def test_unknown_label_lists_existing(demo_copy, tmp_path, capsys):
    code = cli.main([str(demo_copy["bids"]), str(tmp_path / "out"), "participant", "--participant-label", "99",
                     "--dry-run", "--skip-bids-validation"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "99" in err and "01, 02" in err


def test_output_not_writable_exit_73(demo_copy, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = cli.main([str(demo_copy["bids"]), str(blocker / "out"), "participant", "--dry-run"])
    assert code == ExitCode.CANT_CREATE
    assert str(blocker / "out") in capsys.readouterr().err
