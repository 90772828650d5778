"""DK labels from each input form: the subject's annotation, sphere.reg + fsaverage5, sMRIPrep's aparcaseg."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cor2vox_bids.errors import MissingInputError
from cor2vox_bids.geometry.dk_labels import (
    APARC_NAMES,
    SOURCE_ANNOT,
    SOURCE_APARCASEG,
    SOURCE_SPHERE,
    dk_labels,
    find_dk_sources,
    labels_from_annot,
    labels_from_aparcaseg,
    labels_from_sphere,
)
from cor2vox_bids.geometry.surfaces import read_annotation
from cor2vox_bids.qc.participant import hemisphere_regions
from cor2vox_bids.qc.regions import QC_TSV_DICTIONARY, region_rows


@pytest.fixture(scope="module")
def fsavg():
    from cor2vox_bids.demodata import fsaverage5_dir

    try:
        root = fsaverage5_dir()
    except MissingInputError:
        pytest.skip("fsaverage5 (demo extra) not installed")
    white, faces = nib.freesurfer.read_geometry(str(root / "surf" / "lh.white"))
    pial, _ = nib.freesurfer.read_geometry(str(root / "surf" / "lh.pial"))
    sphere, _ = nib.freesurfer.read_geometry(str(root / "surf" / "lh.sphere.reg"))
    labels, names = read_annotation(root / "label" / "lh.aparc.annot")
    return root, white, pial, faces, sphere, np.asarray(labels), [str(n) for n in names]


def test_aparc_names_are_freesurfers_colour_table(fsavg):
    *_, names = fsavg
    assert list(APARC_NAMES) == names and len(names) == 36


def test_annotation_source(fsavg):
    root, white, *_ = fsavg
    got = labels_from_annot(root / "label" / "lh.aparc.annot", len(white))
    assert got.source == SOURCE_ANNOT and got.labels.shape == (len(white),)
    with pytest.raises(ValueError, match="annotation has"):
        labels_from_annot(root / "label" / "lh.aparc.annot", len(white) + 1)


def test_sphere_reg_source_transfers_fsaverage_labels(fsavg):
    """fsaverage5's own sphere gives back its annotation exactly; a sphere rotated by 2° (a registration
    that is slightly off) still agrees on most vertices."""
    root, white, _, _, sphere, labels, _ = fsavg
    same = labels_from_sphere(sphere, "L", root)
    assert same.source == SOURCE_SPHERE
    np.testing.assert_array_equal(same.labels, labels)
    rotated = sphere @ Rotation.from_rotvec([0.0, 0.0, np.deg2rad(2.0)]).as_matrix().T
    assert np.mean(labels_from_sphere(rotated, "L", root).labels == labels) > 0.85


def test_aparcaseg_source_samples_mid_thickness(fsavg):
    """A 1 mm aparc+aseg painted with each vertex's label (1000 + index) at its mid-thickness voxel, WM (2)
    elsewhere: sampling recovers the labels (voxels shared by two vertices keep one of them)."""
    _, white, pial, _, _, labels, _ = fsavg
    mid = 0.5 * (white + pial)
    lo = np.floor(mid.min(0)) - 3
    aff = np.eye(4)
    aff[:3, 3] = lo
    ijk = np.rint(mid - lo).astype(int)
    vol = np.full(tuple(ijk.max(0) + 4), 2, dtype=np.int16)
    order = np.argsort(labels)  # deterministic overwrite order
    vol[ijk[order, 0], ijk[order, 1], ijk[order, 2]] = 1000 + np.maximum(labels[order], 0)
    got = labels_from_aparcaseg(vol, aff, white, pial, "L")
    assert got.source == SOURCE_APARCASEG and got.names == list(APARC_NAMES)
    assert np.mean(got.labels == np.maximum(labels, 0)) > 0.9
    # right hemisphere labels (2000 + i) are not this hemisphere's: every vertex falls back to its neighbours
    right = labels_from_aparcaseg(np.where(vol >= 1000, vol + 1000, vol), aff, white, pial, "L")
    assert np.all(right.labels == -1)


def test_sources_found_next_to_the_surfaces(tmp_path):
    fs = tmp_path / "sub-01"
    (fs / "surf").mkdir(parents=True)
    (fs / "label").mkdir()
    for name in ("surf/lh.white", "surf/lh.sphere.reg"):
        (fs / name).write_bytes(b"")
    assert set(find_dk_sources(fs / "surf" / "lh.white", "L")) == {"sphere_reg"}
    (fs / "label" / "lh.aparc.annot").write_bytes(b"")
    assert set(find_dk_sources(fs / "surf" / "lh.white", "L")) == {"annot", "sphere_reg"}
    anat = tmp_path / "smriprep" / "sub-02" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-02_hemi-L_white.surf.gii").write_bytes(b"")
    assert find_dk_sources(anat / "sub-02_hemi-L_white.surf.gii", "L") == {}
    (anat / "sub-02_desc-aparcaseg_dseg.nii.gz").write_bytes(b"")
    assert find_dk_sources(anat / "sub-02_hemi-L_white.surf.gii", "L") == {
        "aparcaseg": anat / "sub-02_desc-aparcaseg_dseg.nii.gz"}
    assert dk_labels("L", np.zeros((3, 3)), np.zeros((3, 3)), {}) is None


def test_hemisphere_without_annotation_uses_sphere_reg(fsavg, tmp_path):
    """The QC's order: the hemisphere's own labels, else the files beside its white surface; the TSV says which."""
    root, white, pial, faces, sphere, labels, names = fsavg
    surf = tmp_path / "sub-01" / "surf"
    surf.mkdir(parents=True)
    nib.freesurfer.write_geometry(str(surf / "lh.sphere.reg"), sphere, faces)
    w = SimpleNamespace(vertices=white, faces=faces, path=surf / "lh.white")
    p = SimpleNamespace(vertices=pial, faces=faces, path=surf / "lh.pial")
    hemi = SimpleNamespace(hemi="L", white=w, pial=p, labels=None, names=None)
    lab, nm, source = hemisphere_regions(hemi)
    assert source == SOURCE_SPHERE and nm == names
    np.testing.assert_array_equal(lab, labels)
    own = SimpleNamespace(hemi="L", white=w, pial=p, labels=labels, names=names)
    assert hemisphere_regions(own)[2] == SOURCE_ANNOT
    bare = SimpleNamespace(hemi="L", white=SimpleNamespace(vertices=white, faces=faces, path=None), pial=p,
                           labels=None, names=None)
    assert hemisphere_regions(bare) == (None, None, "none")
    rows = region_rows("L", np.ones(len(white)), np.ones(len(white)), None, lab, nm, source=source)
    assert {r["region_source"] for r in rows} == {SOURCE_SPHERE}
    assert SOURCE_SPHERE in QC_TSV_DICTIONARY["region_source"]["Levels"]
    assert Path(surf / "lh.sphere.reg").is_file()
