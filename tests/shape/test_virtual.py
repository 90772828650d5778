"""cor2vox-shape end to end on a small fsaverage5-based training set: build, sample, interpolate, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.cli.shape import main
from cor2vox_bids.errors import ExitCode
from cor2vox_bids.shape.model import load_model

VALIDATOR = shutil.which("bids-validator") or next(
    (
        str(p)
        for p in [Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "bids-validator"]
        if p.is_file()
    ),
    None,
)


def test_build_records_training_and_resampling(shape_model_dir):
    model = load_model(shape_model_dir)
    assert model.training == ["sub-01", "sub-02", "sub-03", "sub-04"]
    meta = json.loads((shape_model_dir / "shape_model.json").read_text())
    assert meta["Pose"]["sub-03"]["resampled"] is True  # subdivided mesh went through sphere.reg
    assert meta["Pose"]["sub-01"]["resampled"] is False
    # pose removed: every participant lies within a few mm RMS of the template after alignment
    assert all(p["rms_to_template_mm"] < 3.0 for p in meta["Pose"].values())
    assert model.hemis["L"].n_components == 3 and model.n_vertices == 10242


def test_virtual_dataset_layout_and_checks(virtual_dataset, shape_model_dir):
    desc = json.loads((virtual_dataset / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and "synthetic" in desc["GeneratedBy"][0]["Description"]
    rows = [line.split("\t") for line in (virtual_dataset / "participants.tsv").read_text().splitlines()]
    assert rows[0][:4] == ["participant_id", "method", "seed", "scale"]
    assert [r[0] for r in rows[1:]] == ["sub-v001"] and rows[1][1] == "sample"
    qc = json.loads((virtual_dataset / "derivatives" / "freesurfer" / "virtual_qc.json").read_text())
    model = load_model(shape_model_dir)
    train_thick = list(model.info["TrainingMeanThickness"].values())
    for label in ("v001",):
        sub = virtual_dataset / "derivatives" / "freesurfer" / f"sub-{label}"
        for hemi, h in (("lh", "L"), ("rh", "R")):
            w, f = nib.freesurfer.read_geometry(str(sub / "surf" / f"{hemi}.white"))
            assert len(w) == 10242 and np.array_equal(f, model.faces[h])
            labels, _, names = nib.freesurfer.read_annot(str(sub / "label" / f"{hemi}.aparc.annot"))
            assert np.array_equal(labels, model.annot[h][0]) and len(names) == len(model.annot[h][2])
            checks = qc[f"sub-{label}"][h]
            assert checks["white_self_intersections"] == 0 and checks["pial_self_intersections"] == 0
            assert checks["white_pial_crossings"] == 0 and checks["white_vertices_outside_pial"] == 0
            assert checks["left_right_pial_crossings"] == 0
        orig = nib.load(str(sub / "mri" / "orig.mgz"))
        assert np.allclose(orig.affine, model.template["OrigAffine"], atol=1e-4)
        # thickness within 15 % of the training range (3 training participants span a narrow range)
        mean_t = qc[f"sub-{label}"]["mean_thickness"]
        assert 0.85 * min(train_thick) < mean_t < 1.15 * max(train_thick)


def test_pybids_indexes_virtual_participants(virtual_dataset):
    from bids import BIDSLayout

    layout = BIDSLayout(str(virtual_dataset), validate=True)
    assert layout.get_subjects() == ["v001"]


@pytest.mark.skipif(VALIDATOR is None, reason="npm bids-validator not installed (make bids-validator)")
def test_bids_validator_accepts_virtual_dataset(virtual_dataset):
    res = subprocess.run([VALIDATOR, str(virtual_dataset), "--json"], capture_output=True, text=True, timeout=300)
    report = json.loads(res.stdout)
    assert report["issues"]["errors"] == [], [e["key"] for e in report["issues"]["errors"]]


def test_sample_deterministic_per_seed(virtual_dataset, shape_model_dir, tmp_path):
    assert main(["sample", str(shape_model_dir), str(tmp_path / "again"), "--n", "1", "--seed", "7"]) == 0
    for name in ("lh.white", "rh.pial"):  # the files differ only in their creation-time header line
        a, _ = nib.freesurfer.read_geometry(str(virtual_dataset / "derivatives/freesurfer/sub-v001/surf" / name))
        b, _ = nib.freesurfer.read_geometry(str(tmp_path / "again/derivatives/freesurfer/sub-v001/surf" / name))
        assert np.array_equal(a, b)
    assert main(["sample", str(shape_model_dir), str(tmp_path / "other"), "--n", "1", "--seed", "8"]) == 0
    c, _ = nib.freesurfer.read_geometry(str(tmp_path / "other/derivatives/freesurfer/sub-v001/surf/lh.white"))
    a, _ = nib.freesurfer.read_geometry(str(virtual_dataset / "derivatives/freesurfer/sub-v001/surf/lh.white"))
    assert np.abs(c - a).max() > 0.1


def test_interpolate_slerp_ends_and_norms(shape_model_dir, tmp_path):
    out = tmp_path / "interp"
    assert (
        main(
            [
                "interpolate",
                str(shape_model_dir),
                str(out),
                "--from",
                "sub-01",
                "--to",
                "02",
                "--steps",
                "1",
                "--mode",
                "lerp",
            ]
        )
        == 0
    )
    rows = [line.split("\t") for line in (out / "participants.tsv").read_text().splitlines()]
    head = rows[0]
    row = dict(zip(head, rows[1]))
    assert row["method"] == "lerp" and row["source"] == "sub-01" and row["target"] == "sub-02" and row["t"] == "0.5"
    model = load_model(shape_model_dir)
    a, b = model.hemis["L"].train_codes[0], model.hemis["L"].train_codes[1]
    assert np.isclose(float(row["latent_norm_L"]), np.linalg.norm(0.5 * (a + b)), rtol=1e-3)


def test_usage_and_input_errors(shape_model_dir, shape_training, tmp_path, capsys):
    assert (
        main(
            [
                "interpolate",
                str(shape_model_dir),
                str(tmp_path / "x"),
                "--from",
                "sub-01",
                "--to",
                "sub-99",
                "--steps",
                "2",
            ]
        )
        == ExitCode.USAGE
    )
    assert "sub-99" in capsys.readouterr().err
    missing = ["sample", str(tmp_path / "missing"), str(tmp_path / "y"), "--n", "1", "--seed", "0"]
    assert main(missing) == ExitCode.NO_INPUT
    assert main(["sample", str(shape_model_dir), str(tmp_path / "z"), "--n", "0", "--seed", "0"]) == ExitCode.USAGE
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["sample", str(shape_model_dir), str(full), "--n", "1", "--seed", "0"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "not empty" in err and "Traceback" not in err


def test_broken_participant_is_left_out(shape_training, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(shape_training, bids)
    bad = bids / "derivatives/freesurfer/sub-02/surf/rh.pial"
    bad.write_bytes(bad.read_bytes()[:1000])
    assert (
        main(["build", str(bids), str(tmp_path / "model"), "--participant-label", "01", "02", "03", "04"])
        == ExitCode.SOME_PARTICIPANTS_FAILED
    )
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    assert load_model(tmp_path / "model").training == ["sub-01", "sub-03", "sub-04"]
    # too few usable participants: nothing is written, exit 66
    assert main(["build", str(bids), str(tmp_path / "model2"), "--participant-label", "01", "02"]) == ExitCode.NO_INPUT
    assert not (tmp_path / "model2").exists()


def test_template_errors_exit_with_run_codes(shape_training, tmp_path, capsys):
    from .conftest import fsaverage5

    assert main(["build", str(shape_training), str(tmp_path / "m"), "--template", str(tmp_path)]) == ExitCode.NO_INPUT
    broken = tmp_path / "tpl"
    shutil.copytree(fsaverage5(), broken, ignore=shutil.ignore_patterns("*.mgz", "*.log"))
    shutil.copyfile(fsaverage5() / "mri" / "orig.mgz", broken / "mri" / "orig.mgz")
    (broken / "surf" / "rh.sphere.reg").write_bytes(b"\xff\xff\xfe broken")
    capsys.readouterr()
    assert main(["build", str(shape_training), str(tmp_path / "m"), "--template", str(broken)]) == ExitCode.DATA
    err = capsys.readouterr().err
    assert "rh.sphere.reg" in err and "Traceback" not in err
