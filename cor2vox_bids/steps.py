"""The pipeline's steps as plain functions on files: the glue between geometry, diffusion and QC.

Nipype interfaces (``cor2vox_bids.interfaces``) are thin wrappers over these; the CLI for training reuses them.
No maths here: each step reads its inputs, calls the layer that does the work, and writes its outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import nibabel as nib
import numpy as np

from .errors import SurfaceError

MAP_NAMES = ("sdf_pial", "sdf_white", "sdf_cortex", "ribbon", "edges")


# -- ingest ------------------------------------------------------------------------------------------------

def load_hemispheres(spec: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """Read and validate both hemispheres described by ``spec`` (see ``inputs.ParticipantInputs``).

    Returns the hemispheres (scanner RAS) and the validation warnings. Raises SurfaceError naming the file.
    """
    from .geometry import load_freesurfer_hemisphere, load_gifti_hemisphere, validate_hemisphere, validate_pair

    t1 = nib.load(spec["t1w"]) if spec.get("t1w") else None
    hemis = []
    for hemi in ("L", "R"):
        files = spec["hemis"][hemi]
        if spec["source"] == "freesurfer":
            h = load_freesurfer_hemisphere(spec["fs_subject_dir"], hemi)
        else:
            h = load_gifti_hemisphere(files["white"], files["pial"], annot_path=files.get("annot"), hemi=hemi)
        hemis.append(h)
    warnings: list[str] = []
    for h in hemis:
        warnings += validate_hemisphere(h, t1)
    warnings += validate_pair(hemis[0], hemis[1], t1)
    return hemis, warnings


def save_hemispheres(path: Path, hemis: Sequence[Any]) -> Path:
    """Store hemispheres (vertices, faces, labels, names, surface thickness) in one ``.npz``."""
    from .geometry import cortical_thickness

    payload: dict[str, np.ndarray] = {}
    for h in hemis:
        p = f"{h.hemi}_"
        payload[p + "white_v"], payload[p + "white_f"] = h.white.vertices, h.white.faces
        payload[p + "pial_v"], payload[p + "pial_f"] = h.pial.vertices, h.pial.faces
        payload[p + "thickness"] = cortical_thickness(h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces)
        if h.labels is not None:
            payload[p + "labels"] = np.asarray(h.labels)
            payload[p + "names"] = np.asarray(h.names, dtype=str)
        payload[p + "paths"] = np.asarray([str(h.white.path or ""), str(h.pial.path or "")], dtype=str)
    np.savez(path, **payload)
    return path


def read_hemispheres(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of :func:`save_hemispheres`: {"L": {"white_v": ..., ...}, "R": {...}}."""
    with np.load(path) as data:
        out: dict[str, dict[str, np.ndarray]] = {"L": {}, "R": {}}
        for key in data.files:
            hemi, _, name = key.partition("_")
            out[hemi][name] = data[key]
    return out


def hemispheres_from_npz(path: Path) -> list[Any]:
    """Rebuild geometry ``Hemisphere`` objects from a stored ``.npz``."""
    from .geometry import Hemisphere, Surface

    stored = read_hemispheres(path)
    hemis = []
    for hemi in ("L", "R"):
        d = stored[hemi]
        hemis.append(Hemisphere(
            hemi=hemi, white=Surface(d["white_v"], d["white_f"], Path(str(d["paths"][0]))),
            pial=Surface(d["pial_v"], d["pial_f"], Path(str(d["paths"][1]))),
            labels=d.get("labels"), names=list(d["names"]) if "names" in d else None, thickness=d["thickness"]))
    return hemis


# -- conditioning ----------------------------------------------------------------------------------------

def participant_grid(hemis: Sequence[Any], shape: Sequence[int], spacing_mm: float) -> Any:
    """The model grid placed around a participant's pial surfaces (placement rule of the model config)."""
    from .geometry import ModelGrid

    verts = np.concatenate([h.pial.vertices for h in hemis])
    return ModelGrid.around(verts, tuple(int(s) for s in shape), float(spacing_mm))


def make_conditioning(hemis_npz: Path, shape: Sequence[int], spacing_mm: float, out_npz: Path) -> Path:
    """Conditioning maps of both hemispheres on the model grid, saved with the grid's affine."""
    from .geometry import conditioning_maps

    hemis = hemispheres_from_npz(hemis_npz)
    grid = participant_grid(hemis, shape, spacing_mm)
    maps = conditioning_maps(hemis, grid)
    np.savez(out_npz, affine=np.asarray(grid.affine), **{k: maps[k].astype(np.float32) for k in MAP_NAMES})
    return out_npz


def read_maps(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in MAP_NAMES}, data["affine"]


def real_on_grid(t1w: Path, maps_npz: Path, out_nii: Path) -> Path:
    """The participant's real T1w resampled (trilinear) onto the model grid, scaled to [0, 1] like the model."""
    from .diffusion.conditioning import scale_image
    from .geometry import ModelGrid, resample

    maps, affine = read_maps(maps_npz)
    img = nib.load(str(t1w))
    grid = ModelGrid(affine=affine, shape=maps["ribbon"].shape)
    vol = resample(np.asarray(img.dataobj, dtype=np.float32), img.affine, grid, order=1)
    scaled = (scale_image(vol) + 1.0) / 2.0
    save_volume(out_nii, scaled.astype(np.float32), affine)
    return out_nii


def save_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


# -- synthesis -------------------------------------------------------------------------------------------

def synthesize_sample(maps_npz: Path, model_path: Path, seed: int, steps: int, eta: float, device: str,
                      out_nii: Path, threads: int | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Path:
    """One synthetic T1w (float32 in [0, 1], on the model grid in scanner RAS) for one seed."""
    import torch

    from .diffusion.checkpoint import load_model
    from .diffusion.conditioning import prepare_condition
    from .diffusion.inference import resolve_device, synthesize

    if threads:
        torch.set_num_threads(int(threads))
    maps, affine = read_maps(maps_npz)
    dev = resolve_device(device)
    model, config = load_model(model_path, dev)
    cond = prepare_condition(maps, config)
    (volume,) = synthesize(model, config, cond, [int(seed)], steps=int(steps), eta=float(eta), device=dev,
                           progress=progress)
    save_volume(out_nii, np.asarray(volume, dtype=np.float32).reshape(maps["ribbon"].shape), affine)
    return out_nii


def write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def validation_error(exc: Exception, path: Path | None) -> SurfaceError:
    """Wrap an unexpected reader failure as a SurfaceError naming the file."""
    return SurfaceError(f"cannot read surface: {exc}", path)
