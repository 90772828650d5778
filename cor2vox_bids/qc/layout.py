"""The QC step's folder: what the QC node writes and the derivatives writer and report read (one definition)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class QCFolder:
    """Files inside one participant's QC folder (names relative to it)."""

    table: str = "qc.tsv"  # per-region thickness rows (write_qc_tsv; its data dictionary beside it)
    dictionary: str = "qc.json"
    summary: str = "summary.json"  # scalar measures (write_summary_json)
    vertex: str = "vertex.npz"  # per-vertex thickness: <hemi>_surface, <hemi>_synthetic, <hemi>_real

    def path(self, root: str | Path, name: str) -> Path:
        """``root / <file>`` for a field name (``"table"``, ``"summary"``…)."""
        return Path(root) / getattr(self, name)


QC_FOLDER = QCFolder()
