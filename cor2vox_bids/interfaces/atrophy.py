"""Atrophy series (``--atrophy SPEC``) and seed variability (``--num-samples`` ≥ 2).

Steps, each a function on files with a thin interface beside it:

* :func:`make_atrophy_surfaces` — the thinned pial surface of every step (``geometry.atrophy``), stored as one
  hemispheres ``.npz`` per step (thickness recomputed on the thinned meshes), the per-vertex prescription, a
  GIFTI pial per step and hemisphere (scanner RAS) and a JSON report of the prescription and surface checks;
* :func:`make_step_conditioning` — conditioning maps of one step on the **baseline** grid (so every step's image
  overlays the baseline voxel for voxel), reusing the baseline's white SDF (the white surface does not change);
* :func:`synthesize_steps` — the step images, all with the baseline's seed, in batched sampler calls
  (``diffusion.synthesize_series``: each step gets the noise a one-image synthesis with that seed gets);
* :func:`run_atrophy_qc` — prescribed vs surface- and image-measured thinning per step and region
  (``qc.atrophy``), targets and figures in one folder (:data:`ATROPHY_FOLDER`);
* :func:`make_seed_std` — voxel-wise std across samples and where samples disagree (ribbon vs elsewhere);
* :func:`write_atrophy_derivatives` — publishes all of it under names from ``bids.naming``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from ..bids import naming
from ..geometry import (
    ModelGrid,
    cortex_sdf,
    cortical_thickness,
    edge_map,
    ribbon_mask,
    set_num_threads,
    signed_distance,
)
from ..geometry.atrophy import AtrophySpec, load_atrophy_spec, prescribe, region_mask, thinned_series
from ..geometry.surfaces import Hemisphere, Surface, load_hemispheres, save_hemispheres
from ..qc.atrophy import (
    GAIN_SIGMA_MM,
    EdgeShiftWindow,
    atrophy_rows,
    atrophy_targets,
    atrophy_tsv_dictionary,
    deep_white_reference,
    dk_region_masks,
    intensity_gain,
    line_windows,
    pial_edge_shifts,
    plot_atrophy_series,
    plot_prescribed_vs_measured,
    regional_contrast,
    seed_std,
    seed_std_summary,
    write_atrophy_tsv,
)
from .common import PublishInputSpec, optional_session
from .synthesis import SamplingInputSpec, load_for_sampling, progress_writer, read_maps, save_maps, save_volume


@dataclass(frozen=True)
class AtrophyFolder:
    """Files inside the atrophy QC folder (names relative to it)."""

    table: str = "atrophy.tsv"
    dictionary: str = "atrophy.json"
    summary: str = "targets.json"
    series_figure: str = "series.png"
    plot_figure: str = "prescribed_vs_measured.png"

    def path(self, root: str | Path, name: str) -> Path:
        return Path(root) / getattr(self, name)


ATROPHY_FOLDER = AtrophyFolder()


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- surfaces ------------------------------------------------------------------------------------------------


def write_pial_gifti(path: Path, vertices: np.ndarray, faces: np.ndarray, hemi: str) -> Path:
    """A GIFTI surface (POINTSET in scanner RAS mm + TRIANGLE), as sMRIPrep writes them."""
    meta = {"AnatomicalStructurePrimary": "CortexLeft" if hemi == "L" else "CortexRight",
            "AnatomicalStructureSecondary": "Pial", "GeometricType": "Anatomical"}
    coords = nib.gifti.GiftiDataArray(np.asarray(vertices, dtype=np.float32),
                                      intent=nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"],
                                      datatype="NIFTI_TYPE_FLOAT32", meta=nib.gifti.GiftiMetaData(meta))
    coords.coordsys = nib.gifti.GiftiCoordSystem(dataspace=3, xformspace=3, xform=np.eye(4))  # scanner anat
    tris = nib.gifti.GiftiDataArray(np.asarray(faces, dtype=np.int32),
                                    intent=nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"],
                                    datatype="NIFTI_TYPE_INT32")
    nib.save(nib.gifti.GiftiImage(darrays=[coords, tris]), str(path))
    return path


def make_atrophy_surfaces(hemis_npz: Path, spec_path: Path, out_dir: Path) -> dict[str, object]:
    """Thinned pial surfaces of every step; returns the written files (see the module docstring)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_atrophy_spec(spec_path)
    hemis = load_hemispheres(hemis_npz)
    steps: list[list[Hemisphere]] = [[] for _ in range(spec.steps)]
    gifti: list[str] = []
    prescription: dict[str, np.ndarray] = {}
    report: dict[str, object] = {"spec": spec.to_dict(), "spec_sha256": sha256_of(spec_path), "hemispheres": {}}
    for h in hemis:
        base_thickness = (h.thickness if h.thickness is not None else
                          cortical_thickness(h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces))
        pres = prescribe(spec, h, base_thickness)
        series = thinned_series(spec, h, pres, thickness=True)
        checks = []
        for k, thinned in enumerate(series, 1):
            pial = Surface(thinned.vertices, h.pial.faces, h.pial.path)
            steps[k - 1].append(Hemisphere(h.hemi, h.white, pial, h.labels, h.names, thinned.thickness))
            prescription[f"{h.hemi}_step{k:02d}"] = pres.at_step(spec, k)
            path = out_dir / naming.atrophy_work_pial(h.hemi, k)
            gifti.append(str(write_pial_gifti(path, pial.vertices, pial.faces, h.hemi)))
            checks.append({"step": k, **thinned.report()})
        report["hemispheres"][h.hemi] = {
            "prescribed_mm_last_step": pres.region_mm,
            "prescribed_vertices": int((pres.amount_mm > 0).sum()),
            "checks": checks,
        }
    hemis_files = [str(save_hemispheres(out_dir / naming.atrophy_work_hemispheres(k), steps[k - 1]))
                   for k in range(1, spec.steps + 1)]
    pres_file = out_dir / "prescription.npz"
    np.savez(pres_file, **prescription)
    report_file = out_dir / "surfaces.json"
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    return {"hemispheres": hemis_files, "pial_gifti": gifti, "prescription": str(pres_file),
            "report": str(report_file)}


def prescribed_region_mm(spec: AtrophySpec, report: dict, step: int) -> dict[str, dict[str, float]]:
    """``{hemi: {region: mm}}`` prescribed at ``step`` for the regions named in the spec."""
    out: dict[str, dict[str, float]] = {}
    for hemi, info in report["hemispheres"].items():
        values = {name: round(float(mm) * spec.fraction(step), 6)
                  for name, mm in info["prescribed_mm_last_step"].items()}
        if values:
            out[hemi] = values
    return out


# -- conditioning --------------------------------------------------------------------------------------------


def make_step_conditioning(step_hemis_npz: Path, baseline_maps_npz: Path, out_npz: Path,
                           threads: int | None = None, band: float = 3) -> Path:
    """Conditioning maps of thinned hemispheres on the baseline's grid; the white SDF is the baseline's.

    With no vertex moved the maps equal the baseline's (same grid, same SDF code, same ``band``)."""
    set_num_threads(threads)
    base, affine = read_maps(baseline_maps_npz)
    grid = ModelGrid(affine=affine, shape=base["ribbon"].shape)
    pial = None
    for h in load_hemispheres(step_hemis_npz):
        sp = signed_distance(h.pial.vertices, h.pial.faces, grid.affine, grid.shape, band)
        pial = sp if pial is None else np.minimum(pial, sp)
    white = base["sdf_white"]
    maps = {"sdf_pial": pial, "sdf_white": white, "sdf_cortex": cortex_sdf(pial, white),
            "ribbon": ribbon_mask(pial, white), "edges": edge_map(pial, white, float(np.mean(grid.spacing)))}
    return save_maps(out_npz, maps, affine)


# -- synthesis -----------------------------------------------------------------------------------------------

MAX_SERIES_BATCH = 4  # step images per network call (memory grows with it; batch 3 costs ≈ 0.8 × 3 one-image calls)


def synthesize_steps(maps_files: Sequence[Path], model_path: Path, seed: int, steps: int, eta: float, device: str,
                     out_dir: Path, threads: int | None = None, batch_size: int = MAX_SERIES_BATCH,
                     progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """The synthetic T1w of every step (one per conditioning file, in order), all with ``seed``, the steps batched
    ``batch_size`` at a time (``diffusion.synthesize_series``). Each equals the one-image synthesis of its maps with
    that seed up to the rounding of batched kernels."""
    from ..diffusion.conditioning import prepare_condition
    from ..diffusion.inference import synthesize_series

    out_dir.mkdir(parents=True, exist_ok=True)
    model, config, dev = load_for_sampling(model_path, device, threads)
    conditions, grids = [], []
    for path in maps_files:
        maps, affine = read_maps(Path(path))
        conditions.append(prepare_condition(maps, config))
        grids.append((maps["ribbon"].shape, affine))
    volumes = synthesize_series(model, config, conditions, int(seed), steps=int(steps), eta=float(eta), device=dev,
                                batch_size=int(batch_size), progress=progress)
    return [save_volume(out_dir / naming.work_image_name(f"atrophy{k:02d}_seed{int(seed)}"),
                        np.asarray(vol, dtype=np.float32).reshape(shape), affine)
            for k, (vol, (shape, affine)) in enumerate(zip(volumes, grids), 1)]


# -- QC ------------------------------------------------------------------------------------------------------


def _image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def spec_region_masks(spec: AtrophySpec, hemisphere: Hemisphere) -> dict[str, np.ndarray]:
    """Masks of the spec's regions on one hemisphere (in spec order)."""
    return {r.name: region_mask(r, hemisphere) for r in spec.regions_of(hemisphere.hemi)}


def _joined(meshes: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One mesh of several (vertices stacked, faces offset)."""
    offset = np.cumsum([0] + [len(v) for v, _ in meshes])
    return (np.concatenate([np.asarray(v, dtype=np.float64) for v, _ in meshes]),
            np.concatenate([np.asarray(f, dtype=np.int64) + o for (_, f), o in zip(meshes, offset)]))


def run_atrophy_qc(hemis_npz: Path, spec_path: Path, prescription_npz: Path, step_hemis: Sequence[Path],
                   baseline_image: Path, step_images: Sequence[Path], out_dir: Path, *,
                   normalise: bool = True, gain_sigma_mm: float = GAIN_SIGMA_MM) -> Path:
    """Prescribed vs measured thinning for every step, hemisphere and region (the spec's regions first, then
    the other DK regions), the targets of the last step and two figures, in ``out_dir``.

    ``normalise``: measure ``image_mm`` after normalising each step image to the baseline with a smooth local gain
    field (``qc.atrophy.intensity_gain``, Gaussian σ ``gain_sigma_mm``) estimated on deep white matter only —
    inside the white surfaces (which never move in a series), deeper than the lines' inner end plus twice the
    fitted blur, baseline above the grey/white midpoint. ``image_raw_mm`` is always the unnormalised measure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = load_atrophy_spec(spec_path)
    if len(step_hemis) != spec.steps or len(step_images) != spec.steps:
        raise ValueError(f"{spec.steps} steps in the spec, {len(step_hemis)} surfaces, {len(step_images)} images")
    base_hemis = load_hemispheres(hemis_npz)
    stepped = [load_hemispheres(p) for p in step_hemis]
    base_img, affine = _image(baseline_image)
    images = [_image(p)[0] for p in step_images]
    with np.load(prescription_npz) as data:
        prescription = {k: data[k] for k in data.files}
    # the medial-axis test of the integration windows sees both hemispheres (lines stop at the midline too)
    all_pial = _joined([(h.pial.vertices, h.pial.faces) for h in base_hemis])
    all_white = _joined([(h.white.vertices, h.white.faces) for h in base_hemis])
    edge_models: dict[str, dict[str, float]] = {}
    fitted = []
    for h in base_hemis:
        w, p = h.white, h.pial
        windows = line_windows(w.vertices, w.faces, p.vertices, p.faces, pial_mesh=all_pial, white_mesh=all_white)
        dk = dk_region_masks(h.labels, h.names)
        contrast, whole, _ = regional_contrast(base_img, affine, windows, dk)
        edge_models[h.hemi] = {"wm": whole.wm, "gm": whole.gm, "csf": whole.csf, "contrast": whole.contrast,
                               "sigma_mm": whole.sigma_mm, "lines": whole.n_lines,
                               "median_vertex_contrast": float(np.nanmedian(contrast))}
        fitted.append((windows, contrast, whole, dk))
    gains, normalisation = (_step_gains(base_hemis, base_img, images, affine, [f[2] for f in fitted],
                                        gain_sigma_mm) if normalise else ([None] * len(images), {"applied": False}))
    rows = []
    for i, (h, (windows, contrast, whole, dk)) in enumerate(zip(base_hemis, fitted)):
        own = spec_region_masks(spec, h)
        regions = {**own, **{k: v for k, v in dk.items() if k not in own}}
        w, p = h.white, h.pial
        base_thickness = np.asarray(h.thickness if h.thickness is not None else
                                    cortical_thickness(w.vertices, w.faces, p.vertices, p.faces), dtype=np.float64)
        # raw and normalised in one call: the lines' sample points are computed once for both
        n = len(images)
        both = pial_edge_shifts(base_img, list(images) * (2 if normalise else 1), affine, windows, contrast,
                                sigma_mm=whole.sigma_mm, gains=[None] * n + (list(gains) if normalise else []))
        raw, shifts = both[:n], (both[n:] if normalise else both[:n])
        for k in range(1, spec.steps + 1):
            thinned = stepped[k - 1][i]
            surface = base_thickness - np.asarray(thinned.thickness, dtype=np.float64)
            rows += atrophy_rows(k, h.hemi, regions, own.keys(), prescription[f"{h.hemi}_step{k:02d}"], surface,
                                 shifts[k - 1], raw[k - 1])
    write_atrophy_tsv(rows, ATROPHY_FOLDER.path(out_dir, "table"))
    ATROPHY_FOLDER.path(out_dir, "dictionary").write_text(
        json.dumps(atrophy_tsv_dictionary(normalise, gain_sigma_mm), indent=2) + "\n")
    targets = atrophy_targets(rows)
    targets["image_edge_model"] = edge_models
    targets["image_intensity_normalisation"] = normalisation
    ATROPHY_FOLDER.path(out_dir, "summary").write_text(json.dumps(targets, indent=2) + "\n")
    plot_prescribed_vs_measured(rows, ATROPHY_FOLDER.path(out_dir, "plot_figure"))
    first = spec.regions[0]
    hemi = next(h for h in base_hemis if h.hemi == first.hemi) if any(
        h.hemi == first.hemi for h in base_hemis) else base_hemis[0]
    mask = spec_region_masks(spec, hemi).get(first.name, np.ones(hemi.white.n_vertices, dtype=bool))
    centre = 0.5 * (hemi.white.vertices[mask] + hemi.pial.vertices[mask]).mean(axis=0)
    plot_atrophy_series([base_img] + images, affine, centre, ATROPHY_FOLDER.path(out_dir, "series_figure"),
                        labels=["baseline"] + [f"step {k}" for k in range(1, spec.steps + 1)])
    return out_dir


def _step_gains(hemis: Sequence[Hemisphere], base_img: np.ndarray, images: Sequence[np.ndarray], affine: np.ndarray,
                models: Sequence, sigma_mm: float) -> tuple[list[np.ndarray], dict]:
    """Gain fields (step ≈ gain × baseline) of the step images on deep white matter, and what to report of them:
    the reference (depth, intensity floor, voxels) and per step the gain over the voxels the lines can reach
    (inside the pial surfaces or within the window's outer reach of them)."""
    window = EdgeShiftWindow()
    shape = base_img.shape
    sdf_white = np.min([signed_distance(h.white.vertices, h.white.faces, affine, shape) for h in hemis], axis=0)
    sdf_pial = np.min([signed_distance(h.pial.vertices, h.pial.faces, affine, shape) for h in hemis], axis=0)
    sigmas = [m.sigma_mm for m in models if np.isfinite(m.sigma_mm)]
    levels = [0.5 * (m.wm + m.gm) for m in models if np.isfinite(m.wm) and np.isfinite(m.gm)]
    # deeper than the lines' inner end plus twice the blur: no voxel the integral counts (nor its blur) serves as
    # reference, so the normalisation cannot take away what the windows measure as an edge shift
    depth = window.inner_mm + 2.0 * (max(sigmas) if sigmas else 2.0)
    floor = min(levels) if levels else float(np.percentile(base_img[sdf_white < 0], 50))
    reach = (sdf_pial <= window.outer_mm) & (sdf_white >= -window.inner_mm)
    gains, per_step = [], []
    for k, image in enumerate(images, 1):
        # selected on the mean of the two images: selecting on the baseline alone would bias the ratio (regression
        # to the mean where the images differ by noise)
        reference = deep_white_reference(0.5 * (base_img + image), sdf_white, min_depth_mm=depth, min_level=floor)
        gain = intensity_gain(base_img, image, reference, affine, sigma_mm=sigma_mm)
        gains.append(gain)
        g = gain[reach]
        per_step.append({"step": k, "reference_voxels": int(reference.sum()), "min": float(g.min()),
                         "p01": float(np.percentile(g, 1)), "median": float(np.median(g)),
                         "p99": float(np.percentile(g, 99)), "max": float(g.max()),
                         "reference_ratio": float(image[reference].sum() / base_img[reference].sum())
                         if reference.any() else float("nan")})
    report = {
        "applied": True,
        "method": "each step image divided by a smooth gain field (step / baseline), the Gaussian-weighted ratio "
                  "of sums over deep white-matter voxels only (pulled to their global ratio farther than about "
                  "3 sigma), before the edge-shift integral",
        "sigma_mm": float(sigma_mm),
        "reference": {"min_depth_mm": float(depth), "min_intensity": float(floor),
                      "description": "inside the white surfaces, at least min_depth_mm deep (the lines' inner "
                                     "end plus twice the fitted blur: disjoint from the integration windows), mean of "
                                     "baseline and step intensity at least the grey/white midpoint of the edge "
                                     "model (the lowest of the hemispheres)"},
        "gain_where_lines_reach": per_step,
        "gain_where_lines_reach_description": "inside the white surfaces within the lines' inner end, the ribbon "
                                              "and outside the pial surfaces within the lines' outer end",
    }
    return gains, report


# -- seed variability ----------------------------------------------------------------------------------------


def make_seed_std(synthetic: Sequence[Path], maps_npz: Path, out_dir: Path) -> tuple[Path, Path]:
    """Voxel-wise std across the samples (NIfTI on the model grid) and the ribbon/brain/outside summary (JSON)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    maps, affine = read_maps(maps_npz)
    images = [_image(p)[0] for p in synthetic]
    std = seed_std(images)
    voxel_mm = float(np.mean(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)))
    summary = seed_std_summary(std, maps["ribbon"], maps["sdf_pial"] < 0, sdf_white=maps["sdf_white"],
                               sdf_pial=maps["sdf_pial"], band_mm=2.0 * voxel_mm)  # near: within two voxels
    summary["n_samples"] = len(images)
    std_path = save_volume(out_dir / naming.work_image_name("seedstd"), std, affine)
    summary_path = out_dir / "seedstd.json"
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return std_path, summary_path


# -- interfaces ----------------------------------------------------------------------------------------------


class _SurfacesInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True, desc="baseline hemispheres (.npz)")
    spec = File(exists=True, mandatory=True, desc="atrophy spec (JSON/YAML)")
    label_files = traits.List(File(exists=True), desc="label files named by the spec (hashed with the node)")


class _SurfacesOutputSpec(TraitedSpec):
    hemispheres = traits.List(File(exists=True), desc="thinned hemispheres per step (.npz)")
    pial_gifti = traits.List(File(exists=True), desc="thinned pial GIFTI per step and hemisphere")
    prescription = File(exists=True, desc="per-vertex prescription per step (.npz)")
    report = File(exists=True, desc="prescription per region and surface checks (JSON)")


class AtrophySurfaces(SimpleInterface):
    """Thin the pial surfaces as the spec prescribes, one set per step."""

    input_spec = _SurfacesInputSpec
    output_spec = _SurfacesOutputSpec

    def _run_interface(self, runtime):
        out = make_atrophy_surfaces(Path(self.inputs.hemispheres), Path(self.inputs.spec), Path(runtime.cwd))
        self._results.update(out)
        return runtime


class _StepCondInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True, desc="thinned hemispheres of one step")
    baseline_maps = File(exists=True, mandatory=True, desc="the baseline's conditioning maps (grid, white SDF)")
    threads = traits.Int(0, usedefault=True, nohash=True, desc="geometry kernel threads (0: all CPUs)")


class _StepCondOutputSpec(TraitedSpec):
    maps = File(exists=True)


class StepConditioning(SimpleInterface):
    """Conditioning maps of one atrophy step on the baseline grid (white SDF reused)."""

    input_spec = _StepCondInputSpec
    output_spec = _StepCondOutputSpec

    def _run_interface(self, runtime):
        self._results["maps"] = str(make_step_conditioning(
            Path(self.inputs.hemispheres), Path(self.inputs.baseline_maps), Path(runtime.cwd) / "maps.npz",
            threads=self.inputs.threads or None))
        return runtime


class _SeriesSynthInputSpec(SamplingInputSpec):  # seed: the baseline's
    maps = InputMultiObject(File(exists=True), mandatory=True, desc="conditioning maps of every step, in order")
    batch_size = traits.Int(MAX_SERIES_BATCH, usedefault=True, nohash=True,
                            desc="steps per network call (the images do not depend on it beyond rounding)")


class _SeriesSynthOutputSpec(TraitedSpec):
    synthetic = traits.List(File(exists=True), desc="synthetic T1w per step, in order")


class SynthesizeSeries(SimpleInterface):
    """The step images of an atrophy series with the baseline's seed, batched (one sampler call per batch)."""

    input_spec = _SeriesSynthInputSpec
    output_spec = _SeriesSynthOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        label = f"{i.label} seed {i.seed}"
        report = progress_writer(i.progress_dir, i.label, i.seed)

        def progress(done: int, total: int) -> None:
            report(f"{label}: sampling step {done}/{total} ({len(i.maps)} images batched)")

        out = synthesize_steps([Path(p) for p in i.maps], Path(i.model), i.seed, i.steps, i.eta, i.device,
                               Path(runtime.cwd), threads=i.threads, batch_size=i.batch_size, progress=progress)
        self._results["synthetic"] = [str(p) for p in out]
        return runtime


class _AtrophyQCInputSpec(BaseInterfaceInputSpec):
    hemispheres = File(exists=True, mandatory=True, desc="baseline hemispheres")
    spec = File(exists=True, mandatory=True)
    prescription = File(exists=True, mandatory=True)
    step_hemispheres = InputMultiObject(File(exists=True), mandatory=True)
    baseline = File(exists=True, mandatory=True, desc="baseline synthetic image (same seed as the steps)")
    step_images = InputMultiObject(File(exists=True), mandatory=True)
    intensity_normalisation = traits.Bool(True, usedefault=True,
                                          desc="normalise each step image to the baseline (local gain on deep "
                                               "white matter) before the edge-shift integral")


class _AtrophyQCOutputSpec(TraitedSpec):
    atrophy_dir = traits.Directory(exists=True)


class AtrophyQC(SimpleInterface):
    """Prescribed vs measured thinning (surface and image) per step and region, targets, figures."""

    input_spec = _AtrophyQCInputSpec
    output_spec = _AtrophyQCOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        out = run_atrophy_qc(Path(i.hemispheres), Path(i.spec), Path(i.prescription),
                             [Path(p) for p in i.step_hemispheres], Path(i.baseline),
                             [Path(p) for p in i.step_images], Path(runtime.cwd) / "atrophy",
                             normalise=bool(i.intensity_normalisation))
        self._results["atrophy_dir"] = str(out)
        return runtime


class _SeedStdInputSpec(BaseInterfaceInputSpec):
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    maps = File(exists=True, mandatory=True)


class _SeedStdOutputSpec(TraitedSpec):
    seedstd = File(exists=True)
    summary = File(exists=True)


class SeedStd(SimpleInterface):
    """Voxel-wise standard deviation across samples and where they disagree (ribbon vs elsewhere)."""

    input_spec = _SeedStdInputSpec
    output_spec = _SeedStdOutputSpec

    def _run_interface(self, runtime):
        std, summary = make_seed_std([Path(p) for p in self.inputs.synthetic], Path(self.inputs.maps),
                                     Path(runtime.cwd))
        self._results.update({"seedstd": str(std), "summary": str(summary)})
        return runtime


# -- publishing ----------------------------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return dst


ATROPHY_FIGURES = (("series_figure", "atrophyseries", "T1w"), ("plot_figure", "atrophyplot", "qc"))


def atrophy_step_sidecar(base: dict, spec: AtrophySpec, spec_path: Path, surfaces: dict, step: int,
                         baseline_uri: str) -> dict:
    """Sidecar of one atrophy step image: the synthetic-image sidecar (seed, model sha256…) plus the spec,
    the step, the prescribed thinning per region and the surface checks of that step."""
    out = dict(base)
    out["Description"] = (f"Synthetic T1w of atrophy step {step} of {spec.steps}: the pial surface thinned as "
                          "the atrophy spec prescribes (linear over steps), synthesised with the baseline's seed. "
                          "Not an acquired image." + (" Made with a DEMO model: not for research use."
                                                      if base.get("ModelIsDemo") else ""))
    out["Sources"] = [baseline_uri] + list(base.get("Sources", []))
    out.update({
        "AtrophyStep": int(step),
        "AtrophySteps": int(spec.steps),
        "AtrophySpec": spec.to_dict(),
        "AtrophySpecFile": spec_path.name,
        "AtrophySpecSHA256": surfaces["spec_sha256"],
        "PrescribedThinning": prescribed_region_mm(spec, surfaces, step),
        "PrescribedThinningUnits": "mm of cortical thickness (FreeSurfer definition), mean over the region",
        "SurfaceChecks": {hemi: next(c for c in info["checks"] if c["step"] == step)
                          for hemi, info in surfaces["hemispheres"].items()},
    })
    return out


def write_atrophy_derivatives(output_dir: Path, subject: str, session: str | None, base_sidecar: dict,
                              spec_path: Path, surfaces_report: Path, step_images: Sequence[Path],
                              pial_gifti: Sequence[Path], atrophy_dir: Path,
                              baseline_published: Path) -> tuple[list[Path], list[tuple[dict, Path]]]:
    """Publish the series: step images with sidecars, thinned pial GIFTIs, the QC table (+ data dictionary),
    the targets summary and figures. Returns (files written, [(figure entities, figure path)])."""
    from ..bids.dataset import write_json

    spec = load_atrophy_spec(spec_path)
    surfaces = json.loads(Path(surfaces_report).read_text())
    baseline_uri = naming.bids_uri("", Path(baseline_published), output_dir)
    written: list[Path] = []
    for step, image in enumerate(step_images, 1):
        dst = output_dir / naming.atrophy_image_path(subject, session, step)
        written.append(_copy(Path(image), dst))
        written.append(write_json(naming.sidecar_of(dst), atrophy_step_sidecar(
            base_sidecar, spec, spec_path, surfaces, step, baseline_uri)))
    by_name = {Path(p).name: Path(p) for p in pial_gifti}
    for step in range(1, spec.steps + 1):
        for hemi in surfaces["hemispheres"]:
            src = by_name[naming.atrophy_work_pial(hemi, step)]
            written.append(_copy(src, output_dir / naming.atrophy_pial_path(subject, session, hemi, step)))
    written.append(_copy(ATROPHY_FOLDER.path(atrophy_dir, "table"),
                         output_dir / naming.atrophy_qc_path(subject, session)))
    written.append(_copy(ATROPHY_FOLDER.path(atrophy_dir, "dictionary"),
                         output_dir / naming.atrophy_qc_path(subject, session, ".json")))
    targets = json.loads(ATROPHY_FOLDER.path(atrophy_dir, "summary").read_text())
    targets["surface_checks"] = surfaces["hemispheres"]
    written.append(write_json(output_dir / naming.atrophy_summary_path(subject, session), targets))
    figures = []
    for key, desc, suffix in ATROPHY_FIGURES:
        dst = output_dir / naming.figure_path(subject, session, desc, suffix)
        figures.append(({"desc": desc, "suffix": suffix, "hemi": None},
                        _copy(ATROPHY_FOLDER.path(atrophy_dir, key), dst)))
        written.append(dst)
    return written, figures


def write_seedstd_derivatives(output_dir: Path, subject: str, session: str | None, seedstd: Path, summary: Path,
                              seeds: Sequence[int]) -> list[Path]:
    """Publish the seed std map with a sidecar holding where samples disagree (ribbon vs elsewhere)."""
    from ..bids.dataset import write_json

    dst = output_dir / naming.seedstd_path(subject, session)
    _copy(Path(seedstd), dst)
    stats = json.loads(Path(summary).read_text())
    sidecar = {
        "Description": "Voxel-wise sample standard deviation (ddof = 1) across the synthetic T1w images of this "
                       "participant made with different seeds (intensity units of the [0, 1] images).",
        "Sources": [naming.bids_uri("", output_dir / naming.synth_path(subject, session, s, len(seeds)), output_dir)
                    for s in seeds],
        "RandomSeeds": [int(s) for s in seeds],
        "SeedStdSummary": stats,
        "SeedStdSummaryDescription": "Voxel count, mean and median std per zone, from the conditioning's ribbon "
                                     "and SDFs: ribbon; brain_other = inside the pial surfaces and outside the "
                                     "ribbon (= inside the white surfaces); outside_brain = outside the pial "
                                     "surfaces; and the split of these by distance (band_mm): white_near, "
                                     "white_deep, outside_near, outside_far. ribbon_to_brain_ratio = ribbon mean / "
                                     "brain_other mean; ribbon_to_<zone>_ratio = ribbon mean / zone mean.",
    }
    return [dst, write_json(naming.sidecar_of(dst), sidecar)]


class _WriteAtrophyInputSpec(PublishInputSpec):
    sources = traits.List(traits.Str, desc="BIDS URIs of the inputs (sidecar 'Sources')")
    published = traits.List(traits.Str, desc="the main derivatives node's files (orders this node after it)")
    spec = File(exists=True, desc="atrophy spec")
    surfaces_report = File(exists=True, desc="atrophy_surfaces' report (JSON)")
    step_images = InputMultiObject(File(exists=True), desc="synthetic T1w per step")
    pial_gifti = InputMultiObject(File(exists=True), desc="thinned pial GIFTI per step and hemisphere")
    atrophy_dir = traits.Directory(exists=True, desc="the atrophy QC folder")
    seedstd = File(exists=True, desc="seed std map")
    seedstd_summary = File(exists=True, desc="seed std summary (JSON)")


class _WriteAtrophyOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str)


class WriteAtrophyDerivatives(SimpleInterface):
    """Publish the atrophy series and/or the seed std map (names from ``bids.naming``)."""

    input_spec = _WriteAtrophyInputSpec
    output_spec = _WriteAtrophyOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        from nipype.interfaces.base import isdefined

        from .derivatives import synthetic_sidecar

        i = self.inputs
        out_dir = Path(i.output_dir)
        session = optional_session(i)
        run = json.loads(Path(i.run_json).read_text())
        sources = list(i.sources) if isdefined(i.sources) else []
        seeds = [int(s) for s in run["seeds"]]
        written: list[Path] = []
        if isdefined(i.spec):
            baseline = out_dir / naming.synth_path(i.subject, session, seeds[0], run["num_samples"])
            files, _ = write_atrophy_derivatives(
                out_dir, i.subject, session, synthetic_sidecar(run, seeds[0], sources), Path(i.spec),
                Path(i.surfaces_report), [Path(p) for p in i.step_images], [Path(p) for p in i.pial_gifti],
                Path(i.atrophy_dir), baseline)
            written += files
        if isdefined(i.seedstd):
            written += write_seedstd_derivatives(out_dir, i.subject, session, Path(i.seedstd),
                                                 Path(i.seedstd_summary), seeds)
        self._results["out_files"] = [str(f) for f in written]
        return runtime


# -- report section ------------------------------------------------------------------------------------------


def series_report_section(output_dir: Path, subject: str, session: str | None,
                          report_path: Path) -> tuple[str | None, list[tuple[str, Path]]]:
    """HTML of the report's "Atrophy series / seeds" section from the published files (None when neither was
    made) and the (what, file) rows of the report's output list."""
    from html import escape

    from ..qc.atrophy import read_atrophy_tsv
    from ..reports.measures import region_name
    from ..reports.page import rel, table

    output_dir = Path(output_dir)
    parts: list[str] = []
    outputs: list[tuple[str, Path]] = []
    tsv = output_dir / naming.atrophy_qc_path(subject, session)
    if tsv.is_file():
        summary_path = output_dir / naming.atrophy_summary_path(subject, session)
        rows = read_atrophy_tsv(tsv)
        last = max(r["step"] for r in rows)
        parts.append(f"<p>Progressive atrophy series: {last} step(s), each synthesised with the baseline's seed from "
                     "pial surfaces thinned as the spec prescribes. Surface thinning is measured on the thinned "
                     "surfaces (FreeSurfer thickness), image thinning as the inward shift of the grey-matter/CSF "
                     "edge from the baseline to the step image: the intensity difference integrated along the "
                     "baseline's white→pial lines, divided by the fitted grey-matter − CSF contrast"
                     + (", after normalising each step image to the baseline with a smooth gain field estimated on "
                        "deep white matter (the raw measure is the TSV's image_raw_mm)" if summary_path.is_file()
                        and json.loads(summary_path.read_text()).get("image_intensity_normalisation", {}).get(
                            "applied") else "") + ".</p>")

        def mm(v: float) -> str:
            return "n/a" if v != v else f"{v:.3f}"

        spec_rows = [r for r in rows if r["in_spec"]]
        parts.append(table(["Step", "Hemi", "Region", "Prescribed (mm)", "Surface (mm)", "Image (mm)", "Coverage"],
                           [(str(r["step"]), escape(r["hemi"]), escape(region_name(r["region"])),
                             mm(r["prescribed_mm"]), mm(r["surface_mm"]), mm(r["image_mm"]),
                             "n/a" if r["image_coverage"] != r["image_coverage"]
                             else f"{100 * r['image_coverage']:.0f} %") for r in spec_rows],
                           numeric=[True, False, False, True, True, True, True]))
        others = [abs(r["image_mm"]) for r in rows if r["step"] == last and not r["in_spec"]
                  and r["image_mm"] == r["image_mm"]]
        raw_others = [abs(r["image_raw_mm"]) for r in rows if r["step"] == last and not r["in_spec"]
                      and r.get("image_raw_mm", float("nan")) == r.get("image_raw_mm", float("nan"))]
        if others:
            parts.append(f"<p>Regions not in the spec, last step: largest |image change| {max(others):.3f} mm, "
                         f"median {float(np.median(others)):.3f} mm"
                         + (f" (without the normalisation: {max(raw_others):.3f} mm)" if raw_others else "")
                         + ".</p>")
        for desc, suffix, alt, caption in (
                ("atrophyseries", "T1w", "Coronal slices of the baseline and each atrophy step, and their differences",
                 "Baseline and steps (coronal slice through the centre of the first prescribed region, marked +) "
                 "and each step minus the baseline (blue: darker in the step image)."),
                ("atrophyplot", "qc", "Scatter plot of prescribed against measured thinning",
                 "Prescribed vs measured thinning per region and step.")):
            fig = output_dir / naming.figure_path(subject, session, desc, suffix)
            if fig.is_file():
                parts.append(f"<figure><img src='{escape(rel(fig, report_path))}' alt='{escape(alt)}'>"
                             f"<figcaption>{escape(caption)}</figcaption></figure>")
        outputs += [("Atrophy: prescribed vs measured (TSV)", tsv), ("Atrophy: targets and surface checks",
                                                                      summary_path)]
        outputs += [(f"Atrophy step {k} T1w", output_dir / naming.atrophy_image_path(subject, session, k))
                    for k in range(1, last + 1)]
        outputs += [(f"Atrophy step {k} thinned pial surface, {side}",
                     output_dir / naming.atrophy_pial_path(subject, session, hemi, k))
                    for k in range(1, last + 1) for hemi, side in (("L", "left"), ("R", "right"))
                    if (output_dir / naming.atrophy_pial_path(subject, session, hemi, k)).is_file()]
    std_side = output_dir / naming.seedstd_path(subject, session, ".json")
    if std_side.is_file():
        s = json.loads(std_side.read_text())["SeedStdSummary"]
        parts.append(f"<p>Seed variability over {s['n_samples']} samples (voxel-wise standard deviation): mean "
                     f"{s['ribbon_mean_std']:.4f} inside the cortical ribbon, {s['brain_other_mean_std']:.4f} inside "
                     f"the white surfaces, {s['outside_brain_mean_std']:.4f} outside the pial surfaces; ribbon / "
                     f"inside white = {s['ribbon_to_brain_ratio']:.2f} (the cortex should agree across seeds: "
                     "≤ 0.5).</p>")
        zones = [(z, s[f"{z}_mean_std"], s.get(f"ribbon_to_{z}_ratio", float("nan")))
                 for z in ("white_near", "white_deep", "outside_near", "outside_far") if f"{z}_mean_std" in s]
        if zones:
            parts.append(table(["Zone", "Mean std (image intensity, 0–1)", "Ribbon / zone (ratio)"],
                               [(escape(z.replace("_", " ")), f"{m:.4f}", f"{r:.2f}") for z, m, r in zones],
                               numeric=[False, True, True]))
        outputs.append(("Seed standard deviation map", output_dir / naming.seedstd_path(subject, session)))
    return ("".join(parts) if parts else None), outputs
