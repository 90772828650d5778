"""Reading cortical surfaces (FreeSurfer binary and GIFTI) and bringing them to scanner RAS.

FreeSurfer ``surf/?h.*`` files are in the tkr RAS frame of the conformed ``mri/orig.mgz``;
``tkr_to_scanner_matrix`` gives the 4x4 that maps them to scanner RAS (the frame of the T1w).
sMRIPrep GIFTI surfaces are already in scanner RAS. Every reader wraps nibabel's errors into
:class:`~cor2vox_bids.errors.SurfaceError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import MissingParticipantFileError, SurfaceError
from ._linalg import transform

HEMIS = ("L", "R")
_FS_PREFIX = {"L": "lh", "R": "rh"}


@dataclass
class Surface:
    """A triangle mesh in scanner RAS mm: vertices float64 (n, 3), faces int64 (m, 3)."""

    vertices: np.ndarray
    faces: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.path is not None:
            self.path = Path(self.path)

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return int(self.vertices.shape[0])

    def transformed(self, matrix: np.ndarray) -> Surface:
        """A copy with vertices mapped through the 4x4 ``matrix``."""
        return Surface(transform(self.vertices, matrix), self.faces.copy(), self.path)


@dataclass
class Hemisphere:
    """White and pial surfaces of one hemisphere with optional parcellation and thickness."""

    hemi: str
    white: Surface
    pial: Surface
    labels: np.ndarray | None = None
    names: list[str] | None = None
    thickness: np.ndarray | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """This hemisphere as named arrays (keys prefixed ``<hemi>_``): the one stored format."""
        p = f"{self.hemi}_"
        out = {p + "white_v": self.white.vertices, p + "white_f": self.white.faces,
               p + "pial_v": self.pial.vertices, p + "pial_f": self.pial.faces,
               p + "paths": np.asarray([str(self.white.path or ""), str(self.pial.path or "")], dtype=str)}
        if self.labels is not None:
            out[p + "labels"] = np.asarray(self.labels)
            out[p + "names"] = np.asarray(self.names, dtype=str)
        if self.thickness is not None:
            out[p + "thickness"] = np.asarray(self.thickness)
        return out

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], hemi: str) -> Hemisphere:
        """Inverse of :meth:`arrays` for hemisphere ``hemi``."""
        p = f"{hemi}_"
        paths = [Path(str(x)) if str(x) else None for x in data[p + "paths"]]
        return cls(hemi=hemi, white=Surface(data[p + "white_v"], data[p + "white_f"], paths[0]),
                   pial=Surface(data[p + "pial_v"], data[p + "pial_f"], paths[1]),
                   labels=np.asarray(data[p + "labels"]) if p + "labels" in data else None,
                   names=[str(n) for n in data[p + "names"]] if p + "names" in data else None,
                   thickness=np.asarray(data[p + "thickness"]) if p + "thickness" in data else None)

    def save(self, path: str | Path) -> Path:
        """Store this hemisphere in an ``.npz`` (see :func:`save_hemispheres` for several in one file)."""
        return save_hemispheres(path, [self])

    @classmethod
    def load(cls, path: str | Path, hemi: str | None = None) -> Hemisphere:
        """Read one hemisphere from an ``.npz`` written by :meth:`save` or :func:`save_hemispheres`."""
        hemis = load_hemispheres(path)
        if hemi is None and len(hemis) == 1:
            return hemis[0]
        match = [h for h in hemis if h.hemi == _hemi(hemi or "")]
        if not match:
            raise ValueError(f"no hemisphere {hemi!r} in {path}")
        return match[0]


def save_hemispheres(path: str | Path, hemispheres: Sequence[Hemisphere]) -> Path:
    """Store hemispheres (meshes, labels, names, thickness, source paths) in one uncompressed ``.npz``."""
    payload: dict[str, np.ndarray] = {}
    for h in hemispheres:
        payload.update(h.arrays())
    np.savez(path, **payload)
    return Path(path)


def load_hemispheres(path: str | Path) -> list[Hemisphere]:
    """The hemispheres stored by :func:`save_hemispheres`, in L, R order."""
    with np.load(path) as data:
        stored = {k: data[k] for k in data.files}
    return [Hemisphere.from_arrays(stored, h) for h in HEMIS if f"{h}_white_v" in stored]


def join_meshes(surfaces: Sequence[Surface]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh from several: stacked vertices and faces re-indexed into them ((n, 3) float64, (m, 3) int64)."""
    offsets = np.cumsum([0] + [s.n_vertices for s in surfaces[:-1]])
    vertices = np.concatenate([s.vertices for s in surfaces])
    faces = np.concatenate([s.faces + off for s, off in zip(surfaces, offsets)])
    return vertices, faces


def _require(path: Path, what: str) -> Path:
    """``path`` if it is a non-empty file; else the error naming it (missing, or an empty ``what``)."""
    if not path.is_file():
        raise MissingParticipantFileError("file not found", path=path)
    if path.stat().st_size == 0:
        raise SurfaceError(f"empty {what} (0 bytes)", path=path)
    return path


def _check_mesh_arrays(vertices: np.ndarray, faces: np.ndarray, path: Path) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise SurfaceError(f"vertices must be an (n, 3) array, got shape {vertices.shape}", path=path)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise SurfaceError(f"faces must be an (m, 3) array, got shape {faces.shape}", path=path)


def tkr_to_scanner_matrix(mgz_path_or_img: str | Path | nib.spatialimages.SpatialImage) -> np.ndarray:
    """4x4 mapping FreeSurfer tkr RAS to scanner RAS: ``vox2ras @ inv(vox2ras_tkr)`` of an MGH image."""
    img = mgz_path_or_img
    path = None
    if not hasattr(img, "header"):
        path = _require(Path(img), "volume")
        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises many types on corrupt files
            raise SurfaceError(f"cannot read volume ({exc})", path=path) from exc
    header = img.header
    if not hasattr(header, "get_vox2ras_tkr"):
        raise SurfaceError("not a FreeSurfer MGH/MGZ volume (no tkr RAS)", path=path)
    return np.asarray(header.get_vox2ras(), dtype=np.float64) @ np.linalg.inv(header.get_vox2ras_tkr())


def read_freesurfer_surface(path: str | Path, tkr_to_scanner: np.ndarray | None = None) -> Surface:
    """Read a FreeSurfer binary surface (``?h.white``, ``?h.pial``, ``?h.sphere.reg``...).

    With ``tkr_to_scanner`` (4x4) the vertices are mapped from tkr RAS to scanner RAS.
    """
    path = _require(Path(path), "FreeSurfer surface file")
    try:
        vertices, faces = nib.freesurfer.read_geometry(str(path))
    except Exception as exc:
        raise SurfaceError(f"unreadable or truncated FreeSurfer surface ({exc})", path=path) from exc
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    _check_mesh_arrays(vertices, faces, path)
    surf = Surface(vertices, faces, path)
    return surf if tkr_to_scanner is None else surf.transformed(tkr_to_scanner)


def read_gifti_surface(path: str | Path) -> Surface:
    """Read a GIFTI surface (``*.surf.gii``, sMRIPrep style: already scanner RAS)."""
    path = _require(Path(path), "GIFTI surface file")
    try:
        img = nib.load(str(path))
        points = [d for d in img.darrays if d.intent == nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]]
        tris = [d for d in img.darrays if d.intent == nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"]]
        if not points or not tris:
            raise ValueError("no POINTSET/TRIANGLE data arrays")
        vertices = np.asarray(points[0].data, dtype=np.float64)
        raw_faces = np.asarray(tris[0].data)
        if not np.issubdtype(raw_faces.dtype, np.integer) and not np.array_equal(raw_faces, np.round(raw_faces)):
            raise ValueError(f"TRIANGLE face indices must be integers, the file holds {raw_faces.dtype} fractions")
        faces = raw_faces.astype(np.int64)
    except Exception as exc:
        raise SurfaceError(f"unreadable or truncated GIFTI surface ({exc})", path=path) from exc
    _check_mesh_arrays(vertices, faces, path)
    return Surface(vertices, faces, path)


def read_annotation(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read a FreeSurfer ``.annot``: per-vertex label index (int (n,), -1 unlabelled) and names."""
    path = _require(Path(path), "annotation file")
    try:
        labels, _ctab, names = nib.freesurfer.read_annot(str(path))
    except Exception as exc:
        raise SurfaceError(f"unreadable or truncated annotation ({exc})", path=path) from exc
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return np.asarray(labels, dtype=np.int64), names


def read_morph(path: str | Path) -> np.ndarray:
    """Read a FreeSurfer per-vertex morphometry file (``?h.thickness``, ``?h.curv``) as float32."""
    path = _require(Path(path), "morphometry file")
    try:
        data = nib.freesurfer.read_morph_data(str(path))
        with open(path, "rb") as fh:  # nibabel returns a short array for a truncated file
            head = fh.read(7)
        expected = int.from_bytes(head[3:7], "big") if head[:3] == b"\xff\xff\xff" else len(data)
        if len(data) != expected:
            raise ValueError(f"header announces {expected} values, file holds {len(data)}")
    except Exception as exc:
        raise SurfaceError(f"unreadable or truncated morphometry file ({exc})", path=path) from exc
    return np.asarray(data, dtype=np.float32)


def _hemi(hemi: str) -> str:
    h = str(hemi).upper()
    h = {"LH": "L", "RH": "R", "LEFT": "L", "RIGHT": "R"}.get(h, h)
    if h not in HEMIS:
        raise ValueError(f"hemi must be 'L' or 'R', got {hemi!r}")
    return h


def load_freesurfer_hemisphere(
    subject_dir: str | Path,
    hemi: str,
    t1_img: nib.spatialimages.SpatialImage | None = None,
) -> Hemisphere:
    """Load ``surf/{lh,rh}.{white,pial}`` (+ ``label/?h.aparc.annot``, ``surf/?h.thickness`` when
    present) of a FreeSurfer subject, mapped to scanner RAS via ``mri/orig.mgz`` (else
    ``mri/T1.mgz``; else the header of ``t1_img`` when it is an MGH image)."""
    sub = Path(subject_dir)
    h = _hemi(hemi)
    pre = _FS_PREFIX[h]
    ref = next((p for p in (sub / "mri" / "orig.mgz", sub / "mri" / "T1.mgz") if p.is_file()), None)
    if ref is not None:
        xfm = tkr_to_scanner_matrix(ref)
    elif t1_img is not None and hasattr(t1_img.header, "get_vox2ras_tkr"):
        xfm = tkr_to_scanner_matrix(t1_img)
    else:
        raise MissingParticipantFileError(
            "needed to map FreeSurfer tkr RAS to scanner RAS (neither mri/orig.mgz nor mri/T1.mgz exists)",
            path=sub / "mri" / "orig.mgz",
        )
    white = read_freesurfer_surface(sub / "surf" / f"{pre}.white", xfm)
    pial = read_freesurfer_surface(sub / "surf" / f"{pre}.pial", xfm)
    labels = names = thickness = None
    annot = sub / "label" / f"{pre}.aparc.annot"
    if annot.is_file():
        labels, names = read_annotation(annot)
    thick = sub / "surf" / f"{pre}.thickness"
    if thick.is_file():
        thickness = read_morph(thick)
    return Hemisphere(h, white, pial, labels, names, thickness)


def load_gifti_hemisphere(
    white_path: str | Path,
    pial_path: str | Path,
    annot_path: str | Path | None = None,
    hemi: str | None = None,
) -> Hemisphere:
    """Load a hemisphere from GIFTI surfaces (scanner RAS); ``hemi`` from the ``hemi-L/R``
    entity of the file name when not given."""
    white_path, pial_path = Path(white_path), Path(pial_path)
    if hemi is None:
        name = white_path.name
        hemi = "L" if "hemi-L" in name else "R" if "hemi-R" in name else None
        if hemi is None:
            raise SurfaceError("cannot tell the hemisphere: no hemi-L/hemi-R in the name", path=white_path)
    labels = names = None
    if annot_path is not None:
        labels, names = read_annotation(annot_path)
    return Hemisphere(_hemi(hemi), read_gifti_surface(white_path), read_gifti_surface(pial_path), labels, names)
