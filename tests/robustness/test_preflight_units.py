"""Unit tests of the checks made before any work: output folder, filter entities, sessions, T1w, model config,
atomic writes. (The end-to-end matrix of bad inputs is in test_bad_inputs.py.)"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.bids import atomic
from cor2vox_bids.bids.preflight import (
    check_filter_entities,
    check_output_location,
    check_session_labels,
    load_t1w,
)
from cor2vox_bids.errors import ImageError, ModelError, UsageError

# ---- output folder --------------------------------------------------------------------------------------------


@pytest.fixture
def raw(tmp_path) -> Path:
    bids = tmp_path / "bids"
    (bids / "sub-01" / "anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "raw", "BIDSVersion": "1.9.0"}')
    fs = bids / "derivatives" / "freesurfer"
    (fs / "sub-01" / "surf").mkdir(parents=True)
    (fs / "sub-01" / "mri").mkdir()
    (fs / "dataset_description.json").write_text(json.dumps(
        {"Name": "FreeSurfer", "DatasetType": "derivative", "GeneratedBy": [{"Name": "freesurfer"}]}))
    return bids


def _own(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "DatasetType": "derivative", "GeneratedBy": [{"Name": "cor2vox-bids"}]}))
    return folder


@pytest.mark.parametrize("where", ["new", "empty", "own", "own_under_derivatives", "logs_only"])
def test_allowed_output_folders(raw, tmp_path, where):
    out = {"new": tmp_path / "new" / "out", "empty": tmp_path / "empty", "own": _own(tmp_path / "own"),
           "own_under_derivatives": raw / "derivatives" / "cor2vox", "logs_only": tmp_path / "logs"}[where]
    if where == "empty":
        out.mkdir()
    if where == "logs_only":  # a run stopped before writing dataset_description.json
        (out / "log" / "run1").mkdir(parents=True)
        (out / "sub-01" / "log" / "run1").mkdir(parents=True)
    check_output_location(raw, out)


@pytest.mark.parametrize("where, named, words", [
    ("raw", "out", "input dataset"),
    ("raw_sub", "out", "input dataset"),
    ("derivatives", "out", "derivatives/ folder"),
    ("freesurfer", "desc", r"another dataset \(freesurfer\)"),
    ("parent_of_raw", "nested", "another dataset"),
    ("subjects_dir", "nested", "another dataset"),
    ("foreign_files", "out", "not empty"),
    ("a_file", "out", "not a folder"),
])
def test_refused_output_folders(raw, tmp_path, where, named, words):
    out = {"raw": raw, "raw_sub": raw / "sub-01" / "out", "derivatives": raw / "derivatives",
           "freesurfer": raw / "derivatives" / "freesurfer", "parent_of_raw": tmp_path,
           "subjects_dir": raw / "derivatives" / "freesurfer" / "..", "foreign_files": tmp_path / "home",
           "a_file": tmp_path / "file.txt"}[where]
    if where == "subjects_dir":  # a FreeSurfer SUBJECTS_DIR without a description, outside the raw dataset
        out = tmp_path / "subjects"
        (out / "bert" / "surf").mkdir(parents=True)
        (out / "bert" / "mri").mkdir()
    if where == "foreign_files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if where == "a_file":
        out.write_text("x")
    with pytest.raises(UsageError, match=words) as err:
        check_output_location(raw, out)
    if named == "desc":
        assert err.value.path.name == "dataset_description.json"
    elif named == "out":
        assert err.value.path == out
    else:
        assert err.value.path is not None and err.value.path != out


# ---- filter file and sessions ------------------------------------------------------------------------------------


def test_filter_entities(tmp_path):
    known = ["subject", "session", "run", "acquisition"]
    check_filter_entities({"t1w": {"acquisition": "mprage", "run": 1, "session": None}}, known, tmp_path / "f.json")
    with pytest.raises(UsageError, match="unknown entities \\['aquisition'\\]") as err:
        check_filter_entities({"t1w": {"aquisition": "mprage"}}, known, tmp_path / "f.json")
    assert err.value.path == tmp_path / "f.json"
    with pytest.raises(UsageError, match="must be a string"):
        check_filter_entities({"t1w": {"run": {"x": 1}}}, known, tmp_path / "f.json")
    # file-name keys (acq-, ses-) get pybids' full names as a hint
    with pytest.raises(UsageError, match=r"in full: 'acq' → 'acquisition', 'ses' → 'session'\)"):
        check_filter_entities({"t1w": {"acq": "mprage", "ses": "1"}}, known, tmp_path / "f.json")


def test_session_labels():
    check_session_labels(None, {"01": []})
    check_session_labels(["A"], {"01": ["A", "B"], "02": []})
    with pytest.raises(UsageError, match="C match no session.*A, B"):
        check_session_labels(["A", "C"], {"01": ["A", "B"]})
    with pytest.raises(UsageError, match="no ses-<label> folders"):
        check_session_labels(["A"], {"01": [], "02": []})


# ---- T1w ----------------------------------------------------------------------------------------------------------

DATA = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32)


def _save(path: Path, data=DATA, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _broken(tmp_path: Path, kind: str) -> Path:
    good = _save(tmp_path / "good.nii.gz")
    raw = good.read_bytes()
    plain = _save(tmp_path / "plain.nii").read_bytes()
    p = tmp_path / f"{kind}_T1w.nii.gz"
    if kind == "truncated_gz":
        p.write_bytes(raw[: len(raw) // 2])
    elif kind == "crc":
        b = bytearray(raw)
        b[-6] ^= 0xFF  # the CRC32 in the gzip trailer: only a full read notices
        p.write_bytes(bytes(b))
    elif kind == "not_gzip":
        p.write_bytes(plain)
    elif kind == "truncated_nii":
        p = tmp_path / "t_T1w.nii"
        p.write_bytes(plain[:3000])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "4d":
        _save(p, np.stack([DATA, DATA], axis=-1))
    elif kind == "2d":
        _save(p, DATA[:, :, 0])
    elif kind == "nan":
        _save(p, np.where(DATA > 0.99, np.nan, DATA).astype(np.float32))
    elif kind == "inf":
        _save(p, np.where(DATA > 0.99, -np.inf, DATA).astype(np.float32))
    elif kind == "constant":
        _save(p, np.zeros_like(DATA))
    elif kind == "complex":
        _save(p, DATA.astype(np.complex64))
    elif kind == "singular_affine":
        b = bytearray(plain)
        b[312:328] = struct.pack("<4f", 0, 0, 0, 0)  # srow_z = 0
        b[252:256] = struct.pack("<hh", 0, 1)  # qform_code 0, sform_code 1
        p = tmp_path / "s_T1w.nii"
        p.write_bytes(bytes(b))
    elif kind == "folder":
        p.mkdir()
    elif kind == "symlink_loop":
        os.symlink(tmp_path / "b_T1w.nii.gz", p)
        os.symlink(p, tmp_path / "b_T1w.nii.gz")
    return p


@pytest.mark.parametrize("kind, words", [
    ("truncated_gz", "gzip"), ("crc", "CRC check failed"), ("not_gzip", "gzip"), ("truncated_nii", "truncated"),
    ("empty", "not a NIfTI"), ("4d", "4 dimensions"), ("2d", "2 dimensions"), ("nan", "NaN/inf"),
    ("inf", "NaN/inf"), ("constant", "constant"), ("complex", "non-real"), ("singular_affine", "singular"),
    ("folder", "Is a directory"), ("symlink_loop", "symbolic links"),
])
def test_bad_t1w_is_named(tmp_path, kind, words):
    path = _broken(tmp_path, kind)
    with pytest.raises(ImageError, match=words) as err:
        load_t1w(path)
    assert err.value.path == path and "\n" not in str(err.value)


def test_good_t1w_and_singleton_4d(tmp_path):
    img = load_t1w(_save(tmp_path / "a.nii.gz"))
    assert img.shape == DATA.shape and np.array_equal(img.get_fdata(dtype=np.float32), DATA)
    assert load_t1w(_save(tmp_path / "b.nii.gz", DATA[..., None])).shape == DATA.shape


# ---- model config ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_config() -> dict:
    from cor2vox_bids.execution.model import default_model_path

    return json.loads((default_model_path() / "config.json").read_text())


def test_demo_model_config_passes(demo_config, tmp_path):
    from cor2vox_bids.diffusion.resources import check_model_config

    need = check_model_config(demo_config, tmp_path / "config.json", mem_gb=64)
    assert 0.3e9 < need < 2e9  # measured peak of one forward pass: 0.64 GB + weights


@pytest.mark.parametrize("change, words", [
    ({"grid": {"shape": [0, 0, 0], "spacing_mm": 2.0}}, "grid shape"),
    ({"grid": {"shape": [8192, 8192, 8192], "spacing_mm": 2.0}}, "grid shape"),
    ({"grid": {"shape": [80, 96, 80], "spacing_mm": 0.0}}, "spacing"),
    ({"grid": {"shape": [80, 96, 80], "spacing_mm": float("nan")}}, "spacing"),
    ({"conditions": {"channels": ["sdf_cortex", "sdf_pial", "sdf_white", "edges", "thickness"],
                     "sdf_clip_mm": 20.0}}, "condition channels"),
    ({"conditions": {"channels": ["sdf_cortex"] * 5, "sdf_clip_mm": 20.0}}, "condition channels"),
    ({"grid": {"shape": [256, 256, 256], "spacing_mm": 1.0}, "mem": 2.0}, "more than --mem 2 GB"),
])
def test_bad_model_config(demo_config, tmp_path, change, words):
    from cor2vox_bids.diffusion.resources import check_model_config

    cfg = json.loads(json.dumps(demo_config))
    mem = change.pop("mem", 64.0)
    cfg.update(change)
    with pytest.raises(ModelError, match=words) as err:
        check_model_config(cfg, tmp_path / "config.json", mem_gb=mem)
    assert err.value.path == tmp_path / "config.json"


# ---- atomic writes ------------------------------------------------------------------------------------------------


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = atomic.write_text(tmp_path / "sub" / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]


def test_atomic_image_and_json(tmp_path):
    path = atomic.save_image(nib.Nifti1Image(DATA, np.eye(4)), tmp_path / "x_T1w.nii.gz")
    assert np.array_equal(nib.load(str(path)).get_fdata(dtype=np.float32), DATA)
    assert json.loads(atomic.write_json(tmp_path / "x.json", {"a": 1}).read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x_T1w.nii.gz"]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)
