"""Checks made before any work: where the outputs go, the filter file, session labels, and each T1w image.

Whole-run problems raise :class:`~cor2vox_bids.errors.UsageError` (exit 64) naming the file or folder; a bad T1w
raises :class:`~cor2vox_bids.errors.ImageError`, which fails that participant only.

Output folder rules (also in the README and ``--help``): the output may be a new folder, an empty one, or an earlier
cor2vox-bids output (its own ``dataset_description.json``, or only cor2vox-bids logs from a run stopped before it was
written). Refused: the raw dataset itself and anything inside it outside ``derivatives/``; ``derivatives/`` itself;
any folder whose ``dataset_description.json`` another pipeline wrote (e.g. ``derivatives/freesurfer``), or that holds
another dataset or FreeSurfer subjects below it; any other non-empty folder.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, UsageError

#: the pipeline name cor2vox-bids writes in GeneratedBy of its dataset_description.json
PIPELINE_NAME = "cor2vox-bids"
#: pybids query keys a filter may use besides the entities
_QUERY_KEYS = {"extension", "suffix", "datatype"}


def _description_owner(path: Path) -> str | None:
    """The pipeline named first in GeneratedBy (or the dataset Name) of a dataset_description.json; None when
    unreadable."""
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(desc, dict):
        return None
    generated = desc.get("GeneratedBy")
    if isinstance(generated, list) and generated and isinstance(generated[0], dict) and generated[0].get("Name"):
        return str(generated[0]["Name"])
    return str(desc.get("Name") or desc.get("DatasetType") or "unnamed dataset")


def _is_own_trace(entry: Path) -> bool:
    """Files a cor2vox-bids run leaves before writing dataset_description.json: ``log/``, ``sub-*/log/``, hidden
    files and the write probe."""
    if entry.name.startswith("."):
        return True
    if entry.is_dir() and entry.name == "log":
        return True
    if entry.is_dir() and entry.name.startswith("sub-"):
        return all(c.name == "log" or c.name.startswith(".") for c in entry.iterdir())
    return False


def _foreign_dataset_below(folder: Path, depth: int = 2) -> Path | None:
    """A dataset_description.json or a FreeSurfer ``surf/`` folder up to ``depth`` levels below ``folder``."""
    level = [folder]
    for _ in range(depth):
        nxt = []
        for d in level:
            try:
                children = [c for c in d.iterdir() if c.is_dir() and not c.is_symlink()]
            except OSError:
                continue
            for c in children:
                if (c / "dataset_description.json").is_file():
                    return c / "dataset_description.json"
                if (c / "surf").is_dir() and (c / "mri").is_dir():
                    return c / "surf"
                nxt.append(c)
        level = nxt
    return None


def check_output_location(bids_dir: Path, output_dir: Path) -> None:
    """Refuse an output folder that would overwrite or pollute another dataset (see the module docstring)."""
    bids = Path(bids_dir).resolve()
    out = Path(output_dir).resolve()
    derivs = bids / "derivatives"
    if out == bids or (bids in out.parents and derivs not in out.parents):
        where = "is" if out == bids else "is inside"
        raise UsageError(f"the output folder {where} the input dataset {bids_dir} outside its derivatives/ folder; "
                         f"choose a new folder outside it or e.g. {derivs / 'cor2vox'}", output_dir)
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError("the output path exists and is not a folder", output_dir)
    if out == derivs:
        raise UsageError("the output folder is the dataset's derivatives/ folder, which holds other pipelines' "
                         f"outputs; use a folder inside it, e.g. {derivs / 'cor2vox'}", output_dir)
    desc = out / "dataset_description.json"
    if desc.is_file():
        owner = _description_owner(desc)
        if owner != PIPELINE_NAME:
            raise UsageError(f"the output folder holds another dataset ({owner or 'unreadable description'}); "
                             "cor2vox-bids would overwrite its files. Choose a new folder", desc)
        return
    nested = _foreign_dataset_below(out)
    if nested is not None:
        raise UsageError(f"the output folder holds another dataset ({nested.parent}); choose a new folder", nested)
    try:
        foreign = sorted(e.name for e in out.iterdir() if not _is_own_trace(e))
    except OSError as exc:
        raise UsageError(f"cannot list the output folder: {exc.strerror}", output_dir) from None
    if foreign:
        raise UsageError(f"the output folder is not empty and is not an earlier cor2vox-bids output (it holds "
                         f"{', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}); choose a new folder",
                         output_dir)


#: the keys of BIDS file names (``acq-``, ``rec-``...) → pybids' entity names, to help a filter file that uses them
_FILENAME_KEYS = {"sub": "subject", "ses": "session", "acq": "acquisition", "ce": "ceagent", "rec": "reconstruction",
                  "dir": "direction", "mod": "modality", "trc": "tracer"}


def check_filter_entities(filters: Mapping[str, Any], known_entities: Iterable[str], path: Path) -> None:
    """Every key of every query in a ``--bids-filter-file`` must be a BIDS entity pybids knows (else 64)."""
    known = set(known_entities) | _QUERY_KEYS
    for query, spec in filters.items():
        unknown = sorted(k for k in spec if k not in known)
        if unknown:
            hints = [f"{k!r} → {_FILENAME_KEYS[k]!r}" for k in unknown if _FILENAME_KEYS.get(k) in known]
            hint = f" (pybids names the file-name keys in full: {', '.join(hints)})" if hints else ""
            raise UsageError(f"query {query!r} uses unknown entities {unknown}{hint}; known: "
                             f"{', '.join(sorted(known))}", path)
        for key, value in spec.items():
            items = value if isinstance(value, list) else [value]
            if not all(v is None or isinstance(v, (str, int, bool)) for v in items):
                raise UsageError(f"query {query!r}: {key} must be a string, number, null or a list of them", path)


def check_session_labels(requested: Iterable[str] | None, sessions: Mapping[str, Iterable[str]]) -> None:
    """``--session-label`` values must each match a session of at least one selected participant (else 64)."""
    if not requested:
        return
    existing = sorted({s for per_subject in sessions.values() for s in per_subject})
    unmatched = [s for s in requested if s not in existing]
    if unmatched:
        have = ", ".join(existing) if existing else "none (the dataset has no ses-<label> folders)"
        raise UsageError(f"session label(s) {', '.join(unmatched)} match no session of the selected participants; "
                         f"sessions that exist: {have}")


def load_t1w(path: Path) -> Any:
    """Read a T1w fully and check it: readable (not truncated, valid gzip), 3D (a trailing singleton axis is
    dropped), finite, not constant, with a finite invertible affine. Returns an in-memory nibabel image (float32
    data); raises :class:`ImageError` naming the file."""
    import nibabel as nib

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"T1w cannot be read: {exc.strerror or exc}", path) from None
    try:
        # the whole stream is decompressed, so a bad CRC or a truncated member is found here, not mid-run
        buf = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise ImageError(f"T1w is not a valid gzip file (corrupt or truncated: {exc})", path) from None
    sizes = {int.from_bytes(buf[:4], "little"), int.from_bytes(buf[:4], "big")} if len(buf) >= 4 else set()
    klass = nib.Nifti1Image if 348 in sizes else nib.Nifti2Image if 540 in sizes else None
    if klass is None:
        raise ImageError("T1w is not a NIfTI-1/2 image (bad header size field)", path)
    try:
        img = klass.from_bytes(buf)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several types (ValueError, HeaderDataError, OSError, …)
        raise ImageError(f"T1w cannot be read (corrupt or truncated file: {str(exc).splitlines()[0]})",
                         path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageError(f"T1w has {data.ndim} dimensions (shape {tuple(data.shape)}); one 3D volume is needed "
                         "(select one with --bids-filter-file or split the series)", path)
    if min(data.shape) < 2:
        raise ImageError(f"T1w has a degenerate shape {tuple(data.shape)}", path)
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ImageError(f"T1w has non-real voxel type {data.dtype}", path)
    data = np.asarray(data, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise ImageError(f"T1w has {bad} NaN/inf voxels", path)
    if float(data.max()) <= float(data.min()):
        raise ImageError(f"T1w is constant (every voxel {float(data.min()):g})", path)
    affine = np.asarray(img.affine, dtype=np.float64)
    lin = affine[:3, :3]
    det = float(np.linalg.det(lin)) if np.isfinite(affine).all() else float("nan")
    if not np.isfinite(det) or abs(det) < 1e-6 * max(float(np.abs(lin).max()), 1e-12) ** 3:
        raise ImageError("T1w has a singular or non-finite affine (voxel-to-world matrix); fix the header's "
                         "qform/sform", path)
    return nib.Nifti1Image(data, affine)
