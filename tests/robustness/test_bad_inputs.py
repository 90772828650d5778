"""The matrix of bad inputs: each is refused with its documented exit code, the file named in one console line,
no traceback on the console, and (for one participant's files) the healthy participant finished.

Participant-level cases share one run (``matrix_run``: a healthy ``sub-01`` and one broken participant per case,
exit 16). Whole-run cases stop before any work, each with its own in-process call of ``cli.run.main``.
"""

from __future__ import annotations

import json
import shutil
from html import escape
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.bids import naming
from cor2vox_bids.cli import run as cli
from cor2vox_bids.errors import ExitCode
from robustness_helpers import CASES, add_participant, new_dataset, run_cli, write_json

pytestmark = pytest.mark.slow


def _lines_naming(console: str, path: Path) -> list[str]:
    return [ln for ln in console.splitlines() if str(path) in ln]


# ---- one participant's files: the batch run ----------------------------------------------------------------------


def test_batch_exit_code_and_healthy_participant(matrix_run):
    assert matrix_run["code"] == ExitCode.SOME_PARTICIPANTS_FAILED, matrix_run["console"][-3000:]
    out = matrix_run["out"]
    assert (out / naming.synth_path("01", None, 0, 1)).is_file()
    assert (out / naming.report_path("01", None)).is_file()
    assert "Traceback" not in matrix_run["console"]


@pytest.mark.parametrize("label", sorted(CASES))
def test_bad_participant_input(matrix_run, label):
    console, out = matrix_run["console"], matrix_run["out"]
    path, phrase = matrix_run["expected"][label]
    lines = [ln for ln in _lines_naming(console, path) if f"sub-{label}" in ln]
    assert lines, f"no console line names {path} for sub-{label}:\n" + "\n".join(
        ln for ln in console.splitlines() if f"sub-{label}" in ln)
    assert any(phrase in ln for ln in lines), lines
    assert "Traceback" not in console
    crashes = list((out / f"sub-{label}" / "log").glob(f"*/crash-sub-{label}-validation.txt"))
    assert len(crashes) == 1 and str(path) in crashes[0].read_text()
    assert not (out / naming.synth_path(label, None, 0, 1)).exists()
    html = (out / naming.report_path(label, None)).read_text()  # the error report: its error line and crash file
    assert escape(phrase) in html and crashes[0].relative_to(out).as_posix() in html


# ---- whole-run problems: each stops before any work ----------------------------------------------------------


def _main(capfd, *args) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def _no_work(out: Path) -> None:
    assert not list(out.glob("sub-*/anat")) if out.is_dir() else True


@pytest.fixture
def model_copy(tmp_path) -> Path:
    from cor2vox_bids.execution.model import default_model_path

    return Path(shutil.copytree(default_model_path(), tmp_path / "model"))


def _edit_config(model: Path, **changes) -> Path:
    cfg = json.loads((model / "config.json").read_text())
    for key, value in changes.items():
        section, _, item = key.partition("__")
        cfg[section][item] = value
    (model / "config.json").write_text(json.dumps(cfg))
    return model / "config.json"


OUTPUT_CASES = ["raw_root", "inside_raw", "derivatives", "freesurfer", "holds_dataset", "foreign_files", "a_file"]


@pytest.mark.parametrize("case", OUTPUT_CASES)
def test_output_folder_refused(small_dataset, tmp_path, capfd, case):
    bids = small_dataset
    desc = bids / "derivatives" / "freesurfer" / "dataset_description.json"
    before = desc.read_bytes()
    out = {"raw_root": bids, "inside_raw": bids / "sub-01" / "out", "derivatives": bids / "derivatives",
           "freesurfer": bids / "derivatives" / "freesurfer", "holds_dataset": bids.parent,
           "foreign_files": tmp_path / "home", "a_file": tmp_path / "file"}[case]
    if case == "foreign_files":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
    if case == "a_file":
        out.write_text("x")
    listing = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    code, console = _main(capfd, bids, out, "participant", "--skip-bids-validation")
    assert code == ExitCode.USAGE, console
    named = desc if case == "freesurfer" else out
    assert _lines_naming(console, named) or (case == "holds_dataset" and "another dataset" in console), console
    assert "Traceback" not in console
    assert desc.read_bytes() == before  # the FreeSurfer dataset is untouched
    if listing is not None:
        assert sorted(p.name for p in out.iterdir()) == listing  # nothing written anywhere


def test_output_under_derivatives_is_allowed_in_dry_run(small_dataset, capfd):
    out = small_dataset / "derivatives" / "cor2vox-dry"
    code, console = _main(capfd, small_dataset, out, "participant", "--skip-bids-validation", "--dry-run")
    assert code == ExitCode.OK, console
    shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("content, code_expected, words", [
    ({"t1w": {"aquisition": "mprage"}}, ExitCode.USAGE, "unknown entities"),
    ("{not json", ExitCode.USAGE, "JSON"),
    ({"bold": {"task": "rest"}}, ExitCode.USAGE, "unknown query"),
    ({"t1w": {"run": {"a": 1}}}, ExitCode.USAGE, "must be a string"),
    (None, ExitCode.NO_INPUT, "does not exist"),
    ({"t1w": {"acquisition": "nomatch"}}, ExitCode.NO_INPUT, "matches none"),
])
def test_bad_filter_file(small_dataset, tmp_path, capfd, content, code_expected, words):
    path = tmp_path / "filter.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write_json(path, content)
    out = tmp_path / "out"
    code, console = _main(capfd, small_dataset, out, "participant", "--skip-bids-validation",
                          "--bids-filter-file", path)
    assert code == code_expected, console
    assert any(words in ln for ln in _lines_naming(console, path)), console
    assert "Traceback" not in console
    _no_work(out)


def test_session_label_matching_nothing(small_dataset, tmp_path, capfd):
    code, console = _main(capfd, small_dataset, tmp_path / "out", "participant", "--skip-bids-validation",
                          "--session-label", "pre")
    assert code == ExitCode.USAGE and "pre match no session" in console and "Traceback" not in console


def test_unknown_participant(small_dataset, tmp_path, capfd):
    code, console = _main(capfd, small_dataset, tmp_path / "out", "participant", "--skip-bids-validation",
                          "--participant-label", "99")
    assert code == ExitCode.USAGE and "99" in console and "Traceback" not in console


@pytest.mark.parametrize("changes, mem, words", [
    ({"grid__shape": [0, 0, 0]}, None, "grid shape"),
    ({"grid__shape": [8192, 8192, 8192]}, None, "grid shape"),
    ({"grid__shape": [256, 256, 256], "grid__spacing_mm": 1.0}, "1", "more than --mem 1 GB"),
    ({"grid__spacing_mm": -2.0}, None, "spacing"),
    ({"conditions__channels": ["sdf_cortex", "sdf_pial", "sdf_white", "edges", "curvature"]}, None,
     "condition channels"),
])
def test_bad_model_config(small_dataset, model_copy, tmp_path, capfd, changes, mem, words):
    config = _edit_config(model_copy, **changes)
    extra = ["--mem", mem] if mem else []
    out = tmp_path / "out"
    code, console = _main(capfd, small_dataset, out, "participant", "--skip-bids-validation", "--model",
                          model_copy, *extra)
    assert code == ExitCode.DATA, console
    assert any(words in ln for ln in _lines_naming(console, config)), console
    assert "Traceback" not in console
    _no_work(out)


@pytest.mark.parametrize("what", ["weights", "config_json"])
def test_corrupt_model_files(small_dataset, model_copy, tmp_path, capfd, what):
    from cor2vox_bids.diffusion.checkpoint import model_paths

    weights, config = model_paths(model_copy)
    target = weights if what == "weights" else config
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data) if what == "weights" else b"{" + bytes(data))
    code, console = _main(capfd, small_dataset, tmp_path / "out", "participant", "--skip-bids-validation",
                          "--model", model_copy)
    assert code == ExitCode.DATA and _lines_naming(console, target) and "Traceback" not in console


def test_missing_dataset_and_subjects_dir(small_dataset, tmp_path, capfd):
    code, console = _main(capfd, tmp_path / "nope", tmp_path / "out", "participant")
    assert code == ExitCode.NO_INPUT and _lines_naming(console, tmp_path / "nope") and "Traceback" not in console
    code, console = _main(capfd, small_dataset, tmp_path / "out", "participant", "--skip-bids-validation",
                          "--fs-subjects-dir", tmp_path / "nofs")
    assert code == ExitCode.NO_INPUT and _lines_naming(console, tmp_path / "nofs") and "Traceback" not in console


# ---- sMRIPrep GIFTI surfaces: every participant broken -> 66 ------------------------------------------------------


def _gifti(path: Path, v: np.ndarray, f: np.ndarray, v_intent="NIFTI_INTENT_POINTSET", f_dtype=np.int32) -> Path:
    arrays = [nib.gifti.GiftiDataArray(np.asarray(v, np.float32), intent=v_intent, datatype="NIFTI_TYPE_FLOAT32"),
              nib.gifti.GiftiDataArray(np.asarray(f, f_dtype), intent="NIFTI_INTENT_TRIANGLE")]
    nib.save(nib.gifti.GiftiImage(darrays=arrays), str(path))
    return path


GIFTI_CASES = ["giitkr", "giiintent", "giiempty", "giifloatfaces", "giinan", "giiswap"]


@pytest.fixture(scope="module")
def gifti_run(demo_data, tmp_path_factory) -> dict:
    from cor2vox_bids.geometry import load_freesurfer_hemisphere
    from cor2vox_bids.geometry.surfaces import tkr_to_scanner_matrix

    root = tmp_path_factory.mktemp("gifti")
    bids = new_dataset(root, demo_data)
    smriprep = root / "smriprep"
    smriprep.mkdir()
    write_json(smriprep / "dataset_description.json", {"Name": "sMRIPrep", "BIDSVersion": "1.9.0",
                                                       "DatasetType": "derivative",
                                                       "GeneratedBy": [{"Name": "smriprep"}]})
    expected = {}
    for label in GIFTI_CASES:
        add_participant(bids, demo_data, label)
        src = "02" if label == "giiswap" else "01"
        anat = smriprep / f"sub-{label}" / "anat"
        anat.mkdir(parents=True)
        xfm = tkr_to_scanner_matrix(demo_data["freesurfer"] / f"sub-{src}" / "mri" / "orig.mgz")
        for hemi in "LR":
            h = load_freesurfer_hemisphere(demo_data["freesurfer"] / f"sub-{src}", hemi)
            for name, surf in (("white", h.white), ("pial", h.pial)):
                v, f = surf.vertices, surf.faces
                path = anat / f"sub-{label}_hemi-{hemi}_{name}.surf.gii"
                if label == "giitkr":  # left in FreeSurfer's tkr frame
                    v = v - xfm[:3, 3]
                if hemi == "L" and name == "white":
                    if label == "giiintent":
                        _gifti(path, v, f, v_intent="NIFTI_INTENT_NONE")
                        expected[label] = (path, "POINTSET")
                        continue
                    if label == "giiempty":
                        nib.save(nib.gifti.GiftiImage(), str(path))
                        expected[label] = (path, "POINTSET")
                        continue
                    if label == "giifloatfaces":
                        _gifti(path, v, f + 0.5, f_dtype=np.float32)
                        expected[label] = (path, "integer")
                        continue
                    if label == "giinan":
                        v = v.copy()
                        v[3] = np.nan
                        expected[label] = (path, "NaN")
                    if label == "giitkr":
                        expected[label] = (path, "c_ras")
                    if label == "giiswap":
                        expected[label] = (path, "another person's surfaces")
                _gifti(path, v, f)
    code, console = run_cli([str(bids), str(root / "out"), "participant", "--skip-bids-validation",
                             "--derivatives", f"smriprep={smriprep}", "-w", str(root / "work")])
    return {"code": code, "console": console, "out": root / "out", "expected": expected}


@pytest.mark.parametrize("label", GIFTI_CASES)
def test_bad_gifti_surfaces(gifti_run, label):
    assert gifti_run["code"] == ExitCode.NO_INPUT, gifti_run["console"][-3000:]
    path, phrase = gifti_run["expected"][label]
    lines = [ln for ln in _lines_naming(gifti_run["console"], path) if f"sub-{label}" in ln]
    assert lines and any(phrase in ln for ln in lines), gifti_run["console"][-3000:]
    assert "Traceback" not in gifti_run["console"]
    assert list((gifti_run["out"] / f"sub-{label}" / "log").glob(f"*/crash-sub-{label}-validation.txt"))


# ---- group level: a corrupt participant table is named and that participant skipped ----------------------------


@pytest.mark.parametrize("what", ["tsv", "json"])
def test_group_with_corrupt_participant_table(matrix_run, tmp_path, capfd, what):
    out = tmp_path / "out"
    broken = {f"sub-{label}" for label in CASES} | {f"sub-{label}.html" for label in CASES}
    shutil.copytree(matrix_run["out"], out, symlinks=True, ignore=lambda _d, names: [n for n in names if n in broken])
    # a second participant: sub-01's outputs under another label
    for src in list((out / "sub-01").rglob("*")):
        dst = out / str(src.relative_to(out)).replace("sub-01", "sub-99")
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    bad = out / (naming.qc_table_path("99", None) if what == "tsv" else naming.qc_summary_path("99", None))
    bad.write_text("region\tthickness\nprecentral\tnot-a-number\textra\n" if what == "tsv" else '{"ssim": ')
    code, console = _main(capfd, matrix_run["bids"], out, "group", "--skip-bids-validation")
    assert code == ExitCode.DATA, console
    assert _lines_naming(console, bad) and "sub-99" in console and "Traceback" not in console
    table = (out / naming.group_path("summary", ".tsv")).read_text()
    assert "sub-01" in table and "sub-99" not in table
