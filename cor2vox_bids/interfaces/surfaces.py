"""Ingest: read both hemispheres in scanner RAS, validate them, store them for the next nodes."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits

from ..bids.inputs import HEMIS, HemiFiles
from ..errors import SurfaceError
from ..geometry import cortical_thickness, validate_hemisphere, validate_pair
from ..geometry.surfaces import (
    Hemisphere,
    load_gifti_hemisphere,
    read_annotation,
    read_freesurfer_surface,
    read_morph,
    save_hemispheres,
    tkr_to_scanner_matrix,
)

LOGGER = logging.getLogger("cor2vox_bids.interfaces")


def _labels_dk_region(labels, names) -> bool:
    """True when at least one vertex carries a Desikan-Killiany region label."""
    from ..geometry.atlas import DK_REGIONS

    ids = [i for i, n in enumerate(names or []) if n in DK_REGIONS]
    return bool(ids) and bool(np.isin(labels, ids).any())


def load_hemisphere(files: HemiFiles, hemi: str, source: str, orig: Path | None) -> Hemisphere:
    """One hemisphere from its files, in scanner RAS (FreeSurfer surfaces mapped with ``orig``'s tkr matrix)."""
    if source == "gifti":
        return load_gifti_hemisphere(files.white, files.pial, annot_path=files.annot, hemi=hemi)
    xfm = tkr_to_scanner_matrix(orig)
    white, pial = read_freesurfer_surface(files.white, xfm), read_freesurfer_surface(files.pial, xfm)
    labels = names = thickness = None
    if files.annot is not None:
        labels, names = read_annotation(files.annot)
    if files.thickness is not None:
        thickness = read_morph(files.thickness)
    if labels is not None and not _labels_dk_region(labels, names):
        raise SurfaceError("annotation labels no vertex with a Desikan-Killiany region (empty or another atlas); "
                           "the per-region QC needs aparc (remove the file to run without region QC)", path=files.annot)
    for what, arr, path in (("annotation", labels, files.annot), ("thickness file", thickness, files.thickness)):
        if arr is not None and len(arr) != white.n_vertices:  # blame the file that is wrong, not the surface
            raise SurfaceError(f"{what} has {len(arr)} entries but {files.white.name} has {white.n_vertices} "
                               "vertices; it belongs to another reconstruction or is damaged", path=path)
    return Hemisphere(hemi, white, pial, labels, names, thickness)


def load_and_validate(
    hemis: dict[str, HemiFiles], source: str, orig: Path | None, t1w: Path | None, t1_img=None
) -> tuple[list[Hemisphere], list[str]]:
    """Both hemispheres (L, R) read and checked against each other and the T1w; returns them and the warnings.

    ``t1_img`` is the T1w already read (``bids.preflight.load_t1w``); else ``t1w`` is loaded here.
    Raises ``SurfaceError`` naming the file at fault.
    """
    t1 = t1_img if t1_img is not None else nib.load(str(t1w)) if t1w is not None else None
    loaded = [load_hemisphere(hemis[h], h, source, orig) for h in HEMIS]
    warnings: list[str] = []
    for h in loaded:
        warnings += validate_hemisphere(h, t1)
    warnings += validate_pair(loaded[0], loaded[1], t1)
    return loaded, warnings


def with_mesh_thickness(hemis: list[Hemisphere]) -> list[Hemisphere]:
    """The hemispheres with ``thickness`` set to the closest-point thickness of their meshes (FreeSurfer's
    definition, computed here so GIFTI and FreeSurfer inputs get the same measure; ``?h.thickness`` is only
    validated)."""
    for h in hemis:
        h.thickness = cortical_thickness(h.white.vertices, h.white.faces, h.pial.vertices, h.pial.faces)
    return hemis


def _file(desc: str, mandatory: bool = False):
    return File(exists=True, mandatory=mandatory, desc=desc)


class _IngestInputSpec(BaseInterfaceInputSpec):
    source = traits.Enum("freesurfer", "gifti", mandatory=True, desc="FreeSurfer (tkr RAS) or sMRIPrep GIFTI")
    white_L = _file("left white surface", True)
    pial_L = _file("left pial surface", True)
    annot_L = _file("left aparc annotation")
    thickness_L = _file("left FreeSurfer thickness (validated)")
    white_R = _file("right white surface", True)
    pial_R = _file("right pial surface", True)
    annot_R = _file("right aparc annotation")
    thickness_R = _file("right FreeSurfer thickness (validated)")
    orig = _file("mri/orig.mgz (tkr → scanner RAS) for FreeSurfer surfaces")
    t1w = _file("the participant's T1w (frame checks)")
    label = traits.Str("", usedefault=True, nohash=True, desc="participant key, for messages")


class _IngestOutputSpec(TraitedSpec):
    hemispheres = File(exists=True, desc="both hemispheres in scanner RAS (.npz, geometry.save_hemispheres)")
    warnings = traits.List(traits.Str)


def _opt(value) -> Path | None:
    return Path(value) if isdefined(value) else None


def hemi_files_of(inputs) -> dict[str, HemiFiles]:
    """The ``HemiFiles`` of both hemispheres from an Ingest node's inputs."""
    return {
        h: HemiFiles(
            white=Path(getattr(inputs, f"white_{h}")),
            pial=Path(getattr(inputs, f"pial_{h}")),
            annot=_opt(getattr(inputs, f"annot_{h}")),
            thickness=_opt(getattr(inputs, f"thickness_{h}")),
        )
        for h in HEMIS
    }


def ingest_inputs(hemis: dict[str, HemiFiles], source: str, orig: Path | None, t1w: Path | None) -> dict:
    """Keyword inputs of an Ingest node for these files (the inverse of :func:`hemi_files_of`)."""
    out: dict = {"source": source}
    for h in HEMIS:
        for kind in ("white", "pial", "annot", "thickness"):
            value = getattr(hemis[h], kind)
            if value is not None:
                out[f"{kind}_{h}"] = str(value)
    out.update({k: str(v) for k, v in (("orig", orig), ("t1w", t1w)) if v is not None})
    return out


class Ingest(SimpleInterface):
    """Read white/pial (+annotation) of both hemispheres, bring them to scanner RAS, validate, store."""

    input_spec = _IngestInputSpec
    output_spec = _IngestOutputSpec

    def _run_interface(self, runtime):
        hemis, warnings = load_and_validate(
            hemi_files_of(self.inputs), self.inputs.source, _opt(self.inputs.orig), _opt(self.inputs.t1w)
        )
        for w in warnings:
            LOGGER.warning("%s: %s", self.inputs.label, w)
        out = save_hemispheres(Path(runtime.cwd) / "hemispheres.npz", with_mesh_thickness(hemis))
        self._results["hemispheres"] = str(out)
        self._results["warnings"] = warnings
        return runtime
