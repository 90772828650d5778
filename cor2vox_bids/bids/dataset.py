"""The derivative dataset's own files: ``dataset_description.json``, README, CITATION.cff, ``.bidsignore``;
and the atomic JSON writer every sidecar goes through."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from . import atomic, naming


def write_json(path: Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON atomically (temporary file, then rename)."""
    return atomic.write_json(path, payload)


def write_dataset_description(
    output_dir: Path, bids_dir: Path, fs_dir: Path | None, model_name: str, container: str | None = None
) -> None:
    """``dataset_description.json`` (derivative), ``README``, ``CITATION.cff`` and ``.bidsignore``."""
    generated = {
        "Name": "cor2vox-bids",
        "Version": __version__,
        "CodeURL": "https://github.com/cor2vox/cor2vox-bids",
        "Description": f"Synthetic T1w from cortical surfaces (model: {model_name})",
    }
    if container:
        generated["Container"] = {"Type": "docker", "Tag": container}
    sources = {"raw": f"file://{Path(bids_dir).resolve().as_posix()}"}
    if fs_dir is not None:
        sources["freesurfer"] = f"file://{Path(fs_dir).resolve().as_posix()}"
    write_json(
        output_dir / "dataset_description.json",
        {
            "Name": "cor2vox-bids synthetic T1w derivatives",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [generated],
            "SourceDatasets": [{"URL": url} for url in sources.values()],
            "DatasetLinks": sources,
            "HowToAcknowledge": "Cite Cor2Vox (arXiv 2601.19498) and cor2vox-bids; see CITATION.cff.",
        },
    )
    atomic.write_text(output_dir / "README",
        "# cor2vox-bids derivatives\n\nSynthetic T1-weighted images generated from cortical surfaces by "
        "cor2vox-bids, with per-region cortical thickness QC. Each image's JSON sidecar names its sources, the "
        f"model (with its sha256) and the random seed.\n\nModel: {model_name}.\n"
    )
    atomic.write_text(output_dir / "CITATION.cff",
        "cff-version: 1.2.0\nmessage: If you use these derivatives, please cite Cor2Vox.\n"
        "title: cor2vox-bids\nversion: " + __version__ + "\nreferences:\n  - type: article\n"
        "    title: Cortex-Grounded Diffusion Models for Brain Image Generation\n"
        "    identifiers:\n      - type: other\n        value: arXiv:2601.19498\n"
    )
    atomic.write_text(output_dir / ".bidsignore", "".join(f"{line}\n" for line in naming.BIDSIGNORE))
