"""Reading FreeSurfer/GIFTI surfaces, annotations, morphometry; tkr RAS -> scanner RAS."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.errors import MissingParticipantFileError, SurfaceError
from cor2vox_bids.geometry import (
    DK_REGIONS,
    load_freesurfer_hemisphere,
    load_gifti_hemisphere,
    read_annotation,
    read_freesurfer_surface,
    read_gifti_surface,
    read_morph,
    region_table,
    tkr_to_scanner_matrix,
)
from meshes import icosphere, write_subject


def test_tkr_to_scanner_adds_c_ras_and_round_trips(tmp_path):
    sub, img, c_ras = write_subject(tmp_path / "sub")
    m = tkr_to_scanner_matrix(sub / "mri" / "orig.mgz")
    np.testing.assert_allclose(m[:3, :3], np.eye(3), atol=1e-6)  # same axes, pure translation
    np.testing.assert_allclose(m[:3, 3], c_ras, atol=1e-4)
    np.testing.assert_allclose(tkr_to_scanner_matrix(img), m)
    tkr = read_freesurfer_surface(sub / "surf" / "lh.white")
    scanner = read_freesurfer_surface(sub / "surf" / "lh.white", m)
    np.testing.assert_allclose(scanner.vertices - tkr.vertices, np.broadcast_to(c_ras, tkr.vertices.shape), atol=1e-4)
    back = scanner.transformed(np.linalg.inv(m))
    np.testing.assert_allclose(back.vertices, tkr.vertices, atol=1e-9)
    # a voxel's scanner coordinates equal its tkr coordinates mapped through the matrix
    vox = np.array([10.0, 50.0, 77.0, 1.0])
    tkr_pt = img.header.get_vox2ras_tkr() @ vox
    np.testing.assert_allclose(m @ tkr_pt, img.header.get_vox2ras() @ vox, atol=1e-4)


def test_load_freesurfer_hemisphere_with_fallback_to_t1(tmp_path):
    sub, img, c_ras = write_subject(tmp_path / "sub", write_orig=False)  # only mri/T1.mgz
    h = load_freesurfer_hemisphere(sub, "lh")
    assert h.hemi == "L" and h.white.n_vertices == h.pial.n_vertices == 162
    np.testing.assert_allclose(h.white.vertices.mean(0), c_ras + [-32, 0, 0], atol=1e-3)
    assert h.names == ["unknown", "precentral"] and h.labels.shape == (162,)
    np.testing.assert_array_equal(h.thickness, np.float32(4.0))
    assert h.white.path == sub / "surf" / "lh.white"


def test_missing_reference_volume_is_reported(tmp_path):
    sub, _, _ = write_subject(tmp_path / "sub")
    (sub / "mri" / "orig.mgz").unlink()
    (sub / "mri" / "T1.mgz").unlink()
    with pytest.raises(MissingParticipantFileError, match="orig.mgz"):
        load_freesurfer_hemisphere(sub, "R")


def test_truncated_and_missing_files_raise_with_path(tmp_path):
    sub, _, _ = write_subject(tmp_path / "sub")
    p = sub / "surf" / "lh.pial"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(SurfaceError) as err:
        read_freesurfer_surface(p)
    assert err.value.path == p and "truncated" in str(err.value)
    a = sub / "label" / "lh.aparc.annot"
    a.write_bytes(a.read_bytes()[:100])
    with pytest.raises(SurfaceError, match="annotation"):
        read_annotation(a)
    t = sub / "surf" / "lh.thickness"
    t.write_bytes(t.read_bytes()[:50])
    with pytest.raises(SurfaceError, match="morphometry"):
        read_morph(t)
    with pytest.raises(MissingParticipantFileError) as err:
        read_freesurfer_surface(sub / "surf" / "lh.nothere")
    assert err.value.path.name == "lh.nothere"


def test_gifti_round_trip_and_hemi_from_name(tmp_path):
    v, f = icosphere(2, 30.0)
    paths = {}
    for kind in ("white", "pial"):
        img = nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE"),
        ])
        paths[kind] = tmp_path / f"sub-01_hemi-R_{kind}.surf.gii"
        nib.save(img, str(paths[kind]))
    s = read_gifti_surface(paths["white"])
    np.testing.assert_allclose(s.vertices, v, atol=1e-5)  # float32 storage
    np.testing.assert_array_equal(s.faces, f)
    h = load_gifti_hemisphere(paths["white"], paths["pial"])
    assert h.hemi == "R"
    bad = tmp_path / "sub-01_hemi-L_smoothwm.surf.gii"
    bad.write_bytes(paths["white"].read_bytes()[:200])
    with pytest.raises(SurfaceError) as err:
        read_gifti_surface(bad)
    assert err.value.path == bad


def test_region_table_means_and_order(tmp_path):
    names = ["unknown", "precentral", "corpuscallosum", "insula", "bankssts"]
    labels = np.array([0, 1, 1, 3, 3, 3, 2, -1, 4])
    values = np.array([9.0, 2.0, 3.0, 1.0, 2.0, 6.0, 9.0, 9.0, np.nan])
    rows = region_table(labels, names, values, "L")
    assert [r["region"] for r in rows] == list(DK_REGIONS) and len(rows) == 34
    by = {r["region"]: r for r in rows}
    assert by["precentral"]["mean"] == 2.5 and by["precentral"]["n_vertices"] == 2
    assert by["insula"]["mean"] == 3.0 and by["insula"]["n_vertices"] == 3
    assert by["bankssts"]["n_vertices"] == 0 and np.isnan(by["bankssts"]["mean"])  # only a NaN value
    assert all(r["hemi"] == "L" for r in rows)
    with pytest.raises(SurfaceError):
        region_table(labels[:-1], names, values, "L")


def test_dk_regions_match_real_annotation(fsaverage5):
    labels, names = read_annotation(fsaverage5 / "label" / "lh.aparc.annot")
    assert len(names) == 36
    assert [n for n in names if n not in ("unknown", "corpuscallosum")] == list(DK_REGIONS)
    h = load_freesurfer_hemisphere(fsaverage5, "L")
    rows = region_table(h.labels, h.names, h.thickness, "L")
    assert all(r["n_vertices"] > 0 for r in rows)
    # DK mean thickness of fsaverage lies between 1.5 and 4 mm in every region
    assert all(1.5 < r["mean"] < 4.0 for r in rows)
