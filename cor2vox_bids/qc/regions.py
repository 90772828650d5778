"""Region-level thickness agreement: surface thickness vs thickness measured in the synthetic (and real) T1w.

One row per hemisphere × Desikan–Killiany region (``unknown``, ``corpuscallosum`` and label −1 left out), or one
row per hemisphere when there is no annotation. Region values are means over the region's vertices (as
FreeSurfer's ThickAvg), ignoring vertices where the image measurement failed (NaN).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import pearsonr

__all__ = [
    "EXCLUDED_REGIONS",
    "WHOLE_HEMISPHERE",
    "QC_COLUMNS",
    "QC_TSV_DICTIONARY",
    "region_rows",
    "summarize_rows",
    "write_qc_tsv",
    "read_qc_tsv",
    "write_summary_json",
]

#: annotation entries that are not cortical regions
EXCLUDED_REGIONS = frozenset({"unknown", "corpuscallosum"})
#: ``region`` value of the rows made without an annotation
WHOLE_HEMISPHERE = "whole_hemisphere"
#: column order of the QC TSV
QC_COLUMNS = ("hemi", "region", "n_vertices", "thickness_surface", "thickness_synthetic", "thickness_real")

Row = dict[str, Any]

#: BIDS-style data dictionary (the TSV's JSON sidecar)
QC_TSV_DICTIONARY: dict[str, dict[str, str]] = {
    "hemi": {
        "LongName": "Hemisphere",
        "Description": "Cortical hemisphere: L (left) or R (right).",
        "Levels": {"L": "left hemisphere", "R": "right hemisphere"},
    },
    "region": {
        "LongName": "Cortical region",
        "Description": (
            "Desikan-Killiany (aparc) region name, or 'whole_hemisphere' when no annotation was available "
            "(then one row per hemisphere)."
        ),
    },
    "n_vertices": {
        "LongName": "Number of vertices",
        "Description": "Number of surface vertices in the region.",
        "Units": "count",
    },
    "thickness_surface": {
        "LongName": "Surface cortical thickness",
        "Description": "Mean cortical thickness over the region's vertices, from the white and pial surfaces.",
        "Units": "mm",
    },
    "thickness_synthetic": {
        "LongName": "Synthetic-image cortical thickness",
        "Description": (
            "Mean over the region's vertices of the distance between the GM/WM and GM/CSF intensity boundaries "
            "located in the synthetic T1w along each white-to-pial line (blur-corrected half-way levels); "
            "vertices where a boundary was not found are left out."
        ),
        "Units": "mm",
    },
    "thickness_real": {
        "LongName": "Real-image cortical thickness",
        "Description": (
            "As thickness_synthetic, measured in the participant's real T1w; n/a when no real T1w was given."
        ),
        "Units": "mm",
    },
}


def _name(x: str | bytes) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _mean(values: NDArray | None, sel: NDArray[np.bool_]) -> float:
    if values is None:
        return float("nan")
    v = np.asarray(values, dtype=np.float64)[sel]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def region_rows(
    hemi: str,
    surface_thickness: NDArray,
    synthetic_thickness: NDArray,
    real_thickness: NDArray | None = None,
    labels: NDArray | None = None,
    names: Sequence[str | bytes] | None = None,
) -> list[Row]:
    """Rows (dicts with :data:`QC_COLUMNS`) for one hemisphere.

    ``labels`` (n,) are per-vertex indices into ``names`` (−1 = none), as ``nibabel.freesurfer.read_annot``
    returns them. Without labels (or names) one ``whole_hemisphere`` row is returned. ``hemi``: 'L'/'R'
    (also 'lh'/'rh'). Missing values are NaN.
    """
    hemi = {"lh": "L", "rh": "R", "left": "L", "right": "R"}.get(hemi.lower(), hemi)
    surf = np.asarray(surface_thickness, dtype=np.float64)
    n = surf.shape[0]
    for arr in (synthetic_thickness, real_thickness):
        if arr is not None and np.shape(arr) != (n,):
            raise ValueError(f"per-vertex arrays must have shape ({n},), got {np.shape(arr)}")

    def row(region: str, sel: NDArray[np.bool_]) -> Row:
        return {
            "hemi": hemi,
            "region": region,
            "n_vertices": int(sel.sum()),
            "thickness_surface": _mean(surf, sel),
            "thickness_synthetic": _mean(synthetic_thickness, sel),
            "thickness_real": _mean(real_thickness, sel),
        }

    if labels is None or names is None:
        return [row(WHOLE_HEMISPHERE, np.ones(n, dtype=bool))]
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
    return [
        row(_name(name), lab == index)
        for index, name in enumerate(names)
        if _name(name) not in EXCLUDED_REGIONS
    ]


def _agreement(rows: Sequence[Row], column: str, with_r: bool) -> tuple[float, float, int]:
    x = np.array([r["thickness_surface"] for r in rows], dtype=np.float64)
    y = np.array([r[column] for r in rows], dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return float("nan"), float("nan"), 0
    mad = float(np.mean(np.abs(x[ok] - y[ok])))
    r = float("nan")
    if with_r and ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        r = float(pearsonr(x[ok], y[ok]).statistic)
    return r, mad, int(ok.sum())


def summarize_rows(rows: Sequence[Row]) -> dict[str, Any]:
    """Across-region agreement of image and surface thickness, for the synthetic and (if any) the real T1w.

    Keys: ``regions`` (``"desikan-killiany"`` or ``"unavailable (no annotation)"``), ``n_rows``,
    ``pearson_r_synthetic``, ``mean_abs_diff_mm_synthetic``, ``n_regions_synthetic`` and the same for ``real``
    (``"n/a"`` when there is no real T1w). Pearson r needs ≥ 3 regions and is NaN without an annotation.
    """
    annotated = any(r["region"] != WHOLE_HEMISPHERE for r in rows)
    out: dict[str, Any] = {
        "regions": "desikan-killiany" if annotated else "unavailable (no annotation)",
        "n_rows": len(rows),
    }
    for kind in ("synthetic", "real"):
        r, mad, k = _agreement(rows, f"thickness_{kind}", annotated)
        if kind == "real" and k == 0:
            out.update({"pearson_r_real": "n/a", "mean_abs_diff_mm_real": "n/a", "n_regions_real": 0})
            continue
        out.update({f"pearson_r_{kind}": r, f"mean_abs_diff_mm_{kind}": mad, f"n_regions_{kind}": k})
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.4f}"
    return str(value)


def write_qc_tsv(rows: Iterable[Row], path: str | Path, *, sidecar: bool = True) -> Path:
    """Write rows as a BIDS TSV (tab-separated, header, ``n/a`` for missing); with ``sidecar`` also the
    :data:`QC_TSV_DICTIONARY` as ``<stem>.json`` next to it. Returns the TSV path."""
    path = Path(path)
    lines = ["\t".join(QC_COLUMNS)]
    lines += ["\t".join(_cell(r.get(c)) for c in QC_COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if sidecar:
        path.with_suffix(".json").write_text(json.dumps(QC_TSV_DICTIONARY, indent=2) + "\n", encoding="utf-8")
    return path


def read_qc_tsv(path: str | Path) -> list[Row]:
    """Read a TSV written by :func:`write_qc_tsv` back into rows (numbers as int/float, ``n/a`` as NaN)."""
    text = Path(path).read_text(encoding="utf-8").splitlines()
    header = text[0].split("\t")
    rows: list[Row] = []
    for line in text[1:]:
        row: Row = {}
        for key, cell in zip(header, line.split("\t")):
            if key in ("hemi", "region"):
                row[key] = cell
            elif key == "n_vertices":
                row[key] = int(cell)
            else:
                row[key] = float("nan") if cell == "n/a" else float(cell)
        rows.append(row)
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def write_summary_json(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write a summary dict as JSON (NaN/inf become null, numpy scalars become numbers)."""
    path = Path(path)
    path.write_text(json.dumps(_jsonable(summary), indent=2) + "\n", encoding="utf-8")
    return path
