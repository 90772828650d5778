"""The pipeline's steps as plain functions on files: the glue between geometry, diffusion and QC.

Nipype interfaces (``cor2vox_bids.interfaces``) are thin wrappers over these; the CLI for training reuses them.
No maths here: each step reads its inputs, calls the layer that does the work, and writes its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import nibabel as nib
import numpy as np

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


def make_conditioning(hemis_npz: Path, shape: Sequence[int], spacing_mm: float, out_npz: Path,
                      threads: int | None = None) -> Path:
    """Conditioning maps of both hemispheres on the model grid, saved with the grid's affine.

    ``threads``: threads of the geometry kernels (default: all CPUs; the maps do not depend on it)."""
    from .geometry import conditioning_maps, set_num_threads

    set_num_threads(threads)
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


# -- quality control ---------------------------------------------------------------------------------------

def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)


def tissue_means(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean image intensity in white matter (inside white), cortex (ribbon) and a 2-voxel shell outside the pial."""
    from scipy import ndimage

    inside_pial = maps["sdf_pial"] < 0
    shell = ndimage.binary_dilation(inside_pial, iterations=2) & ~inside_pial
    masks = {"wm": maps["sdf_white"] < 0, "gm": maps["ribbon"] > 0.5, "csf": shell}
    return {f"mean_intensity_{k}": float(image[m].mean()) if m.any() else float("nan") for k, m in masks.items()}


def run_qc(hemis_npz: Path, maps_npz: Path, synthetic: Sequence[Path], real: Path | None, out_dir: Path) -> Path:
    """QC of the first synthetic sample (and of the real T1w when given): tables, summary, per-vertex maps, figures.

    Writes ``qc.tsv`` (+ ``qc.json`` data dictionary), ``summary.json``, ``vertex.npz`` and ``figures/*.png``.
    """
    from .qc import (image_thickness, region_rows, ribbon_dice, similarity, summarize_rows, tissue_labels,
                     write_qc_tsv, write_summary_json)
    from .qc import figures as qcfig
    from .qc.similarity import head_mask_from_intensity

    out_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    stored = read_hemispheres(hemis_npz)
    maps, affine = read_maps(maps_npz)
    images = {"synthetic": _load(synthetic[0])}
    if real is not None:
        images["real"] = _load(real)
    rows: list[dict] = []
    per_vertex: dict[str, np.ndarray] = {}
    for hemi in ("L", "R"):
        h = stored[hemi]
        measured = {kind: image_thickness(img, affine, h["white_v"], h["white_f"], h["pial_v"], h["pial_f"])
                    for kind, img in images.items()}
        per_vertex[f"{hemi}_surface"] = h["thickness"]
        per_vertex.update({f"{hemi}_{k}": v for k, v in measured.items()})
        names = [str(n) for n in h["names"]] if "names" in h else None
        rows += region_rows(hemi, h["thickness"], measured["synthetic"], measured.get("real"), h.get("labels"), names)
        for kind, values in measured.items():
            qcfig.plot_error_map(h["white_v"], values - h["thickness"], fig_dir / f"vertexerror_{kind}_{hemi}.png",
                                 title=f"hemi-{hemi}: {kind} image − surface thickness (mm)")
    summary = summarize_rows(rows)
    brain = maps["sdf_pial"] < 0
    ribbon = maps["ribbon"] > 0.5
    head = head_mask_from_intensity(images.get("real", images["synthetic"]))
    if "real" in images:
        summary.update(similarity(images["synthetic"], images["real"], brain, head))
    for kind, img in images.items():
        summary[f"ribbon_dice_{kind}"] = ribbon_dice(tissue_labels(img, head), ribbon)
        summary.update({f"{k}_{kind}": v for k, v in tissue_means(img, maps).items()})
    summary["n_samples"] = len(synthetic)
    summary["qc_sample"] = Path(synthetic[0]).name
    write_qc_tsv(rows, out_dir / "qc.tsv")
    write_summary_json(summary, out_dir / "summary.json")
    np.savez_compressed(out_dir / "vertex.npz", **per_vertex)
    surfaces = {"white": (np.concatenate([stored["L"]["white_v"], stored["R"]["white_v"]]),
                          np.concatenate([stored["L"]["white_f"], stored["R"]["white_f"] + len(stored["L"]["white_v"])])),
                "pial": (np.concatenate([stored["L"]["pial_v"], stored["R"]["pial_v"]]),
                         np.concatenate([stored["L"]["pial_f"], stored["R"]["pial_f"] + len(stored["L"]["pial_v"])]))}
    for kind, img in images.items():
        qcfig.plot_surface_contours(img, affine, surfaces, fig_dir / f"slices_{kind}.png",
                                    title=f"{kind} T1w with white (yellow) and pial (red) contours")
    qcfig.plot_conditioning(maps, fig_dir / "conditioning.png")
    qcfig.plot_thickness_scatter(rows, fig_dir / "scatter.png")
    qcfig.plot_region_bars(rows, fig_dir / "bars.png")
    return out_dir
