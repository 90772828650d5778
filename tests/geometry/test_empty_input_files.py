"""An empty (0-byte) surface, annotation, morphometry or volume file is named as empty, not with a reader's
internal message (nibabel's "not enough values to unpack ...")."""

from __future__ import annotations

import pytest

from cor2vox_bids.errors import SurfaceError
from cor2vox_bids.geometry import surfaces


@pytest.mark.parametrize("reader, name, words", [
    (surfaces.read_freesurfer_surface, "lh.pial", "empty FreeSurfer surface file (0 bytes)"),
    (surfaces.read_gifti_surface, "sub-01_hemi-L_pial.surf.gii", "empty GIFTI surface file (0 bytes)"),
    (surfaces.read_annotation, "lh.aparc.annot", "empty annotation file (0 bytes)"),
    (surfaces.read_morph, "lh.thickness", "empty morphometry file (0 bytes)"),
    (surfaces.tkr_to_scanner_matrix, "orig.mgz", "empty volume (0 bytes)"),
])
def test_empty_file_is_named_as_empty(tmp_path, reader, name, words):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(SurfaceError) as info:
        reader(path)
    assert str(info.value) == f"{path}: {words}"
