"""Fixtures of the shape-model tests: icospheres and a small FreeSurfer-style training set from fsaverage5."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """The regular icosahedron on the unit sphere, faces wound outward."""
    p = (1 + 5**0.5) / 2
    v = np.array(
        [
            [-1, p, 0],
            [1, p, 0],
            [-1, -p, 0],
            [1, -p, 0],
            [0, -1, p],
            [0, 1, p],
            [0, -1, -p],
            [0, 1, -p],
            [p, 0, -1],
            [p, 0, 1],
            [-p, 0, -1],
            [-p, 0, 1],
        ],
        dtype=np.float64,
    )
    f = np.array(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ],
        dtype=np.int64,
    )
    return v / np.linalg.norm(v, axis=1, keepdims=True), f


def subdivide(
    vertices: np.ndarray, faces: np.ndarray, values: np.ndarray | None = None, project: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Split every triangle in four; old vertices keep their indices (icosahedral order), new ones are edge
    midpoints (projected to the sphere when ``project``); ``values`` are carried as edge means."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    inv = inv.ravel()
    n = len(vertices)
    mids = 0.5 * (vertices[uniq[:, 0]] + vertices[uniq[:, 1]])
    if project:
        mids *= np.linalg.norm(vertices[uniq[:, 0]], axis=1, keepdims=True) / np.linalg.norm(
            mids, axis=1, keepdims=True
        )
    m = len(faces)
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    ab, bc, ca = n + inv[:m], n + inv[m : 2 * m], n + inv[2 * m :]
    new_faces = np.concatenate(
        [np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1), np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)]
    )
    new_values = None
    if values is not None:
        new_values = np.concatenate([values, 0.5 * (values[uniq[:, 0]] + values[uniq[:, 1]])])
    return np.vstack([vertices, mids]), new_faces, new_values


def fsaverage5() -> Path:
    from cor2vox_bids.shape.data import installed_subject

    root = installed_subject("fsaverage5")
    if root is None:
        pytest.skip("fsaverage5 (demo extra) not installed")
    return root


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    r = np.eye(3)
    for axis, ang in enumerate(np.radians(angles_deg)):
        c, s = np.cos(ang), np.sin(ang)
        m = np.eye(3)
        i, j = [k for k in range(3) if k != axis]
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = r @ m
    return r


def write_training_set(root: Path, n: int = 4, seed: int = 0, subdivided: tuple[int, ...] = (3,)) -> Path:
    """A BIDS dataset of ``n`` participants (no images) whose FreeSurfer folders hold fsaverage5 moved rigidly
    and bent by a smooth random displacement, with its thickness rescaled. Participants listed in
    ``subdivided`` (1-based) get a once-subdivided mesh (and sphere), so the build must resample them."""
    tpl = fsaverage5()
    bids = root / "bids"
    fs = bids / "derivatives" / "freesurfer"
    fs.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "shape test", "BIDSVersion": "1.9.0", "DatasetType": "raw"})
    )
    (fs / "dataset_description.json").write_text(
        json.dumps({"Name": "fs", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        label = f"{i:02d}"
        (bids / f"sub-{label}" / "ses-x").mkdir(parents=True)
        (bids / f"sub-{label}" / "ses-x" / f"sub-{label}_ses-x_scans.tsv").write_text("filename\tacq_time\n")
        sub = fs / f"sub-{label}"
        for d in ("surf", "label", "mri"):
            (sub / d).mkdir(parents=True)
        shutil.copyfile(tpl / "mri" / "orig.mgz", sub / "mri" / "orig.mgz")
        rot, shift = _rotation(rng.uniform(-5, 5, 3)), rng.uniform(-4, 4, 3)
        k = rng.normal(0, 1, (3, 3)) / 40.0  # wave vectors (1/mm)
        amp = rng.uniform(-2.5, 2.5, 3)
        tscale = rng.uniform(0.9, 1.1)
        for hemi in ("lh", "rh"):
            w, f = nib.freesurfer.read_geometry(str(tpl / "surf" / f"{hemi}.white"))
            p, _ = nib.freesurfer.read_geometry(str(tpl / "surf" / f"{hemi}.pial"))
            s, _ = nib.freesurfer.read_geometry(str(tpl / "surf" / f"{hemi}.sphere.reg"))
            t = nib.freesurfer.read_morph_data(str(tpl / "surf" / f"{hemi}.thickness")).astype(np.float64)
            mid = 0.5 * (w + p)
            bend = np.stack([amp[c] * np.sin(mid @ k[c]) for c in range(3)], axis=1)
            w, p = w + bend, p + bend
            p = w + (p - w) * tscale
            t = t * tscale
            if i in subdivided:
                w, f2, _ = subdivide(w, f, project=False)
                p, _, _ = subdivide(p, f, project=False)
                s, _, t = subdivide(s, f, t, project=True)
                f = f2
            w, p = w @ rot.T + shift, p @ rot.T + shift
            nib.freesurfer.write_geometry(str(sub / "surf" / f"{hemi}.white"), w, f.astype(np.int32))
            nib.freesurfer.write_geometry(str(sub / "surf" / f"{hemi}.pial"), p, f.astype(np.int32))
            nib.freesurfer.write_geometry(str(sub / "surf" / f"{hemi}.sphere.reg"), s, f.astype(np.int32))
            nib.freesurfer.write_morph_data(str(sub / "surf" / f"{hemi}.thickness"), t.astype(np.float32))
            shutil.copyfile(tpl / "label" / f"{hemi}.aparc.annot", sub / "label" / f"{hemi}.aparc.annot")
    return bids


@pytest.fixture(scope="session")
def shape_training(tmp_path_factory) -> Path:
    """The training dataset (4 participants, participant 03 on a subdivided mesh)."""
    return write_training_set(tmp_path_factory.mktemp("shape_train"))


@pytest.fixture(scope="session")
def shape_model_dir(shape_training, tmp_path_factory) -> Path:
    """A model built by ``cor2vox-shape build`` on the training dataset."""
    from cor2vox_bids.cli.shape import main

    out = tmp_path_factory.mktemp("shape_model") / "model"
    assert main(["build", str(shape_training), str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def virtual_dataset(shape_model_dir, tmp_path_factory) -> Path:
    """One sampled virtual participant (seed 7)."""
    from cor2vox_bids.cli.shape import main

    out = tmp_path_factory.mktemp("virtual") / "bids"
    assert main(["sample", str(shape_model_dir), str(out), "--n", "1", "--seed", "7"]) == 0
    return out
