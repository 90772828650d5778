"""Brainlife wrapper: config.json → one-participant BIDS dataset → the cor2vox-bids call → datatype outputs."""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pytest

from container_helpers import ROOT
from cor2vox_bids.cli import brainlife
from cor2vox_bids.cli.parser import parse_settings
from cor2vox_bids.cli.run import DESCRIPTION, PROG
from cor2vox_bids.settings import Settings


@pytest.fixture()
def fs_subject(tmp_path):
    """A FreeSurfer-like subject folder with a small mri/orig.mgz (the wrapper does not read surfaces)."""
    subject = tmp_path / "freesurfer_output"
    (subject / "mri").mkdir(parents=True)
    (subject / "surf").mkdir()
    data = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    nib.save(nib.MGHImage(data, np.eye(4)), str(subject / "mri" / "orig.mgz"))
    return subject


def test_options_from_config_use_the_settings_flags():
    config = {"_app": "x", "_inputs": [], "freesurfer": "/x", "num_samples": 2, "random_seed": "7",
              "save_conditioning": True, "dry_run": "false", "eta": 0.5, "device": "cpu", "verbose": 2,
              "participant_label": ["99"], "bids_dir": "/elsewhere", "colour": "blue", "model": None}
    argv, ignored = brainlife.options_from_config(config)
    assert argv == ["--num-samples", "2", "--random-seed", "7", "--save-conditioning", "--eta", "0.5",
                    "--device", "cpu", "-vv"]
    assert sorted(ignored) == ["bids_dir", "colour", "participant_label"]
    settings = parse_settings(Settings, ["b", "o", "participant", *argv], PROG, DESCRIPTION)
    assert settings.num_samples == 2 and settings.verbose == 2 and settings.save_conditioning


def test_subject_label_from_config_or_inputs():
    assert brainlife.subject_label({"subject": "sub-A_01"}) == "A01"
    assert brainlife.subject_label({"_inputs": [{"meta": {"subject": "100307"}}]}) == "100307"
    assert brainlife.subject_label({}) == "01"


def test_prepare_dataset_links_inputs_and_converts_orig(tmp_path, fs_subject):
    bids, subjects_dir = brainlife.prepare_dataset({"freesurfer": str(fs_subject)}, tmp_path / "bl", "07")
    t1w = bids / "sub-07" / "anat" / "sub-07_T1w.nii.gz"
    assert t1w.is_file() and nib.load(str(t1w)).shape == (4, 5, 6)
    assert json.loads((bids / "dataset_description.json").read_text())["BIDSVersion"]
    assert (subjects_dir / "sub-07").resolve() == fs_subject.resolve()
    assert (subjects_dir / "sub-07" / "mri" / "orig.mgz").is_file()


def test_prepare_dataset_links_a_given_t1(tmp_path, fs_subject):
    t1 = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), str(t1))
    bids, _ = brainlife.prepare_dataset({"freesurfer": str(fs_subject), "t1": str(t1)}, tmp_path / "bl", "01")
    assert (bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz").resolve() == t1.resolve()


def test_missing_freesurfer_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"t1": "x.nii.gz"}))
    assert brainlife.main([str(tmp_path / "config.json"), "--outdir", str(tmp_path / "o")]) == 64
    (tmp_path / "config.json").write_text(json.dumps({"freesurfer": str(tmp_path / "nope")}))
    assert brainlife.main([str(tmp_path / "config.json"), "--outdir", str(tmp_path / "o")]) == 66


def test_main_calls_the_bids_app_and_collects_outputs(tmp_path, fs_subject, monkeypatch):
    from cor2vox_bids.bids import naming as outputs
    from cor2vox_bids.cli import run

    calls = []

    def fake_run(argv):
        calls.append(argv)
        out = tmp_path / "out" / "output"
        synth = out / outputs.synth_path("05", None, 0, 1)
        synth.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), str(synth))
        (out / outputs.report_path("05", None)).write_text("<html></html>")
        return 0

    monkeypatch.setattr(run, "main", fake_run)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"freesurfer": str(fs_subject), "subject": "05", "random_seed": 3}))
    assert brainlife.main([str(config), "--outdir", str(tmp_path / "out")]) == 0
    argv = calls[0]
    assert argv[1] == str(tmp_path / "out" / "output") and argv[2] == "participant"
    settings = parse_settings(Settings, argv, PROG, DESCRIPTION)
    assert settings.participant_label == ["05"] and settings.random_seed == 3
    assert settings.fs_subjects_dir == tmp_path / "out" / "bl_inputs" / "freesurfer"
    assert (tmp_path / "out" / "t1" / "t1.nii.gz").is_file()
    assert (tmp_path / "out" / "html" / "index.html").is_file()
    product = json.loads((tmp_path / "out" / "product.json").read_text())
    assert product["cor2vox"]["exit_code"] == 0 and set(product["cor2vox"]["outputs"]) == {"t1", "html"}


def test_main_script_is_valid_bash():
    main = ROOT / "brainlife" / "main"
    assert main.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(main)], check=True)
    assert "cor2vox_bids.cli.brainlife" in main.read_text()
    json.loads((ROOT / "brainlife" / "config.json.example").read_text())
