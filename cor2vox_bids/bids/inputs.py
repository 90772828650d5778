"""Input discovery with pybids: participants, sessions, T1w images and surfaces, checked before any work.

Two sources of surfaces are supported:

* FreeSurfer subjects (``--fs-subjects-dir`` or ``BIDS_DIR/derivatives/freesurfer``): ``sub-<label>`` (or
  ``sub-<label>_ses-<session>``) folders with ``surf/?h.{white,pial}``, ``mri/orig.mgz`` and optionally
  ``label/?h.aparc.annot``, ``surf/?h.thickness``, ``surf/?h.sphere.reg``.
* sMRIPrep GIFTI derivatives (``--derivatives smriprep=PATH``): ``sub-<label>_hemi-{L,R}_{white|smoothwm,pial}
  .surf.gii`` indexed with pybids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingInputError, MissingParticipantFileError, UsageError
from ..geometry.surfaces import HEMIS
from ..settings import Settings
from .preflight import check_filter_entities, check_session_labels

LOGGER = logging.getLogger("cor2vox_bids.inputs")

FS_HEMI = {"L": "lh", "R": "rh"}
SOURCES = ("freesurfer", "gifti")
#: dataset names used in BIDS URIs of the sources (``bids:<name>:<path>``)
SOURCE_DATASET = {"freesurfer": "freesurfer", "gifti": "smriprep"}


def participant_key(subject: str, session: str | None) -> str:
    """``sub-01`` or ``sub-01_ses-A``: the name of one unit of work."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


@dataclass(frozen=True)
class HemiFiles:
    """The files of one hemisphere (paths, not contents)."""

    white: Path
    pial: Path
    annot: Path | None = None
    thickness: Path | None = None
    sphere: Path | None = None

    def files(self) -> list[Path]:
        """The files that exist, in a fixed order (white, pial, annot, thickness, sphere)."""
        return [p for p in (self.white, self.pial, self.annot, self.thickness, self.sphere) if p is not None]


@dataclass(frozen=True)
class ParticipantInputs:
    """Everything one participant (and session) needs; every path checked to exist.

    ``source`` is ``"freesurfer"`` (tkr RAS surfaces, ``orig`` maps them to scanner RAS) or ``"gifti"`` (sMRIPrep,
    scanner RAS, ``orig`` is None). ``source_root`` is the dataset the surfaces come from (FreeSurfer subjects dir
    or sMRIPrep derivatives) and ``bids_dir`` the raw dataset: both only name the files in BIDS URIs.
    """

    subject: str
    session: str | None
    source: str
    hemis: dict[str, HemiFiles]
    source_root: Path
    bids_dir: Path
    t1w: Path | None = None
    orig: Path | None = None
    subject_dir: Path | None = None  # FreeSurfer subject folder (for messages)

    @property
    def key(self) -> str:
        """``sub-01`` or ``sub-01_ses-A``: the name of this unit of work."""
        return participant_key(self.subject, self.session)

    def surface_files(self) -> list[Path]:
        """Surfaces, annotations and morphometry of both hemispheres (L then R)."""
        return [p for h in HEMIS for p in self.hemis[h].files()]

    def source_uris(self) -> list[str]:
        """BIDS URIs of the surfaces and annotations (and of the T1w used for QC)."""
        from .naming import bids_uri

        name = SOURCE_DATASET[self.source]
        uris = [
            bids_uri(name, p, self.source_root)
            for h in HEMIS
            for p in (self.hemis[h].white, self.hemis[h].pial, self.hemis[h].annot)
            if p is not None
        ]
        if self.t1w is not None:
            uris.append(bids_uri("raw", self.t1w, self.bids_dir))
        return uris


@dataclass(frozen=True)
class InputFailure:
    """A participant left out before any work, with the reason and the file at fault."""

    subject: str
    session: str | None
    message: str
    path: Path | None = None

    @property
    def key(self) -> str:
        return participant_key(self.subject, self.session)


def check_output_dir(bids_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that would overwrite or pollute another dataset (64); the rules are in
    :func:`cor2vox_bids.bids.preflight.check_output_location`."""
    from .preflight import check_output_location

    check_output_location(bids_dir, output_dir)


def load_filters(path: Path | None) -> dict[str, Any]:
    """Read ``--bids-filter-file``; only the ``t1w`` query is used."""
    if path is None:
        return {}
    if not path.is_file():
        raise MissingInputError("the BIDS filter file does not exist", path)
    try:
        filters = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read the BIDS filter file as JSON: {exc}", path) from None
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError('the BIDS filter file must map query names to filters, e.g. {"t1w": {...}}', path)
    unknown = set(filters) - {"t1w"}
    if unknown:
        raise UsageError(f"unknown query names {sorted(unknown)} (cor2vox-bids uses: t1w)", path)
    return filters


def make_layout(bids_dir: Path, validate: bool) -> Any:
    """A pybids layout of the raw dataset (derivatives are not indexed here)."""
    from bids import BIDSLayout

    if not bids_dir.is_dir():
        raise MissingInputError("the BIDS dataset folder does not exist", bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise MissingInputError("not a BIDS dataset: dataset_description.json is missing", bids_dir)
    try:
        return BIDSLayout(str(bids_dir), validate=validate, derivatives=False)
    except Exception as exc:  # pybids raises its own BIDSValidationError/ValueError types
        raise UsageError(f"pybids cannot index the dataset: {exc}", bids_dir) from None


def select_participants(layout: Any, labels: list[str] | None) -> list[str]:
    """Participant labels to run; an unknown label is a usage error listing those that exist."""
    available = sorted(layout.get_subjects())
    if not labels:
        if not available:
            raise MissingInputError("the dataset has no sub-<label> folders", Path(layout.root))
        return available
    unknown = [label for label in labels if label not in available]
    if unknown:
        raise UsageError(
            f"participant label(s) {', '.join(unknown)} not found in {layout.root}; "
            f"labels that exist: {', '.join(available) or '(none)'}"
        )
    return list(labels)


def select_sessions(layout: Any, subject: str, labels: list[str] | None) -> list[str | None]:
    """Sessions of ``subject`` to run ([None] for a dataset without sessions)."""
    sessions = sorted(layout.get_sessions(subject=subject))
    if not sessions:
        return [None]
    if labels:
        chosen = [s for s in sessions if s in labels]
        return chosen  # may be empty: that subject has none of the requested sessions
    return list(sessions)


def find_t1w(layout: Any, subject: str, session: str | None, filters: dict[str, Any]) -> Path | None:
    """The participant's T1w (first run) or None."""
    query: dict[str, Any] = {"suffix": "T1w", "extension": [".nii", ".nii.gz"], "datatype": "anat"}
    query.update(filters.get("t1w", {}))
    query["subject"] = subject
    if session:
        query["session"] = session
    files = sorted(layout.get(return_type="file", **query))
    return Path(files[0]) if files else None


def resolve_fs_subjects_dir(settings: Settings) -> Path | None:
    """``--fs-subjects-dir``, else ``BIDS_DIR/derivatives/freesurfer`` if present; a given dir must exist."""
    if settings.fs_subjects_dir is not None:
        if not settings.fs_subjects_dir.is_dir():
            raise MissingInputError("the FreeSurfer subjects directory does not exist", settings.fs_subjects_dir)
        return settings.fs_subjects_dir
    default = settings.bids_dir / "derivatives" / "freesurfer"
    return default if default.is_dir() else None


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingParticipantFileError(f"missing {what}", path)
    return path


def _optional(path: Path) -> Path | None:
    return path if path.is_file() else None


def freesurfer_inputs(subjects_dir: Path, subject: str, session: str | None) -> tuple[Path, dict[str, HemiFiles], Path]:
    """Locate a FreeSurfer subject's files; missing required files raise MissingParticipantFileError."""
    candidates = ([subjects_dir / f"sub-{subject}_ses-{session}"] if session else []) + [
        subjects_dir / f"sub-{subject}"
    ]
    subject_dir = next((c for c in candidates if c.is_dir()), None)
    if subject_dir is None:
        raise MissingParticipantFileError("missing FreeSurfer subject folder", candidates[-1])
    orig = subject_dir / "mri" / "orig.mgz"
    if not orig.is_file():
        orig = _require(
            subject_dir / "mri" / "T1.mgz", "mri/orig.mgz (or mri/T1.mgz), needed for the tkr → scanner frame"
        )
    hemis = {}
    for hemi, fs in FS_HEMI.items():
        hemis[hemi] = HemiFiles(
            white=_require(subject_dir / "surf" / f"{fs}.white", "white surface"),
            pial=_require(subject_dir / "surf" / f"{fs}.pial", "pial surface"),
            annot=_optional(subject_dir / "label" / f"{fs}.aparc.annot"),
            thickness=_optional(subject_dir / "surf" / f"{fs}.thickness"),
            sphere=_optional(subject_dir / "surf" / f"{fs}.sphere.reg"),
        )
    return subject_dir, hemis, orig


def gifti_inputs(deriv_dir: Path, subject: str, session: str | None) -> dict[str, HemiFiles]:
    """Locate sMRIPrep GIFTI surfaces with pybids (white, or smoothwm when white is absent)."""
    from bids import BIDSLayout

    layout = BIDSLayout(str(deriv_dir), validate=False, is_derivative=True)
    hemis = {}
    for hemi in HEMIS:
        found: dict[str, Path] = {}
        for suffix in ("white", "smoothwm", "pial"):
            query: dict[str, Any] = {"subject": subject, "hemi": hemi, "suffix": suffix, "extension": ".surf.gii"}
            if session:
                query["session"] = session
            files = sorted(layout.get(return_type="file", **query))
            if files:
                found[suffix] = Path(files[0])
        white = found.get("white") or found.get("smoothwm")
        anat = deriv_dir / f"sub-{subject}" / "anat"
        if white is None:
            raise MissingParticipantFileError(
                "missing white (or smoothwm) GIFTI surface", anat / f"sub-{subject}_hemi-{hemi}_white.surf.gii"
            )
        if "pial" not in found:
            raise MissingParticipantFileError(
                "missing pial GIFTI surface", anat / f"sub-{subject}_hemi-{hemi}_pial.surf.gii"
            )
        hemis[hemi] = HemiFiles(white=white, pial=found["pial"])
    return hemis


def collect_inputs(settings: Settings) -> tuple[list[ParticipantInputs], list[InputFailure], Any]:
    """Find and check every selected participant's inputs before any work.

    Whole-run problems raise a ``RunError``; a participant whose files are missing is returned as an
    :class:`InputFailure` (file and reason named) and left out.
    """
    layout = make_layout(settings.bids_dir, validate=not settings.skip_bids_validation)
    filters = load_filters(settings.bids_filter_file)
    subjects = select_participants(layout, settings.participant_label)
    fs_dir = resolve_fs_subjects_dir(settings)
    smriprep = settings.derivatives_map().get("smriprep")
    if smriprep is not None and not smriprep.is_dir():
        raise MissingInputError("the sMRIPrep derivatives folder does not exist", smriprep)
    if fs_dir is None and smriprep is None:
        raise MissingInputError(
            "no surfaces source: give --fs-subjects-dir or --derivatives smriprep=PATH "
            "(BIDS_DIR/derivatives/freesurfer does not exist)",
            settings.bids_dir / "derivatives" / "freesurfer",
        )
    if filters:
        check_filter_entities(filters, layout.get_entities(), Path(settings.bids_filter_file))
    check_session_labels(settings.session_label, {s: layout.get_sessions(subject=s) for s in subjects})
    bids_dir = Path(settings.bids_dir).resolve()
    ok: list[ParticipantInputs] = []
    failed: list[InputFailure] = []
    for subject in subjects:
        for session in select_sessions(layout, subject, settings.session_label):
            try:
                t1w = find_t1w(layout, subject, session, filters)
                if t1w is None:
                    unfiltered = find_t1w(layout, subject, session, {}) if filters.get("t1w") else None
                    if unfiltered is not None:
                        raise MissingParticipantFileError(
                            f"the t1w query matches none of {participant_key(subject, session)}'s T1w images "
                            f"(e.g. {unfiltered.name})",
                            Path(settings.bids_filter_file),
                        )
                    LOGGER.warning(
                        "%s: no T1w image found; the surface-to-T1w frame and identity checks and the "
                        "image QC are off for it",
                        participant_key(subject, session),
                    )
                if smriprep is not None:
                    item = ParticipantInputs(
                        subject,
                        session,
                        "gifti",
                        gifti_inputs(smriprep, subject, session),
                        smriprep.resolve(),
                        bids_dir,
                        t1w,
                    )
                else:
                    subject_dir, hemis, orig = freesurfer_inputs(fs_dir, subject, session)
                    item = ParticipantInputs(
                        subject, session, "freesurfer", hemis, fs_dir.resolve(), bids_dir, t1w, orig, subject_dir
                    )
            except MissingParticipantFileError as exc:
                LOGGER.error("%s: %s", participant_key(subject, session), exc)
                failed.append(InputFailure(subject, session, str(exc), exc.path))
                continue
            ok.append(item)
    return ok, failed, layout
