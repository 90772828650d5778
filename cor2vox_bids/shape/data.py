"""Training data of the shape model: the template, and participants brought onto its mesh.

The template is a FreeSurfer subject (``fsaverage5`` from the installed FreeSurfer data wheels by default, or
any subject folder) with ``surf/?h.{white,pial,sphere.reg}``, ``label/?h.aparc.annot`` and ``mri/orig.mgz``.
A participant's white and pial surfaces and thickness are carried onto the template's vertices through
``?h.sphere.reg`` (:mod:`.sphere`); a participant already on the template's mesh (same faces and sphere) is
taken as is. Its mid-thickness surfaces (both hemispheres together) are then rigidly aligned to the
template's (rotation + translation, no scaling): pose is not shape.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import MissingInputError, MissingParticipantFileError, ModelError, SurfaceError, UsageError
from ..geometry import cortical_thickness, read_freesurfer_surface, read_gifti_surface, read_morph
from ..geometry.atlas import FS_PACKAGE
from .mesh import rigid_align
from .sphere import shares_mesh, sphere_resampling

LOGGER = logging.getLogger("cor2vox_bids.shape")
HEMIS = ("L", "R")
FS_HEMI = {"L": "lh", "R": "rh"}


@dataclass
class Template:
    """The template mesh: per hemisphere faces, sphere, white/pial/mid vertices (tkr RAS), annotation."""

    name: str
    root: Path
    faces: dict[str, np.ndarray]
    sphere: dict[str, np.ndarray]
    white: dict[str, np.ndarray]
    pial: dict[str, np.ndarray]
    annot: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]
    orig_affine: np.ndarray
    orig_shape: tuple[int, int, int]

    def mid(self, hemi: str) -> np.ndarray:
        """Mid-thickness vertices of one hemisphere."""
        return 0.5 * (self.white[hemi] + self.pial[hemi])

    def describe(self) -> dict[str, Any]:
        """JSON-able description stored with the model."""
        return {
            "Name": self.name,
            "NVertices": int(len(self.sphere["L"])),
            "OrigAffine": np.asarray(self.orig_affine).round(6).tolist(),
            "OrigShape": [int(s) for s in self.orig_shape],
            "Frame": "FreeSurfer tkr RAS of the template's mri/orig.mgz",
        }


def installed_subject(name: str) -> Path | None:
    """Folder of a FreeSurfer subject (``fsaverage5``, ``fsaverage``...) from the installed data wheels."""
    spec = importlib.util.find_spec(FS_PACKAGE)
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(loc) / "freesurfer" / "subjects" / name
        if candidate.is_dir():
            return candidate
    return None


def resolve_template(template: str) -> Path:
    """A template name (installed subject) or a path to a FreeSurfer subject folder."""
    path = Path(template)
    if path.is_dir():
        return path
    found = installed_subject(template)
    if found is None:
        hint = " (install it with: pip install 'cor2vox-bids[demo]')" if template == "fsaverage5" else ""
        raise MissingInputError(f"template subject {template!r} is neither a folder nor installed{hint}", template)
    return found


def load_template(template: str = "fsaverage5") -> Template:
    """Read the template subject's surfaces, spheres, annotations and orig.mgz header.

    The template concerns the whole run: a missing file exits 66, an unreadable one 65 (file named).
    """
    root = resolve_template(template)
    try:
        return _read_template(root)
    except MissingParticipantFileError as exc:
        raise MissingInputError(f"template file missing: {exc.message}", exc.path) from None
    except SurfaceError as exc:
        raise ModelError(f"unusable template file: {exc.message}", exc.path) from None


def _read_template(root: Path) -> Template:
    faces, sphere, white, pial, annot = {}, {}, {}, {}, {}
    for h, fs in FS_HEMI.items():
        w = read_freesurfer_surface(root / "surf" / f"{fs}.white")
        p = read_freesurfer_surface(root / "surf" / f"{fs}.pial")
        s = read_freesurfer_surface(root / "surf" / f"{fs}.sphere.reg")
        if not (w.n_vertices == p.n_vertices == s.n_vertices) or not np.array_equal(w.faces, s.faces):
            raise SurfaceError("template white, pial and sphere.reg are not one mesh", s.path)
        annot_path = root / "label" / f"{fs}.aparc.annot"
        if not annot_path.is_file():
            raise MissingParticipantFileError("the template has no DK annotation", annot_path)
        try:
            labels, ctab, names = nib.freesurfer.read_annot(str(annot_path))
        except Exception as exc:  # nibabel raises many types on corrupt files
            raise SurfaceError(f"unreadable annotation ({exc})", annot_path) from None
        faces[h], sphere[h], white[h], pial[h] = w.faces, s.vertices, w.vertices, p.vertices
        annot[h] = (
            np.asarray(labels),
            np.asarray(ctab),
            [n.decode() if isinstance(n, bytes) else str(n) for n in names],
        )
    orig = root / "mri" / "orig.mgz"
    if not orig.is_file():
        raise MissingParticipantFileError("the template has no mri/orig.mgz (needed for the frame)", orig)
    try:
        img = nib.load(str(orig))
        affine, shape = np.asarray(img.affine), tuple(int(s) for s in img.shape[:3])
    except Exception as exc:
        raise SurfaceError(f"unreadable volume ({exc})", orig) from None
    name = root.name
    return Template(name, root, faces, sphere, white, pial, annot, affine, shape)


@dataclass
class SourceHemi:
    """One hemisphere of a participant as files: white, pial, sphere.reg, thickness (optional)."""

    white: Path
    pial: Path
    sphere: Path | None
    thickness: Path | None
    gifti: bool = False


@dataclass
class ParticipantOnTemplate:
    """A participant brought onto the template: per hemisphere mid (V, 3) and thickness (V,)."""

    key: str
    mid: dict[str, np.ndarray]
    thickness: dict[str, np.ndarray]
    resampled: bool
    rotation_deg: float
    translation_mm: float
    rms_before_mm: float
    rms_after_mm: float

    def features(self, hemi: str) -> np.ndarray:
        """The feature row ``[x, y, z, thickness]`` per vertex, flattened."""
        return np.column_stack([self.mid[hemi], self.thickness[hemi]]).reshape(-1)


def _read_surface(path: Path, gifti: bool) -> tuple[np.ndarray, np.ndarray]:
    surf = read_gifti_surface(path) if gifti else read_freesurfer_surface(path)
    return surf.vertices, surf.faces


def _read_thickness(path: Path, gifti: bool) -> np.ndarray:
    if not gifti:
        return read_morph(path).astype(np.float64)
    try:
        return np.asarray(nib.load(str(path)).darrays[0].data, dtype=np.float64).ravel()
    except Exception as exc:
        raise SurfaceError(f"unreadable GIFTI thickness ({exc})", path) from None


def hemisphere_on_template(
    files: SourceHemi, template: Template, hemi: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """White, pial (tkr/scanner mm) and thickness of one hemisphere on the template's vertices."""
    wv, wf = _read_surface(files.white, files.gifti)
    pv, pf = _read_surface(files.pial, files.gifti)
    if len(wv) != len(pv) or not np.array_equal(wf, pf):
        raise SurfaceError(f"white ({len(wv)} vertices) and pial ({len(pv)}) are not one mesh", files.pial)
    if files.thickness is not None:
        thick = _read_thickness(files.thickness, files.gifti)
        if len(thick) != len(wv):
            raise SurfaceError(f"thickness has {len(thick)} values for {len(wv)} vertices", files.thickness)
    else:
        thick = cortical_thickness(wv, wf, pv, pf).astype(np.float64)
    if not (np.all(np.isfinite(wv)) and np.all(np.isfinite(pv)) and np.all(np.isfinite(thick))):
        raise SurfaceError("non-finite vertex coordinates or thickness values", files.white)
    tpl_sphere, tpl_faces = template.sphere[hemi], template.faces[hemi]
    if files.sphere is None:
        if len(wv) == len(tpl_sphere) and np.array_equal(wf, tpl_faces):
            return wv, pv, thick, False  # the template's own mesh, no sphere needed
        raise MissingParticipantFileError(
            "missing sphere.reg (needed to bring the surfaces onto the template)",
            files.white.parent / f"{FS_HEMI[hemi]}.sphere.reg",
        )
    sv, sf = _read_surface(files.sphere, files.gifti)
    if len(sv) != len(wv) or not np.array_equal(sf, wf):
        raise SurfaceError(
            f"sphere.reg ({len(sv)} vertices) is not the mesh of the white surface ({len(wv)})", files.sphere
        )
    if shares_mesh(sv, sf, tpl_sphere, tpl_faces):
        return wv, pv, thick, False
    try:
        res = sphere_resampling(sv, sf, tpl_sphere)
    except ValueError as exc:
        raise SurfaceError(f"unusable sphere ({exc})", files.sphere) from None
    if res.n_fallback > 0.001 * len(tpl_sphere):
        raise SurfaceError(
            f"{res.n_fallback} template vertices fall in no triangle of this sphere (folded or not a sphere.reg)",
            files.sphere,
        )
    return res.apply(wv), res.apply(pv), res.apply(thick), True


def participant_on_template(key: str, hemis: dict[str, SourceHemi], template: Template) -> ParticipantOnTemplate:
    """Both hemispheres on the template mesh, rigid pose removed (joint Kabsch onto the template's mid)."""
    mid, thick, resampled = {}, {}, False
    for h in HEMIS:
        w, p, t, r = hemisphere_on_template(hemis[h], template, h)
        mid[h], thick[h] = 0.5 * (w + p), t
        resampled |= r
    both = np.vstack([mid["L"], mid["R"]])
    ref = np.vstack([template.mid("L"), template.mid("R")])
    rot, trans = rigid_align(both, ref)
    aligned = both @ rot.T + trans
    n_l = len(mid["L"])
    angle = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))
    rms = lambda a: float(np.sqrt(np.mean(np.sum((a - ref) ** 2, axis=1))))  # noqa: E731
    return ParticipantOnTemplate(
        key,
        {"L": aligned[:n_l], "R": aligned[n_l:]},
        thick,
        resampled,
        angle,
        float(np.linalg.norm(trans + (rot - np.eye(3)) @ both.mean(axis=0))),
        rms(both),
        rms(aligned),
    )


def normalise_label(label: str) -> str:
    """``sub-01`` or ``01`` → ``01``."""
    return label[4:] if label.startswith("sub-") else label


def discover(
    bids_dir: Path, fs_subjects_dir: Path | None, smriprep: Path | None, labels: list[str] | None
) -> tuple[list[tuple[str, dict[str, SourceHemi]]], list[tuple[str, str]]]:
    """Participants with surfaces: (key, files) to use and (key, reason) left out; whole-run problems raise."""
    from ..bids.inputs import freesurfer_inputs, gifti_inputs, make_layout, select_participants, select_sessions

    layout = make_layout(bids_dir, validate=False)
    subjects = select_participants(layout, [normalise_label(x) for x in labels] if labels else None)
    if fs_subjects_dir is None and smriprep is None:
        default = bids_dir / "derivatives" / "freesurfer"
        if not default.is_dir():
            raise MissingInputError(
                "no surfaces source: give --fs-subjects-dir or --derivatives smriprep=PATH "
                "(BIDS_DIR/derivatives/freesurfer does not exist)",
                default,
            )
        fs_subjects_dir = default
    for folder in (fs_subjects_dir, smriprep):
        if folder is not None and not folder.is_dir():
            raise MissingInputError("the surfaces folder does not exist", folder)
    ok, failed = [], []
    for subject in subjects:
        sessions = select_sessions(layout, subject, None)
        session = sessions[0] if sessions else None
        if len(sessions) > 1:
            LOGGER.info("sub-%s: %d sessions, using the first (%s)", subject, len(sessions), session)
        key = f"sub-{subject}"
        try:
            if smriprep is not None:
                found = gifti_inputs(smriprep, subject, session)
                hemis = {}
                for h, hf in found.items():
                    anat = hf.white.parent
                    stem = hf.white.name.split("_hemi-")[0]
                    sphere = anat / f"{stem}_hemi-{h}_desc-reg_sphere.surf.gii"
                    thick = anat / f"{stem}_hemi-{h}_thickness.shape.gii"
                    hemis[h] = SourceHemi(
                        hf.white,
                        hf.pial,
                        sphere if sphere.is_file() else None,
                        thick if thick.is_file() else None,
                        gifti=True,
                    )
            else:
                _, found, _ = freesurfer_inputs(fs_subjects_dir, subject, session)
                hemis = {h: SourceHemi(hf.white, hf.pial, hf.sphere, hf.thickness) for h, hf in found.items()}
        except MissingParticipantFileError as exc:
            failed.append((key, str(exc)))
            continue
        ok.append((key, hemis))
    if not subjects:
        raise UsageError("no participants selected", bids_dir)
    return ok, failed
