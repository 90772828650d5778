"""Region-level thickness agreement: surface thickness vs thickness measured in the synthetic (and real) T1w.

One row per hemisphere × Desikan–Killiany region (``unknown``, ``corpuscallosum`` and label −1 left out), or one
row per hemisphere when there is no annotation. ``thickness_surface`` is the mean over all the region's vertices (as
FreeSurfer's ThickAvg). For each image kind (``synthetic``, ``real`` on the model grid, ``real_native`` at the T1w's
own resolution) the row holds the mean image thickness over the vertices measured in that image, the surface mean
over the same vertices (the paired comparison) and the coverage (measured / all vertices). A region covered below
``MIN_REGION_COVERAGE`` gets n/a (a mean over a minority of vertices is a selected sample, not the region).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "IMAGE_KINDS",
    "MIN_REGION_COVERAGE",
    "MIN_COVERAGE_FOR_R",
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
#: image kinds measured by the QC, in column order
IMAGE_KINDS = ("synthetic", "real", "real_native")
#: a region's image thickness is reported only when at least this fraction of its vertices was measured
MIN_REGION_COVERAGE = 0.5
#: the across-region r is reported only when this fraction of all vertices was measured (else n/a)
MIN_COVERAGE_FOR_R = 0.5
#: column order of the QC TSV
QC_COLUMNS = ("hemi", "region", "n_vertices", "thickness_surface", "thickness_synthetic", "thickness_real",
              "thickness_real_native", "region_source",
              *(c for k in IMAGE_KINDS for c in (f"thickness_surface_{k}", f"coverage_{k}")))
_TEXT_COLUMNS = ("hemi", "region", "region_source")

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
    "region_source": {
        "LongName": "Source of the region labels",
        "Description": "Where the vertices' Desikan-Killiany labels came from.",
        "Levels": {
            "aparc.annot": "the subject's label/?h.aparc.annot",
            "sphere.reg+fsaverage5": "fsaverage5's aparc.annot transferred through the subject's ?h.sphere.reg "
                                     "(nearest vertex on the registered sphere)",
            "aparcaseg": "sMRIPrep's desc-aparcaseg_dseg volume sampled at each vertex's mid-thickness point",
            "none": "no source: one whole-hemisphere row",
        },
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
}

_KIND_TEXT = {
    "synthetic": "the synthetic T1w (model grid)",
    "real": "the participant's real T1w resampled to the model grid",
    "real_native": "the participant's real T1w at its own resolution",
}
for _kind, _text in _KIND_TEXT.items():
    QC_TSV_DICTIONARY[f"thickness_{_kind}"] = {
        "LongName": f"Image cortical thickness ({_kind})",
        "Description": (
            f"Mean over the region's measured vertices of the cortical thickness measured in {_text}: FreeSurfer's "
            "definition (mean of the white-vertex-to-closest-pial and pial-vertex-to-closest-white distances), "
            "measured along the same two lines by fitting a blurred grey-matter slab to the image profile; "
            f"n/a when no such image or when the region's coverage is below {MIN_REGION_COVERAGE}."
        ),
        "Units": "mm",
    }
    QC_TSV_DICTIONARY[f"thickness_surface_{_kind}"] = {
        "LongName": f"Surface cortical thickness at the vertices measured in the {_kind} image",
        "Description": (
            f"Mean surface thickness over the same vertices as thickness_{_kind} (the paired value it is compared "
            "with); n/a where thickness_{_kind} is n/a."
        ),
        "Units": "mm",
    }
    QC_TSV_DICTIONARY[f"coverage_{_kind}"] = {
        "LongName": f"Coverage of the {_kind} thickness measurement",
        "Description": (
            "Fraction of the region's vertices with a measured image thickness (the slab model fits the profile "
            "and the thickness standard error is at most 0.5 mm on at least one of the two lines); n/a when no "
            "such image."
        ),
        "Units": "fraction (0-1)",
    }


def _name(x: str | bytes) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _mean(values: NDArray | None, sel: NDArray[np.bool_]) -> float:
    if values is None:
        return float("nan")
    v = np.asarray(values, dtype=np.float64)[sel]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _kind_cells(kind: str, surf: NDArray, image: NDArray | None, sel: NDArray[np.bool_],
                min_coverage: float) -> Row:
    if image is None:
        return {f"thickness_{kind}": float("nan"), f"thickness_surface_{kind}": float("nan"),
                f"coverage_{kind}": float("nan")}
    img = np.asarray(image, dtype=np.float64)
    measured = sel & np.isfinite(img)
    coverage = float(measured.sum() / sel.sum()) if sel.any() else float("nan")
    enough = coverage >= min_coverage
    return {f"thickness_{kind}": _mean(img, measured) if enough else float("nan"),
            f"thickness_surface_{kind}": _mean(surf, measured) if enough else float("nan"),
            f"coverage_{kind}": coverage}


def region_rows(
    hemi: str,
    surface_thickness: NDArray,
    synthetic_thickness: NDArray,
    real_thickness: NDArray | None = None,
    labels: NDArray | None = None,
    names: Sequence[str | bytes] | None = None,
    *,
    real_native_thickness: NDArray | None = None,
    source: str | None = None,
    min_region_coverage: float = MIN_REGION_COVERAGE,
) -> list[Row]:
    """Rows (dicts with :data:`QC_COLUMNS`) for one hemisphere.

    ``labels`` (n,) are per-vertex indices into ``names`` (−1 = none), as ``nibabel.freesurfer.read_annot``
    returns them; ``source`` says where they came from (``geometry.dk_labels``). Without labels (or names) one
    ``whole_hemisphere`` row is returned. Image thickness arrays hold NaN where not measured. ``hemi``: 'L'/'R'
    (also 'lh'/'rh'). Missing values are NaN.
    """
    hemi = {"lh": "L", "rh": "R", "left": "L", "right": "R"}.get(hemi.lower(), hemi)
    surf = np.asarray(surface_thickness, dtype=np.float64)
    n = surf.shape[0]
    images = {"synthetic": synthetic_thickness, "real": real_thickness, "real_native": real_native_thickness}
    for arr in images.values():
        if arr is not None and np.shape(arr) != (n,):
            raise ValueError(f"per-vertex arrays must have shape ({n},), got {np.shape(arr)}")
    annotated = labels is not None and names is not None
    src = (source or "aparc.annot") if annotated else "none"

    def row(region: str, sel: NDArray[np.bool_]) -> Row:
        out: Row = {"hemi": hemi, "region": region, "region_source": src, "n_vertices": int(sel.sum()),
                    "thickness_surface": _mean(surf, sel)}
        for kind, values in images.items():
            out.update(_kind_cells(kind, surf, values, sel, min_region_coverage))
        return out

    if not annotated:
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
    paired = column.replace("thickness_", "thickness_surface_", 1)
    x = np.array([r.get(paired, r["thickness_surface"]) for r in rows], dtype=np.float64)
    y = np.array([r.get(column, np.nan) for r in rows], dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return float("nan"), float("nan"), 0
    mad = float(np.mean(np.abs(x[ok] - y[ok])))
    r = float("nan")
    if with_r and ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        r = float(np.corrcoef(x[ok], y[ok])[0, 1])
    return r, mad, int(ok.sum())


def summarize_rows(rows: Sequence[Row]) -> dict[str, Any]:
    """Across-region agreement of image and surface thickness, for the synthetic and (if any) the real T1w.

    Keys: ``regions`` (``"desikan-killiany"`` or ``"unavailable (no annotation)"``), ``n_rows``,
    ``pearson_r_synthetic``, ``mean_abs_diff_mm_synthetic``, ``n_regions_synthetic`` and the same for ``real``
    and ``real_native`` (``"n/a"`` when there is no such image). Each region's image mean is compared with the
    surface mean over the same vertices (``thickness_surface_<kind>``, when the rows have it). Pearson r needs
    ≥ 3 regions and is NaN without an annotation.
    """
    annotated = any(r["region"] != WHOLE_HEMISPHERE for r in rows)
    out: dict[str, Any] = {
        "regions": "desikan-killiany" if annotated else "unavailable (no annotation)",
        "n_rows": len(rows),
    }
    for kind in IMAGE_KINDS:
        r, mad, k = _agreement(rows, f"thickness_{kind}", annotated)
        if kind != "synthetic" and k == 0:
            out.update({f"pearson_r_{kind}": "n/a", f"mean_abs_diff_mm_{kind}": "n/a", f"n_regions_{kind}": 0})
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
            if key in _TEXT_COLUMNS:
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
