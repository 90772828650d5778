"""Shared fixtures: one small demo dataset built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    """A 2-participant demo dataset (raw BIDS + FreeSurfer derivatives + site 2), built once."""
    pytest.importorskip("smriprep_freesurfer732", reason="demo extra not installed")
    from cor2vox_bids.demodata import build_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return build_demo_dataset(root, participants=2, seed=0, site2=True, log=lambda *_: None)


@pytest.fixture()
def demo_copy(demo_data, tmp_path) -> dict[str, Path]:
    """A private copy of the site-1 dataset that a test may break."""
    dst = tmp_path / "bids"
    shutil.copytree(demo_data["bids"], dst, symlinks=True)
    return {"bids": dst, "freesurfer": dst / "derivatives" / "freesurfer"}
