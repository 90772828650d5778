"""Desikan-Killiany (DK) regional summaries of per-vertex quantities (e.g. thickness)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SurfaceError

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
