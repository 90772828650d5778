"""A run refused as a whole (unknown participant label, nothing to collect at the group level) leaves no output
folder behind when it created it; a folder that existed before is kept."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.cli.run import main
from cor2vox_bids.errors import ExitCode


@pytest.fixture
def tiny_bids(tmp_path) -> Path:
    bids = tmp_path / "bids"
    (bids / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    data = np.arange(8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    nib.save(nib.Nifti1Image(data, np.eye(4)), bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    return bids


@pytest.mark.parametrize("args, code", [
    (["participant", "--participant-label", "99"], ExitCode.USAGE),
    (["group"], ExitCode.NO_INPUT),
])
def test_refused_run_removes_the_output_folder_it_created(tiny_bids, tmp_path, capfd, args, code):
    out = tmp_path / "new" / "out"
    assert main([str(tiny_bids), str(out), *args, "--skip-bids-validation"]) == code
    console = capfd.readouterr().err
    assert "Traceback" not in console and "ERROR" in console
    assert not out.exists()


def test_refused_run_keeps_an_existing_output_folder(tiny_bids, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(tiny_bids), str(out), "participant", "--participant-label", "99",
                 "--skip-bids-validation"]) == ExitCode.USAGE
    assert out.is_dir()


def test_dry_run_writes_no_crash_files(tiny_bids, tmp_path, capfd):
    """A participant that fails its checks in a --dry-run is reported on the console only."""
    (tiny_bids / "derivatives" / "freesurfer").mkdir(parents=True)  # a subjects dir without sub-01
    out = tmp_path / "out"
    assert main([str(tiny_bids), str(out), "participant", "--dry-run", "--skip-bids-validation"]) == ExitCode.OK
    captured = capfd.readouterr()
    assert "sub-01: SKIPPED" in captured.out and "missing FreeSurfer subject folder" in captured.err
    assert not out.exists()
