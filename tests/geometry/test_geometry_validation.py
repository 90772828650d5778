"""Every validation error, each raised by a deliberately broken file."""

from __future__ import annotations

import copy

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.errors import SurfaceError
from cor2vox_bids.geometry import (
    Hemisphere,
    Surface,
    load_freesurfer_hemisphere,
    load_gifti_hemisphere,
    validate_hemisphere,
    validate_pair,
)
from cor2vox_bids.geometry.validation import signed_volume
from meshes import icosphere, write_subject


@pytest.fixture
def subject(tmp_path):
    return write_subject(tmp_path / "sub")


def _load(sub):
    return load_freesurfer_hemisphere(sub, "L"), load_freesurfer_hemisphere(sub, "R")


def test_valid_subject_passes(subject):
    sub, t1, _ = subject
    lh, rh = _load(sub)
    assert validate_pair(lh, rh, t1) == []
    assert validate_hemisphere(lh, t1) == []


def test_nan_vertex(subject):
    sub, _, _ = subject
    v, f = nib.freesurfer.read_geometry(str(sub / "surf" / "lh.pial"))
    v[7, 1] = np.nan
    nib.freesurfer.write_geometry(str(sub / "surf" / "lh.pial"), v, f)
    with pytest.raises(SurfaceError, match="NaN") as err:
        validate_hemisphere(load_freesurfer_hemisphere(sub, "L"))
    assert err.value.path == sub / "surf" / "lh.pial" and "vertex 7" in str(err.value)


def test_face_index_out_of_range(subject):
    sub, _, _ = subject
    v, f = nib.freesurfer.read_geometry(str(sub / "surf" / "lh.white"))
    f[3, 2] = len(v) + 5
    nib.freesurfer.write_geometry(str(sub / "surf" / "lh.white"), v, f)
    with pytest.raises(SurfaceError, match="out of range") as err:
        validate_hemisphere(load_freesurfer_hemisphere(sub, "L"))
    assert err.value.path == sub / "surf" / "lh.white"


def test_white_pial_count_mismatch(subject):
    sub, _, _ = subject
    v, f = icosphere(3, 24.0, (-32.0, 0, 0))
    nib.freesurfer.write_geometry(str(sub / "surf" / "lh.pial"), v, f.astype(np.int32))
    with pytest.raises(SurfaceError, match="162 vertices but the pial surface has 642") as err:
        validate_hemisphere(load_freesurfer_hemisphere(sub, "L"))
    assert err.value.path == sub / "surf" / "lh.pial"


def test_swapped_hemispheres(tmp_path):
    sub, t1, _ = write_subject(tmp_path / "sub", shift_l=(32.0, 0, 0), shift_r=(-32.0, 0, 0))
    lh, rh = _load(sub)
    with pytest.raises(SurfaceError, match="swapped") as err:
        validate_pair(lh, rh)
    assert err.value.path == sub / "surf" / "lh.white"
    # one hemisphere alone: judged against the centre of the T1w
    with pytest.raises(SurfaceError, match="swapped"):
        validate_hemisphere(lh, t1)


def test_c_ras_shift_freesurfer_and_gifti(subject, tmp_path):
    sub, t1, c_ras = subject
    lh, _ = _load(sub)
    tkr = copy.deepcopy(lh)  # surfaces left in tkr RAS: shifted by -c_ras
    for s in (tkr.white, tkr.pial):
        s.vertices = s.vertices - c_ras
    with pytest.raises(SurfaceError, match="c_ras") as err:
        validate_hemisphere(tkr, t1)
    assert "mri/orig.mgz" in str(err.value) and err.value.path == sub / "surf" / "lh.pial"
    # GIFTI written in tkr RAS (a common mistake): the message says GIFTI must be scanner RAS
    paths = []
    for kind, surf in (("white", tkr.white), ("pial", tkr.pial)):
        img = nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(surf.vertices.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(surf.faces.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
        ])
        paths.append(tmp_path / f"sub-01_hemi-L_{kind}.surf.gii")
        nib.save(img, str(paths[-1]))
    with pytest.raises(SurfaceError, match="GIFTI surfaces must be in scanner RAS"):
        validate_hemisphere(load_gifti_hemisphere(*paths), t1)


def test_outside_field_of_view(subject):
    sub, t1, _ = subject
    lh, _ = _load(sub)
    far = copy.deepcopy(lh)
    for s in (far.white, far.pial):
        s.vertices = s.vertices + [0.0, 0.0, 150.0]
    with pytest.raises(SurfaceError, match="outside the T1w field of view"):
        validate_hemisphere(far, t1)


def test_inward_faces_are_flipped_with_warning(subject):
    sub, _, _ = subject
    v, f = nib.freesurfer.read_geometry(str(sub / "surf" / "lh.white"))
    nib.freesurfer.write_geometry(str(sub / "surf" / "lh.white"), v, f[:, ::-1].copy())
    lh = load_freesurfer_hemisphere(sub, "L")
    assert signed_volume(lh.white.vertices, lh.white.faces) < 0
    warnings = validate_hemisphere(lh)
    assert len(warnings) == 1 and "fixed" in warnings[0] and "lh.white" in warnings[0]
    # volume of the 162-vertex icosphere of radius 20: positive after the flip
    assert signed_volume(lh.white.vertices, lh.white.faces) == pytest.approx(4 / 3 * np.pi * 20**3, rel=0.1)


def test_mixed_orientation_is_an_error(subject):
    sub, _, _ = subject
    v, f = nib.freesurfer.read_geometry(str(sub / "surf" / "lh.pial"))
    f[:10] = f[:10, ::-1]
    nib.freesurfer.write_geometry(str(sub / "surf" / "lh.pial"), v, f)
    with pytest.raises(SurfaceError, match="inconsistently wound") as err:
        validate_hemisphere(load_freesurfer_hemisphere(sub, "L"))
    assert err.value.path == sub / "surf" / "lh.pial"


def test_label_count_mismatch():
    v, f = icosphere(1, 10.0, (-20.0, 0, 0))
    h = Hemisphere("L", Surface(v, f), Surface(v * 1.2, f), thickness=np.ones(5))
    with pytest.raises(SurfaceError, match="thickness values have 5 entries"):
        validate_hemisphere(h)


def test_real_fsaverage5_is_valid(fsaverage5):
    t1 = nib.load(str(fsaverage5 / "mri" / "T1.mgz"))
    lh, rh = (load_freesurfer_hemisphere(fsaverage5, h) for h in "LR")
    assert validate_pair(lh, rh, t1) == []
