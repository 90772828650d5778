"""The demo dataset: valid BIDS, indexed by pybids, surfaces and volume moved together."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest
from nibabel.freesurfer import io as fsio
from scipy import ndimage

from cor2vox_bids import demodata


def test_pybids_indexes_demo(demo_data):
    from bids import BIDSLayout

    layout = BIDSLayout(str(demo_data["bids"]), validate=True)
    assert layout.get_subjects() == ["01", "02"]
    assert len(layout.get(suffix="T1w", extension=".nii.gz")) == 2
    desc = json.loads((demo_data["bids"] / "dataset_description.json").read_text())
    assert "fsaverage5" in desc["GeneratedBy"][0]["Description"] and "modified" in desc["GeneratedBy"][0]["Description"]
    assert "FreeSurfer" in (demo_data["bids"] / "LICENSE").read_text()
    site2 = BIDSLayout(str(demo_data["bids_site2"]), validate=True)
    assert site2.get_subjects() == ["01", "02"]


@pytest.mark.skipif(shutil.which("bids-validator") is None,
                    reason="npm bids-validator not installed (make test installs it)")
@pytest.mark.parametrize("which", ["bids", "bids_site2"])
def test_bids_validator_accepts_raw(demo_data, which):
    res = subprocess.run(["bids-validator", str(demo_data[which]), "--json", "--ignoreNiftiHeaders"],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(res.stdout)
    errors = report["issues"]["errors"]
    assert errors == [], [e["key"] for e in errors]


def test_deterministic_for_seed():
    a = demodata.random_deformation(np.random.default_rng([3, 1]))
    b = demodata.random_deformation(np.random.default_rng([3, 1]))
    c = demodata.random_deformation(np.random.default_rng([4, 1]))
    assert np.array_equal(a.disp, b.disp) and np.array_equal(a.matrix, b.matrix)
    assert not np.allclose(a.disp, c.disp)


def test_deformation_is_invertible_and_smooth():
    phi = demodata.random_deformation(np.random.default_rng(0))
    grads = np.gradient(phi.disp, phi.spacing, axis=(1, 2, 3))
    # fixed-point inverse converges when |A^-1| * Lip(u) < 1; we keep Lip(u) well below that
    assert max(np.abs(g).max() for g in grads) < 0.5
    pts = np.random.default_rng(1).uniform(-80, 80, (1000, 3))
    assert np.abs(phi.inverse(phi.forward(pts)) - pts).max() < 1e-6


def _sample(img, points_scanner):
    inv = np.linalg.inv(img.affine)
    idx = points_scanner @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(np.asarray(img.dataobj, dtype=np.float32), idx.T, order=1)


def _normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = np.zeros_like(v)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def test_image_agrees_with_its_own_surfaces(demo_data):
    """The rendered T1w carries the participant's cortex: WM > GM > CSF across the participant's own surfaces.

    Sampled 1.5 mm inside white (WM), at mid-thickness (GM) and 1.5 mm outside pial (CSF) along the white→pial
    direction, at vertices where the cortex is at least 2 mm thick. A shift of the surfaces by a few mm (or another
    participant's surfaces) breaks the ordering at many vertices; here at least 90 % of vertices keep it and the
    GM level sits between WM and CSF.
    """
    fs = demo_data["freesurfer"] / "sub-01"
    orig = nib.load(str(fs / "mri" / "orig.mgz"))
    to_scanner = orig.header.get_vox2ras() @ np.linalg.inv(orig.header.get_vox2ras_tkr())
    t1w = nib.load(str(demo_data["bids"] / "sub-01" / "anat" / "sub-01_T1w.nii.gz"))
    white, faces = fsio.read_geometry(str(fs / "surf" / "lh.white"))
    pial, _ = fsio.read_geometry(str(fs / "surf" / "lh.pial"))
    thick = np.linalg.norm(pial - white, axis=1)
    keep = thick > 2.0
    direction = (pial - white) / np.maximum(thick, 1e-9)[:, None]

    def at(points):
        return _sample(t1w, points[keep] @ to_scanner[:3, :3].T + to_scanner[:3, 3])

    wm, gm, csf = at(white - 1.5 * direction), at(0.5 * (white + pial)), at(pial + 1.5 * direction)
    ordered = (wm > gm) & (gm > csf)
    assert ordered.mean() > 0.9, ordered.mean()
    assert np.median(wm) > np.median(gm) + 15 and np.median(gm) > np.median(csf) + 10
    # and the same check with the other participant's surfaces fails (the image is this participant's)
    other = demo_data["freesurfer"] / "sub-02"
    w2, _ = fsio.read_geometry(str(other / "surf" / "lh.white"))
    assert np.abs(w2 - white).max() > 2.0


def test_participants_differ_in_regional_thickness(demo_data):
    """Thickness changes by a smooth regional factor (|f| <= THICKNESS_CHANGE), never through white."""
    tpl = demodata.load_template()
    rng = np.random.default_rng(5)
    f = demodata.thickness_factor(tpl.spheres["lh"], rng)
    assert np.isclose(np.abs(f).max(), demodata.THICKNESS_CHANGE)
    white, faces = tpl.surfaces[("lh", "white")]
    pial = demodata.scale_thickness(white, tpl.surfaces[("lh", "pial")][0], f)
    ratio = np.linalg.norm(pial - white, axis=1) / np.maximum(
        np.linalg.norm(tpl.surfaces[("lh", "pial")][0] - white, axis=1), 1e-9)
    moving = np.linalg.norm(tpl.surfaces[("lh", "pial")][0] - white, axis=1) > 0.1
    assert np.allclose(ratio[moving], 1 + f[moving])
    # smooth: neighbouring vertices (edges ~4 mm) differ by far less than the range
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert np.abs(f[edges[:, 0]] - f[edges[:, 1]]).max() < 0.25 * THICK_RANGE
    with pytest.raises(ValueError, match="through the white"):
        demodata.scale_thickness(white, pial, np.full(len(white), -1.0))
    t1 = fsio.read_morph_data(str(demo_data["freesurfer"] / "sub-01" / "surf" / "lh.thickness"))
    t2 = fsio.read_morph_data(str(demo_data["freesurfer"] / "sub-02" / "surf" / "lh.thickness"))
    assert np.corrcoef(t1, t2)[0, 1] < 0.995


THICK_RANGE = 2 * demodata.THICKNESS_CHANGE


def test_thickness_recomputed(demo_data):
    fs = demo_data["freesurfer"] / "sub-02"
    thick = fsio.read_morph_data(str(fs / "surf" / "rh.thickness"))
    assert thick.shape == (10242,) and 0 <= thick.min() and thick.max() <= 5.0 + 1e-6
    tpl_thick = fsio.read_morph_data(str(demodata.fsaverage5_dir() / "surf" / "rh.thickness"))
    assert not np.allclose(thick, tpl_thick)
    assert 1.5 < np.median(thick) < 3.5


def test_missing_template_is_named(monkeypatch):
    from cor2vox_bids.errors import MissingInputError
    from cor2vox_bids.geometry import atlas

    monkeypatch.setattr(atlas, "FS_PACKAGE", "no_such_package_xyz")
    with pytest.raises(MissingInputError, match="cor2vox-bids\\[demo\\]"):
        demodata.fsaverage5_dir()


def test_site2_t1w_is_another_contrast():
    """Site 2's transfer moves GM within the CSF-WM range (GM/WM and CSF/WM as drawn), keeps WM > GM > CSF, and
    the same generator state gives the same image."""
    rng = np.random.default_rng(0)
    levels = {"wm": 110.0, "cortex": 110.0 * 0.66, "csf": 110.0 * 0.27}
    tissue = rng.integers(0, 3, (24, 24, 24))  # voxels of the three tissues spread evenly (same bias on average)
    clean = np.choose(tissue, [levels["csf"], levels["cortex"], levels["wm"]]).astype(np.float32)
    state = np.random.default_rng(7).bit_generator.state
    gen = np.random.default_rng()
    gen.bit_generator.state = state
    vol, params = demodata.site2_t1w(clean, levels, gen)
    gen.bit_generator.state = state
    again, _ = demodata.site2_t1w(clean, levels, gen)
    assert vol.dtype == np.int16 and np.array_equal(vol, again)
    assert demodata.SITE2_GM_WM[0] <= params["GMtoWMRatio"] <= demodata.SITE2_GM_WM[1]
    assert demodata.SITE2_CSF_WM[0] <= params["CSFtoWMRatio"] <= demodata.SITE2_CSF_WM[1]
    med = [float(np.median(vol[tissue == k])) for k in range(3)]
    assert med[2] > med[1] > med[0]
    assert abs(med[1] / med[2] - params["GMtoWMRatio"]) < 0.02
    assert abs(med[0] / med[2] - params["CSFtoWMRatio"]) < 0.02
    # the relative position of GM between CSF and WM, which per-image normalisation keeps, moves down by > 0.1
    site1 = (levels["cortex"] - levels["csf"]) / (levels["wm"] - levels["csf"])
    assert (med[1] - med[0]) / (med[2] - med[0]) < site1 - 0.1


def test_site2_images_have_another_contrast(demo_data):
    """In the built datasets, GM sits lower between CSF and WM in site 2's T1w of a participant than in site 1's,
    sampled at the participant's own surfaces, and the sidecar records how the image was made."""
    fs = demo_data["freesurfer"] / "sub-01"
    orig = nib.load(str(fs / "mri" / "orig.mgz"))
    to_scanner = orig.header.get_vox2ras() @ np.linalg.inv(orig.header.get_vox2ras_tkr())
    white, _ = fsio.read_geometry(str(fs / "surf" / "lh.white"))
    pial, _ = fsio.read_geometry(str(fs / "surf" / "lh.pial"))
    thick = np.linalg.norm(pial - white, axis=1)
    keep = thick > 2.0
    direction = (pial - white) / np.maximum(thick, 1e-9)[:, None]
    ratio = {}
    for which in ("bids", "bids_site2"):
        img = nib.load(str(demo_data[which] / "sub-01" / "anat" / "sub-01_T1w.nii.gz"))

        def at(points, img=img):
            return _sample(img, points[keep] @ to_scanner[:3, :3].T + to_scanner[:3, 3])

        wm, gm, csf = at(white - 1.5 * direction), at(0.5 * (white + pial)), at(pial + 1.5 * direction)
        assert ((wm > gm) & (gm > csf)).mean() > 0.8
        ratio[which] = (np.median(gm) - np.median(csf)) / (np.median(wm) - np.median(csf))
    assert ratio["bids_site2"] < ratio["bids"] - 0.08, ratio
    sidecar = json.loads((demo_data["bids_site2"] / "sub-01" / "anat" / "sub-01_T1w.json").read_text())
    assert sidecar["SimulatedSite"]["BiasFieldStrength"] == demodata.SITE2_BIAS_STRENGTH
