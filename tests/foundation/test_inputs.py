"""Input discovery with pybids and the checks made before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cor2vox_bids.bids.inputs import check_output_dir, collect_inputs
from cor2vox_bids.errors import MissingInputError, UsageError
from cor2vox_bids.settings import Settings


def settings(bids: Path, tmp: Path, **kw) -> Settings:
    return Settings(bids_dir=bids, output_dir=tmp / "out", analysis_level="participant", **kw)


def test_collects_both_participants(demo_copy, tmp_path):
    ok, failed, layout = collect_inputs(settings(demo_copy["bids"], tmp_path))
    assert [p.subject for p in ok] == ["01", "02"] and not failed
    p = ok[0]
    assert p.source == "freesurfer" and p.t1w.name == "sub-01_T1w.nii.gz"
    assert p.hemis["L"].white.name == "lh.white" and p.hemis["R"].pial.name == "rh.pial"
    assert p.hemis["L"].annot.name == "lh.aparc.annot" and p.orig.name == "orig.mgz"


def test_label_filter(demo_copy, tmp_path):
    ok, _, _ = collect_inputs(settings(demo_copy["bids"], tmp_path, participant_label=["sub-02"]))
    assert [p.subject for p in ok] == ["02"]


def test_unknown_label(demo_copy, tmp_path):
    with pytest.raises(UsageError, match="labels that exist: 01, 02"):
        collect_inputs(settings(demo_copy["bids"], tmp_path, participant_label=["07"]))


def test_bids_filter_file(demo_copy, tmp_path):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": {"acquisition": "nonexistent"}}))
    ok, _, _ = collect_inputs(settings(demo_copy["bids"], tmp_path, bids_filter_file=filt))
    assert all(p.t1w is None for p in ok)
    filt.write_text(json.dumps({"bold": {}}))
    with pytest.raises(UsageError, match="unknown query"):
        collect_inputs(settings(demo_copy["bids"], tmp_path, bids_filter_file=filt))


def test_missing_subjects_dir_is_66(demo_copy, tmp_path):
    with pytest.raises(MissingInputError) as exc:
        collect_inputs(settings(demo_copy["bids"], tmp_path, fs_subjects_dir=tmp_path / "nofs"))
    assert exc.value.exit_code == 66 and exc.value.path == tmp_path / "nofs"


def test_missing_surface_fails_that_participant_only(demo_copy, tmp_path):
    missing = demo_copy["freesurfer"] / "sub-01" / "surf" / "lh.pial"
    missing.unlink()
    ok, failed, _ = collect_inputs(settings(demo_copy["bids"], tmp_path))
    assert [p.subject for p in ok] == ["02"]
    assert failed[0].key == "sub-01" and failed[0].path == missing and "pial" in failed[0].message


def test_output_dir_rules(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    with pytest.raises(UsageError):
        check_output_dir(bids, bids / "out")
    check_output_dir(bids, bids / "derivatives" / "cor2vox")  # allowed, as BIDS recommends
    check_output_dir(bids, tmp_path / "out")
