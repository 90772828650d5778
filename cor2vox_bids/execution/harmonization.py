"""Group level with ``--reference-dataset``: how far each participant's tissue intensity distributions are from the
reference site's, for the participant's own T1w (before) and its synthetic, harmonized T1w (after).

The numbers come from :mod:`cor2vox_bids.qc.harmonization` (normalisation, tissue masks, quantile functions,
barycentre, W1); this module finds the files, builds the tissue masks on the model grid and runs the measure:

* harmonized participants (the group level's OUTPUT_DIR): masks from the saved conditioning maps
  (``--save-conditioning``) when they are on the synthetic image's grid, else recomputed from the participant's
  surfaces on that grid; before = the T1w in BIDS_DIR, after = the synthetic sample the participant QC measured;
* reference participants (``--reference-dataset``): surfaces (``derivatives/freesurfer`` or
  ``derivatives/smriprep``) read and validated like the participant level's, conditioning maps on a grid of the
  harmonized images' shape and spacing placed by the model's rule (centred on the pial surfaces), their T1w.

A bad reference dataset stops the run before anything is written (exit 66 missing, 64 unusable); a harmonized
participant whose files are missing is left out of the table with a warning naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from ..bids import naming
from ..bids.inputs import ParticipantInputs, collect_inputs, find_t1w, load_filters, make_layout
from ..errors import Cor2VoxError, MissingInputError, UsageError
from ..qc.harmonization import (
    TISSUES,
    barycentre,
    harmonization_rows,
    image_quantiles,
    reference_spread,
    thickness_agreement,
    tissue_masks,
)
from ..settings import Settings

LOGGER = logging.getLogger("cor2vox_bids.group")

Quantiles = dict[str, NDArray]


@dataclass
class HarmonizationResult:
    """Everything the table and the report section need."""

    rows: list[dict]
    before: dict[str, Quantiles]  # row label → tissue → quantile function
    after: dict[str, Quantiles]
    reference: Quantiles  # the reference site's barycentre per tissue
    spread: dict[str, float]
    reference_dir: Path
    reference_labels: list[str]
    left_out: dict[str, str] = field(default_factory=dict)  # row label → why


# -- the reference site ---------------------------------------------------------------------------------------


def _reference_error(exc: Cor2VoxError) -> Cor2VoxError:
    """The same error, its message saying it concerns ``--reference-dataset``."""
    return type(exc)(f"reference dataset (--reference-dataset): {exc.message}", exc.path)


def collect_reference(settings: Settings) -> list[ParticipantInputs]:
    """The reference participants with a T1w and surfaces; a missing or unusable reference dataset raises
    :class:`MissingInputError` (66) or :class:`UsageError` (64) naming the folder, before any work."""
    ref = settings.reference_dataset
    assert ref is not None
    if not ref.is_dir():
        raise MissingInputError("the reference dataset (--reference-dataset) does not exist", ref)
    if not (ref / "dataset_description.json").is_file():
        raise MissingInputError("the reference dataset (--reference-dataset) is not a BIDS dataset: "
                                "dataset_description.json is missing", ref)
    if ref.resolve() == Path(settings.output_dir).resolve():
        raise UsageError("the reference dataset (--reference-dataset) is the output folder; give the reference "
                         "site's raw BIDS dataset", ref)
    freesurfer, smriprep = ref / "derivatives" / "freesurfer", ref / "derivatives" / "smriprep"
    if not freesurfer.is_dir() and not smriprep.is_dir():
        raise MissingInputError("the reference dataset (--reference-dataset) has no surfaces: expected FreeSurfer "
                                "subjects in derivatives/freesurfer or sMRIPrep GIFTI surfaces in "
                                "derivatives/smriprep", freesurfer)
    ref_settings = Settings(
        bids_dir=ref, output_dir=settings.output_dir, analysis_level="group", skip_bids_validation=True,
        bids_filter_file=settings.bids_filter_file,
        fs_subjects_dir=freesurfer if freesurfer.is_dir() else None,
        derivatives=None if freesurfer.is_dir() else [f"smriprep={smriprep}"],
    )
    try:
        ready, failed, _ = collect_inputs(ref_settings)
    except Cor2VoxError as exc:
        raise _reference_error(exc) from None
    for f in failed:
        LOGGER.warning("reference %s left out: %s", f.key, f.message)
    usable = [p for p in ready if p.t1w is not None]
    for p in ready:
        if p.t1w is None:
            LOGGER.warning("reference %s left out: no T1w image", p.key)
    if not usable:
        raise MissingInputError("no participant of the reference dataset (--reference-dataset) has both a T1w "
                                "image and surfaces", ref)
    return usable


def _masks_from_maps(maps: Mapping[str, NDArray]) -> dict[str, NDArray]:
    return tissue_masks(maps["sdf_white"], maps["sdf_pial"], maps["ribbon"])


def _hemispheres(p: ParticipantInputs) -> list:
    """A participant's hemispheres in scanner RAS, read and validated like the participant level's (a bad surface
    raises ``SurfaceError`` naming the file)."""
    from ..interfaces.surfaces import load_and_validate

    t1 = nib.load(str(p.t1w)) if p.t1w is not None else None
    hemis, _ = load_and_validate(p.hemis, p.source, p.orig, p.t1w, t1)
    return hemis


def _masks_on(hemis: list, grid) -> dict[str, NDArray]:
    """Tissue masks from the surfaces' conditioning maps on ``grid``."""
    from ..geometry import conditioning_maps

    return _masks_from_maps(conditioning_maps(hemis, grid))


def summarise_image(path: Path, masks: Mapping[str, NDArray], grid_affine: NDArray) -> Quantiles:
    """Per-tissue quantile functions of the image at ``path`` on the masks' grid."""
    img = nib.load(str(path))
    return image_quantiles(np.asarray(img.dataobj, dtype=np.float64), img.affine, grid_affine, masks)


def reference_quantiles(participants: Sequence[ParticipantInputs], shape: Sequence[int], spacing: float
                        ) -> tuple[list[Quantiles], list[str]]:
    """Each reference participant's quantile functions (its T1w, masks from its surfaces on a grid of the
    harmonized images' shape and spacing); a participant whose files fail is left out with a warning."""
    from ..interfaces.synthesis import participant_grid

    out, labels = [], []
    for i, p in enumerate(participants, 1):
        try:
            hemis = _hemispheres(p)
            grid = participant_grid(hemis, shape, spacing)
            masks = _masks_on(hemis, grid)
            out.append(summarise_image(p.t1w, masks, grid.affine))
            labels.append(p.key)
        except (Cor2VoxError, OSError, ValueError) as exc:
            LOGGER.warning("reference %s left out: %s", p.key, " ".join(str(exc).split()))
            continue
        LOGGER.info("reference %s measured (%d/%d)", p.key, i, len(participants))
    return out, labels


# -- the harmonized participants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Harmonized:
    """One harmonized participant as the group level found it."""

    subject: str
    session: str | None
    summary_path: Path
    summary: dict
    rows: list[dict] | None


def _row_label(subject: str, session: str | None) -> str:
    return f"sub-{subject}" + (f" ses-{session}" if session else "")


def _saved_masks(out: Path, h: Harmonized, grid_affine: NDArray, shape: tuple[int, ...]) -> dict | None:
    """Masks from the conditioning maps saved by ``--save-conditioning``, if all are there and on the grid."""
    maps = {}
    for name in ("sdf_white", "sdf_pial", "ribbon"):
        path = out / naming.conditioning_path(h.subject, h.session, name)
        if not path.is_file():
            return None
        img = nib.load(str(path))
        if img.shape != shape or not np.allclose(img.affine, grid_affine, atol=1e-4):
            return None
        maps[name] = np.asarray(img.dataobj)
    return _masks_from_maps(maps)


def first_sample(out: Path, h: Harmonized) -> Path:
    """The participant's first synthetic T1w (the one its QC measured): ``desc-synth``, or with several samples the
    one of the lowest ``RandomSeed`` in its sidecar; raises :class:`MissingInputError` when there is none."""
    single = out / naming.synth_path(h.subject, h.session, 0, 1)
    if single.is_file():
        return single
    seeds = {}
    images = sorted(single.parent.glob("*" + naming.IMAGE_EXTENSION)) if single.parent.is_dir() else []
    for image in images:
        try:
            seed = json.loads(naming.sidecar_of(image).read_text(encoding="utf-8"))["RandomSeed"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if naming.synth_path(h.subject, h.session, int(seed), 2) == str(image.relative_to(out)):
            seeds[int(seed)] = image
    if not seeds:
        raise MissingInputError("no synthetic T1w of this participant (run the participant level first)", single)
    return seeds[min(seeds)]


def measure_participant(settings: Settings, h: Harmonized, layout, filters) -> tuple[Quantiles, Quantiles, tuple]:
    """(before, after, (shape, spacing)) of one harmonized participant; a missing file raises
    :class:`MissingInputError` naming it."""
    out = Path(settings.output_dir)
    synth = first_sample(out, h)
    t1w = find_t1w(layout, h.subject, h.session, filters)
    if t1w is None:
        raise MissingInputError(f"no T1w of {_row_label(h.subject, h.session)} in BIDS_DIR (the image before "
                                "harmonization)", Path(settings.bids_dir) / f"sub-{h.subject}")
    img = nib.load(str(synth))
    shape = tuple(int(s) for s in img.shape[:3])
    affine = img.affine
    masks = _saved_masks(out, h, affine, shape)
    if masks is None:  # no saved maps: the participant's surfaces on the synthetic image's grid
        from ..geometry import ModelGrid

        one = settings.model_copy(update={"participant_label": [h.subject],
                                          "session_label": [h.session] if h.session else None})
        ready, failed, _ = collect_inputs(one)
        if failed or not ready:
            f = failed[0] if failed else None
            raise MissingInputError(f"no conditioning maps saved and no surfaces found ({f.message if f else ''})",
                                    f.path if f is not None else None)
        masks = _masks_on(_hemispheres(ready[0]), ModelGrid(affine, shape))
    before = summarise_image(t1w, masks, affine)
    after = image_quantiles(np.asarray(img.dataobj, dtype=np.float64), affine, affine, masks)
    spacing = float(np.linalg.norm(affine[:3, :3], axis=0).mean())
    return before, after, (shape, spacing)


def run_harmonization(settings: Settings, participants: Sequence[Harmonized],
                      reference: Sequence[ParticipantInputs]) -> HarmonizationResult:
    """The harmonization table's rows and what the report plots; raises :class:`MissingInputError` when no
    participant (or no reference participant) could be measured."""
    layout = make_layout(Path(settings.bids_dir), validate=False)
    filters = load_filters(settings.bids_filter_file)
    measured: dict[str, tuple[Harmonized, Quantiles, Quantiles]] = {}
    left_out: dict[str, str] = {}
    grid_of: tuple | None = None
    for h in participants:
        label = _row_label(h.subject, h.session)
        try:
            before, after, grid = measure_participant(settings, h, layout, filters)
        except (Cor2VoxError, OSError, ValueError) as exc:
            LOGGER.warning("%s left out of the harmonization table: %s", label, " ".join(str(exc).split()))
            left_out[label] = " ".join(str(exc).split())
            continue
        if grid_of is None:
            grid_of = grid
        elif grid[0] != grid_of[0] or abs(grid[1] - grid_of[1]) > 1e-6:
            LOGGER.warning("%s: synthetic image grid %s at %.3g mm differs from the first participant's; the "
                           "reference is measured on the first one's", label, grid[0], grid[1])
        measured[label] = (h, before, after)
        LOGGER.info("%s measured for harmonization", label)
    if not measured:
        raise MissingInputError("no participant could be measured for harmonization: "
                                + "; ".join(f"{k}: {v}" for k, v in left_out.items()), settings.output_dir)
    ref_q, ref_labels = reference_quantiles(reference, *grid_of)
    if not ref_q:
        raise MissingInputError("no reference participant could be measured (reasons above)",
                                settings.reference_dataset)
    bary = {t: barycentre([q[t] for q in ref_q if t in q]) for t in TISSUES if any(t in q for q in ref_q)}
    spread = reference_spread(ref_q)
    rows: list[dict] = []
    for h, before, after in measured.values():
        ids = {"participant_id": f"sub-{h.subject}"}
        if h.session:
            ids["session_id"] = f"ses-{h.session}"
        rows += harmonization_rows(ids, before, after, bary, spread, len(ref_q),
                                   thickness_agreement(h.summary, h.rows))
    return HarmonizationResult(rows, {k: v[1] for k, v in measured.items()}, {k: v[2] for k, v in measured.items()},
                               bary, spread, Path(settings.reference_dataset), ref_labels, left_out)
