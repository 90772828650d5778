"""Desikan–Killiany (DK, FreeSurfer ``aparc``) labels of a hemisphere's vertices from whatever the input offers.

In order of preference:

1. ``label/?h.aparc.annot`` of the subject (FreeSurfer's own parcellation): ``SOURCE_ANNOT``;
2. ``surf/?h.sphere.reg`` of the subject + fsaverage's ``?h.aparc.annot`` on fsaverage's ``?h.sphere.reg`` (fsaverage5,
   installed with the demo extra): each vertex takes the label of the nearest fsaverage vertex on the registered
   sphere: ``SOURCE_SPHERE``;
3. sMRIPrep's ``desc-aparcaseg_dseg`` volume (FreeSurfer aparc+aseg: 1000 + i left, 2000 + i right cortex) sampled at
   the mid-thickness point of each vertex (nearest voxel; where that voxel is not cortex, the nearest labelled
   vertex's label): ``SOURCE_APARCASEG``.

:func:`dk_labels` returns :class:`RegionLabels` (labels index ``names``, FreeSurfer's aparc colour-table order,
−1 = unlabelled) with the source; the QC table states it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .atlas import DK_REGIONS

__all__ = ["RegionLabels", "APARC_NAMES", "SOURCE_ANNOT", "SOURCE_SPHERE", "SOURCE_APARCASEG", "SOURCE_NONE",
           "labels_from_annot", "labels_from_sphere", "labels_from_aparcaseg", "find_dk_sources", "dk_labels"]

#: FreeSurfer's aparc colour-table order (index i ↔ aparc+aseg label 1000 + i / 2000 + i)
APARC_NAMES: tuple[str, ...] = ("unknown", *DK_REGIONS[:3], "corpuscallosum", *DK_REGIONS[3:])

SOURCE_ANNOT = "aparc.annot"
SOURCE_SPHERE = "sphere.reg+fsaverage5"
SOURCE_APARCASEG = "aparcaseg"
SOURCE_NONE = "none"

_FS_PREFIX = {"L": "lh", "R": "rh"}
_APARCASEG_OFFSET = {"L": 1000, "R": 2000}


@dataclass
class RegionLabels:
    """Per-vertex DK labels (indices into ``names``; −1 none) and where they came from."""

    labels: NDArray[np.int64]
    names: list[str]
    source: str


def labels_from_annot(path: str | Path, n_vertices: int) -> RegionLabels:
    """The subject's own annotation; its vertex count must match the surface."""
    from .surfaces import read_annotation

    labels, names = read_annotation(path)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n_vertices,):
        raise ValueError(f"{path}: annotation has {labels.shape[0]} vertices, the surface {n_vertices}")
    return RegionLabels(labels, [str(n) for n in names], SOURCE_ANNOT)


def labels_from_sphere(sphere_reg_vertices: NDArray, hemi: str, fsaverage_dir: str | Path | None = None
                       ) -> RegionLabels:
    """Labels transferred from fsaverage's annotation through the registered spheres (nearest vertex)."""
    import nibabel.freesurfer as fsio
    from scipy.spatial import cKDTree

    from .surfaces import read_annotation

    if fsaverage_dir is None:
        from .atlas import fsaverage5_dir

        fsaverage_dir = fsaverage5_dir()
    root = Path(fsaverage_dir)
    pre = _FS_PREFIX[hemi]
    ref = fsio.read_geometry(str(root / "surf" / f"{pre}.sphere.reg"))[0].astype(np.float64)
    ref_labels, names = read_annotation(root / "label" / f"{pre}.aparc.annot")
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    _, nearest = cKDTree(unit(ref)).query(unit(np.asarray(sphere_reg_vertices, dtype=np.float64)))
    return RegionLabels(np.asarray(ref_labels, dtype=np.int64)[nearest], [str(n) for n in names], SOURCE_SPHERE)


def labels_from_aparcaseg(image: NDArray, affine: NDArray, white_vertices: NDArray, pial_vertices: NDArray,
                          hemi: str) -> RegionLabels:
    """Labels of the aparc+aseg voxels at mid-thickness (world coordinates, scanner RAS); vertices whose voxel is
    not this hemisphere's cortex take the label of the nearest vertex that is."""
    from scipy.spatial import cKDTree

    mid = 0.5 * (np.asarray(white_vertices, dtype=np.float64) + np.asarray(pial_vertices, dtype=np.float64))
    inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    ijk = np.rint(mid @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    data = np.asarray(image)
    inside = np.all((ijk >= 0) & (ijk < np.array(data.shape[:3])), axis=1)
    values = np.full(len(mid), -1, dtype=np.int64)
    values[inside] = data[ijk[inside, 0], ijk[inside, 1], ijk[inside, 2]]
    index = values - _APARCASEG_OFFSET[hemi]
    ok = (index >= 0) & (index < len(APARC_NAMES))
    labels = np.where(ok, index, -1)
    if ok.any() and not ok.all():
        _, nearest = cKDTree(mid[ok]).query(mid[~ok])
        labels[~ok] = labels[ok][nearest]
    return RegionLabels(labels, list(APARC_NAMES), SOURCE_APARCASEG)


def find_dk_sources(white_path: str | Path | None, hemi: str) -> dict[str, Path]:
    """Files next to a hemisphere's white surface that can give DK labels: ``annot`` and ``sphere_reg`` for a
    FreeSurfer ``surf/?h.white``; ``aparcaseg`` (``*desc-aparcaseg_dseg.nii*``) beside sMRIPrep GIFTI surfaces."""
    if not white_path:
        return {}
    white = Path(white_path)
    found: dict[str, Path] = {}
    pre = _FS_PREFIX[hemi]
    if white.parent.name == "surf":
        for key, path in (("annot", white.parent.parent / "label" / f"{pre}.aparc.annot"),
                          ("sphere_reg", white.parent / f"{pre}.sphere.reg")):
            if path.is_file():
                found[key] = path
    elif white.parent.is_dir():
        subject = white.name.split("_")[0]
        seg = sorted(white.parent.glob(f"{subject}*desc-aparcaseg_dseg.nii*"))
        if seg:
            found["aparcaseg"] = seg[0]
    return found


def dk_labels(hemi: str, white_vertices: NDArray, pial_vertices: NDArray, sources: dict[str, Path],
              fsaverage_dir: str | Path | None = None) -> RegionLabels | None:
    """DK labels from the first usable source (module docstring order); None when there is none."""
    n = len(white_vertices)
    if "annot" in sources:
        return labels_from_annot(sources["annot"], n)
    if "sphere_reg" in sources:
        import nibabel.freesurfer as fsio

        sphere = fsio.read_geometry(str(sources["sphere_reg"]))[0]
        if len(sphere) != n:
            raise ValueError(f"{sources['sphere_reg']}: {len(sphere)} vertices, the surface has {n}")
        return labels_from_sphere(sphere, hemi, fsaverage_dir)
    if "aparcaseg" in sources:
        import nibabel as nib

        img = nib.load(str(sources["aparcaseg"]))
        return labels_from_aparcaseg(np.asarray(img.dataobj), img.affine, white_vertices, pial_vertices, hemi)
    return None
