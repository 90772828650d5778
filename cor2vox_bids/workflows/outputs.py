"""Every derivative file name is made here, from BIDS entities (pybids path patterns), and nowhere else.

Naming of samples: one sample → ``sub-<label>[_ses-<label>]_desc-synth_T1w.nii.gz``; several samples →
``sub-<label>_desc-synthseed<seed>_T1w.nii.gz`` (the seed is part of the ``desc`` value, so every sample is a
valid derivative name that pybids indexes; BIDS ``rec`` is reserved for image reconstruction).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__

PATTERNS = [
    "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}][_hemi-{hemi}]"
    "[_space-{space}][_desc-{desc}]_{suffix<T1w|mask|dseg|probseg|sdf|edges|thickness|qc>}{extension<.nii.gz|.json|.tsv>}",
    "sub-{subject}/figures/sub-{subject}[_ses-{session}][_hemi-{hemi}][_desc-{desc}]_{suffix}{extension<.png|.svg>}",
    "sub-{subject}[_ses-{session}]{extension<.html>}",
    "sub-{subject}/log/{run}/{desc}{extension<.txt|.json>}",
    "group_desc-{desc<qc>}_{suffix}{extension<.tsv|.json|.html>}",
    "group/figures/group_desc-{desc}_{suffix}{extension<.png|.svg>}",
]

DATASET_LINKS_NAME = "cor2vox-bids"


def build_path(**entities: Any) -> str:
    """Relative derivative path for the given entities (raises ValueError if no pattern fits)."""
    from bids.layout.writing import build_path as _build

    clean = {k: v for k, v in entities.items() if v is not None}
    path = _build(clean, PATTERNS, strict=True)
    if path is None:
        raise ValueError(f"no derivative name for entities {clean}")
    return path


def sample_desc(seed: int, num_samples: int) -> str:
    """``synth`` for a single sample, ``synthseed<seed>`` when several are written."""
    return "synth" if num_samples == 1 else f"synthseed{seed}"


def synth_path(subject: str, session: str | None, seed: int, num_samples: int, extension: str = ".nii.gz") -> str:
    return build_path(subject=subject, session=session, desc=sample_desc(seed, num_samples), suffix="T1w",
                      extension=extension)


def conditioning_path(subject: str, session: str | None, name: str, extension: str = ".nii.gz") -> str:
    """Conditioning maps: ``desc-{pial,white,cortex}_sdf``, ``desc-ribbon_mask``, ``desc-meshedges_edges``."""
    table = {"sdf_pial": ("pial", "sdf"), "sdf_white": ("white", "sdf"), "sdf_cortex": ("cortex", "sdf"),
             "ribbon": ("ribbon", "mask"), "edges": ("meshedges", "edges")}
    desc, suffix = table[name]
    return build_path(subject=subject, session=session, desc=desc, suffix=suffix, extension=extension)


def qc_table_path(subject: str, session: str | None, extension: str = ".tsv") -> str:
    return build_path(subject=subject, session=session, desc="thickness", suffix="qc", extension=extension)


def qc_summary_path(subject: str, session: str | None) -> str:
    return build_path(subject=subject, session=session, desc="summary", suffix="qc", extension=".json")


def figure_path(subject: str, session: str | None, desc: str, suffix: str = "T1w", extension: str = ".png") -> str:
    return build_path(subject=subject, session=session, desc=desc, suffix=suffix, extension=extension)


def report_path(subject: str, session: str | None) -> str:
    return build_path(subject=subject, session=session, extension=".html")


def log_dir(subject: str, run_id: str) -> str:
    """``sub-<label>/log/<run-id>``: crash files and the per-participant snapshot."""
    return f"sub-{subject}/log/{run_id}"


def group_path(suffix: str, extension: str) -> str:
    """``group_desc-qc_<suffix><extension>`` (e.g. ``group_desc-qc_thickness.tsv``)."""
    return build_path(desc="qc", suffix=suffix, extension=extension)


def group_figure_path(desc: str, suffix: str = "qc", extension: str = ".png") -> str:
    return build_path(desc=desc, suffix=suffix, extension=extension)


def bids_uri(dataset: str, path: Path, root: Path) -> str:
    """``bids:<dataset>:<relative path>`` (BIDS URI) of a file inside a dataset root."""
    return f"bids:{dataset}:{Path(path).resolve().relative_to(Path(root).resolve()).as_posix()}"


def write_json(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def write_dataset_description(output_dir: Path, bids_dir: Path, fs_dir: Path | None, model_name: str,
                              container: str | None = None) -> None:
    """``dataset_description.json`` (derivative), ``README``, ``CITATION.cff`` and ``.bidsignore``."""
    generated = {"Name": "cor2vox-bids", "Version": __version__,
                 "CodeURL": "https://github.com/cor2vox/cor2vox-bids",
                 "Description": f"Synthetic T1w from cortical surfaces (model: {model_name})"}
    if container:
        generated["Container"] = {"Type": "docker", "Tag": container}
    sources = {"raw": f"file://{Path(bids_dir).resolve().as_posix()}"}
    if fs_dir is not None:
        sources["freesurfer"] = f"file://{Path(fs_dir).resolve().as_posix()}"
    write_json(output_dir / "dataset_description.json", {
        "Name": "cor2vox-bids synthetic T1w derivatives", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": url} for url in sources.values()],
        "DatasetLinks": sources,
        "HowToAcknowledge": "Cite Cor2Vox (arXiv 2601.19498) and cor2vox-bids; see CITATION.cff.",
    })
    (output_dir / "README").write_text(
        "# cor2vox-bids derivatives\n\nSynthetic T1-weighted images generated from cortical surfaces by "
        "cor2vox-bids, with per-region cortical thickness QC. Each image's JSON sidecar names its sources, the "
        f"model (with its sha256) and the random seed.\n\nModel: {model_name}.\n")
    (output_dir / "CITATION.cff").write_text(
        "cff-version: 1.2.0\nmessage: If you use these derivatives, please cite Cor2Vox.\n"
        "title: cor2vox-bids\nversion: " + __version__ + "\nreferences:\n  - type: article\n"
        "    title: Cortex-Grounded Diffusion Models for Brain Image Generation\n"
        "    identifiers:\n      - type: other\n        value: arXiv:2601.19498\n")
    (output_dir / ".bidsignore").write_text("log/\n*/log/\n*/figures/\ngroup/\n*.html\nCITATION.cff\n")
