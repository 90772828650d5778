"""Harmonization measure (numpy only): per-tissue 1-D Wasserstein distances between normalised intensity
distributions of a participant and of a reference site.

Recipe (see docs/harmonization.md): each image's intensities are normalised by its own robust range inside
the head/brain (``normalise``: the ``lo``/``hi`` percentiles map to 0 and 1, so gain and offset differences
between scanners vanish and only the *shape* of the intensity distribution remains); per tissue (WM, GM,
CSF masks from the participant's surfaces, :func:`tissue_masks`) the distribution is summarised by its
quantile function at ``N_QUANTILES`` evenly spaced probabilities. The reference site's distribution per
tissue is the 1-D Wasserstein barycentre of its participants (the mean of their quantile functions), and a
participant's distance to it is the 1-D Wasserstein-1 distance ``W1 = ∫_0^1 |Q_a(p) - Q_b(p)| dp``
(in units of the normalised intensity range). ``distance_before`` uses the participant's own T1w,
``distance_after`` the synthetic (harmonized) one; harmonization worked where after < before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "N_QUANTILES",
    "TISSUES",
    "HARMONIZATION_DICTIONARY",
    "barycentre",
    "distance_rows",
    "harmonization_rows",
    "reference_spread",
    "thickness_agreement",
    "normalise",
    "quantile_function",
    "image_quantiles",
    "tissue_masks",
    "tissue_quantiles",
    "wasserstein_1d",
    "wasserstein_quantiles",
]

TISSUES = ("WM", "GM", "CSF")
N_QUANTILES = 1000


def normalise(image: NDArray, mask: NDArray[np.bool_], lo: float = 1.0, hi: float = 99.0) -> NDArray[np.float64]:
    """Intensities mapped so that the ``lo`` and ``hi`` percentiles inside ``mask`` become 0 and 1."""
    img = np.asarray(image, dtype=np.float64)
    values = img[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("the normalisation mask is empty")
    a, b = np.percentile(values, [lo, hi])
    if not b > a:
        raise ValueError(f"no intensity range inside the mask ({lo}th and {hi}th percentiles are both {a:g})")
    return (img - a) / (b - a)


def tissue_masks(
    sdf_white: NDArray, sdf_pial: NDArray, ribbon: NDArray, csf_shell_voxels: int = 2
) -> dict[str, NDArray]:
    """WM (inside white), GM (the ribbon) and CSF (a shell of ``csf_shell_voxels`` outside the pial surface)
    from the conditioning maps — the same masks as :func:`cor2vox_bids.qc.tissue.tissue_means`."""
    from scipy import ndimage

    inside_pial = np.asarray(sdf_pial) < 0
    shell = ndimage.binary_dilation(inside_pial, iterations=csf_shell_voxels) & ~inside_pial
    return {"WM": np.asarray(sdf_white) < 0, "GM": np.asarray(ribbon) > 0.5, "CSF": shell}


def quantile_function(values: NDArray, n: int = N_QUANTILES) -> NDArray[np.float64]:
    """The empirical quantile function at ``p = (i + 0.5) / n`` (inverse CDF, no interpolation between samples)."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if v.size == 0:
        raise ValueError("no values to summarise")
    p = (np.arange(n) + 0.5) / n
    idx = np.minimum((p * v.size).astype(np.int64), v.size - 1)
    return v[idx]


def barycentre(quantile_functions: list[NDArray] | NDArray) -> NDArray[np.float64]:
    """1-D Wasserstein barycentre of several distributions: the mean of their quantile functions."""
    q = np.asarray(quantile_functions, dtype=np.float64)
    if q.ndim != 2 or len(q) == 0:
        raise ValueError("expected a non-empty (k, n) stack of quantile functions")
    return q.mean(axis=0)


def wasserstein_quantiles(qa: NDArray, qb: NDArray) -> float:
    """W1 between two distributions given as quantile functions on the same probability grid."""
    qa, qb = np.asarray(qa, dtype=np.float64), np.asarray(qb, dtype=np.float64)
    if qa.shape != qb.shape:
        raise ValueError(f"quantile functions on different grids: {qa.shape} vs {qb.shape}")
    return float(np.mean(np.abs(qa - qb)))


def wasserstein_1d(u: NDArray, v: NDArray, u_weights: NDArray | None = None, v_weights: NDArray | None = None) -> float:
    """Exact W1 = ∫ |F_u(x) - F_v(x)| dx between two (weighted) samples on the real line."""
    u = np.asarray(u, dtype=np.float64).ravel()
    v = np.asarray(v, dtype=np.float64).ravel()
    if u.size == 0 or v.size == 0:
        raise ValueError("both samples must be non-empty")
    uw = np.ones(u.size) if u_weights is None else np.asarray(u_weights, dtype=np.float64).ravel()
    vw = np.ones(v.size) if v_weights is None else np.asarray(v_weights, dtype=np.float64).ravel()
    if uw.shape != u.shape or vw.shape != v.shape or np.any(uw < 0) or np.any(vw < 0) or uw.sum() <= 0 or vw.sum() <= 0:
        raise ValueError("weights must be non-negative, one per value, with a positive sum")
    ou, ov = np.argsort(u), np.argsort(v)
    u, uw, v, vw = u[ou], uw[ou], v[ov], vw[ov]
    grid = np.sort(np.concatenate([u, v]))
    cu = np.concatenate([[0.0], np.cumsum(uw)]) / uw.sum()
    cv = np.concatenate([[0.0], np.cumsum(vw)]) / vw.sum()
    fu = cu[np.searchsorted(u, grid[:-1], side="right")]
    fv = cv[np.searchsorted(v, grid[:-1], side="right")]
    return float(np.sum(np.abs(fu - fv) * np.diff(grid)))


def tissue_quantiles(
    image_normalised: NDArray, masks: Mapping[str, NDArray], n: int = N_QUANTILES
) -> dict[str, NDArray]:
    """Quantile function of the normalised intensities in each tissue mask (tissues with empty masks left out)."""
    img = np.asarray(image_normalised)
    return {t: quantile_function(img[np.asarray(m, dtype=bool)], n) for t, m in masks.items() if np.any(m)}


def image_quantiles(
    image: NDArray, affine: NDArray, grid_affine: NDArray, masks: Mapping[str, NDArray], n: int = N_QUANTILES
) -> dict[str, NDArray]:
    """Per-tissue quantile functions of an image on the grid of ``masks`` (voxel -> world ``grid_affine``).

    The image is resampled (trilinear, world coordinates) onto the grid unless it is already on it, then
    normalised inside the union of the tissue masks (the head around the cortex) — the one way every image
    (reference, before, after) is summarised.
    """
    from ..geometry import ModelGrid, resample

    shape = next(iter(masks.values())).shape
    img = np.asarray(image, dtype=np.float64)
    if img.shape != shape or not np.allclose(affine, grid_affine):
        img = resample(img, np.asarray(affine, dtype=np.float64), ModelGrid(np.asarray(grid_affine), shape))
    head = np.zeros(shape, dtype=bool)
    for m in masks.values():
        head |= np.asarray(m, dtype=bool)
    return tissue_quantiles(normalise(img, head), masks, n)


def distance_rows(
    participant_id: str, before: Mapping[str, NDArray], after: Mapping[str, NDArray], reference: Mapping[str, NDArray]
) -> list[dict[str, object]]:
    """Rows ``participant_id, tissue, distance_before, distance_after`` (W1 to the reference per tissue).

    ``before``/``after``/``reference`` map tissue names to quantile functions on the same grid; a tissue
    missing from one of them gets NaN.
    """
    rows = []
    for tissue in TISSUES:
        ref = reference.get(tissue)
        row: dict[str, object] = {"participant_id": participant_id, "tissue": tissue}
        for key, src in (("distance_before", before), ("distance_after", after)):
            q = src.get(tissue)
            row[key] = float("nan") if q is None or ref is None else wasserstein_quantiles(q, ref)
        rows.append(row)
    return rows


def reference_spread(quantiles: list[Mapping[str, NDArray]]) -> dict[str, float]:
    """Per tissue, how far the reference site's own participants lie from their barycentre: the median over
    reference participants of W1(participant, barycentre of the *others*) (leave-one-out, so nobody is compared
    with a mean that contains them). NaN for a tissue with fewer than two reference participants."""
    out: dict[str, float] = {}
    for tissue in TISSUES:
        qs = [q[tissue] for q in quantiles if tissue in q]
        if len(qs) < 2:
            out[tissue] = float("nan")
            continue
        stack = np.asarray(qs, dtype=np.float64)
        total = stack.sum(axis=0)
        loo = [wasserstein_quantiles(stack[i], (total - stack[i]) / (len(stack) - 1)) for i in range(len(stack))]
        out[tissue] = float(np.median(loo))
    return out


def _pearson(x: NDArray, y: NDArray) -> tuple[float, int]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), n
    return float(np.corrcoef(x[ok], y[ok])[0, 1]), n


def _number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(float(value)):
        return float(value)
    return float("nan")


def thickness_agreement(summary: Mapping[str, object], rows: list[Mapping[str, object]] | None) -> dict[str, float]:
    """Does the anatomy survive harmonization? From one participant's QC (``desc-summary_qc.json`` and the region
    rows of ``desc-thickness_qc.tsv``):

    ``thickness_r_real`` / ``thickness_r_synthetic``: the QC's Pearson r across Desikan-Killiany regions between
    the thickness measured in the real T1w (on the model grid) / the synthetic T1w and the surfaces' thickness
    (NaN where the QC did not report one, e.g. under 50 % of vertices measured); ``thickness_r_ratio``: synthetic
    over real (the issue's target: ≥ 0.9); ``thickness_r_real_vs_synthetic``: Pearson r across regions between
    the thickness measured in the real and in the synthetic image directly (regions measured in both, ≥ 3) and
    ``n_regions_real_vs_synthetic`` their number."""
    r_real = _number(summary.get("pearson_r_real"))
    r_synth = _number(summary.get("pearson_r_synthetic"))
    ratio = r_synth / r_real if np.isfinite(r_real) and np.isfinite(r_synth) and r_real > 0 else float("nan")
    if rows:
        direct, n = _pearson([_number(r.get("thickness_real")) for r in rows],
                             [_number(r.get("thickness_synthetic")) for r in rows])
    else:
        direct, n = float("nan"), 0
    return {"thickness_r_real": r_real, "thickness_r_synthetic": r_synth, "thickness_r_ratio": ratio,
            "thickness_r_real_vs_synthetic": direct, "n_regions_real_vs_synthetic": n}


def harmonization_rows(
    ids: Mapping[str, str],
    before: Mapping[str, NDArray],
    after: Mapping[str, NDArray],
    reference: Mapping[str, NDArray],
    spread: Mapping[str, float],
    n_reference: int,
    thickness: Mapping[str, float],
) -> list[dict[str, object]]:
    """One participant's rows of ``group_desc-harmonization_qc.tsv`` (columns: :data:`HARMONIZATION_DICTIONARY`):
    :func:`distance_rows` with the identifiers ``ids`` (``participant_id`` [, ``session_id``]), the change, the
    reference's own spread and size, and the participant's thickness agreement (the same on each tissue row)."""
    rows = []
    for row in distance_rows(ids["participant_id"], before, after, reference):
        b, a = float(row["distance_before"]), float(row["distance_after"])
        change = a - b if np.isfinite(a) and np.isfinite(b) else float("nan")
        rows.append({**ids, "tissue": row["tissue"], "distance_before": b, "distance_after": a,
                     "distance_change": change,
                     "closer_to_reference": "n/a" if not np.isfinite(change) else ("yes" if change < 0 else "no"),
                     "reference_spread": float(spread.get(str(row["tissue"]), float("nan"))),
                     "n_reference": int(n_reference), **thickness})
    return rows


_W1 = ("1-D Wasserstein-1 distance W1 = mean over p of |Q(p) - Q_ref(p)| between the quantile function Q of the "
       "participant's intensities in this tissue and Q_ref, the reference site's (the Wasserstein barycentre, i.e. "
       f"the mean quantile function, of the reference participants), on {N_QUANTILES} probabilities "
       f"p = (i + 0.5)/{N_QUANTILES}. "
       "Intensities are normalised per image: its 1st and 99th percentiles inside the union of the three tissue "
       "masks become 0 and 1, so scanner gain and offset do not count, only the shape of the distribution. "
       "Tissue masks on the model grid from the participant's surfaces: WM inside the white surface, GM the "
       "ribbon between white and pial, CSF a 2-voxel shell outside the pial surface.")
_UNIT = "normalised intensity (1 = the image's 1st-99th percentile range inside the tissue masks)"

#: data dictionary of ``group_desc-harmonization_qc.tsv`` (BIDS TSV sidecar: LongName, Description, Units, Levels)
HARMONIZATION_DICTIONARY: dict[str, dict[str, object]] = {
    "participant_id": {"LongName": "Participant", "Description": "BIDS participant label (sub-<label>) of the "
                       "harmonized dataset (the group level's BIDS_DIR)."},
    "session_id": {"LongName": "Session", "Description": "BIDS session label (ses-<label>), when sessions exist."},
    "tissue": {"LongName": "Tissue", "Description": "Tissue whose intensity distribution is compared.",
               "Levels": {"WM": "white matter: inside the white surface",
                          "GM": "cortical grey matter: the ribbon between the white and pial surfaces",
                          "CSF": "a 2-voxel shell outside the pial surface (sulcal CSF and partial volume)"}},
    "distance_before": {"LongName": "Distance to the reference site, participant's own T1w",
                        "Description": _W1 + " Before: the participant's own T1w (from BIDS_DIR), resampled "
                        "(trilinear) onto the model grid of its synthetic image.", "Units": _UNIT},
    "distance_after": {"LongName": "Distance to the reference site, harmonized (synthetic) T1w",
                       "Description": _W1 + " After: the participant's synthetic T1w (with several samples the first "
                       "seed's, the one the participant QC measured), made by the --model trained on the reference "
                       "site.", "Units": _UNIT},
    "distance_change": {"LongName": "Change of the distance",
                        "Description": "distance_after - distance_before; negative: the harmonized image is closer "
                        "to the reference site than the participant's own T1w.", "Units": _UNIT},
    "closer_to_reference": {"LongName": "Harmonization moved this tissue towards the reference",
                            "Description": "Whether distance_after < distance_before.",
                            "Levels": {"yes": "distance_after < distance_before",
                                       "no": "distance_after >= distance_before"}},
    "reference_spread": {"LongName": "Spread within the reference site",
                         "Description": "For scale: the median over reference participants of the W1 distance "
                         "between one reference participant's distribution and the barycentre of the other "
                         "reference participants (same normalisation and masks). A distance of this size is as far "
                         "as the reference site's own participants are from each other.", "Units": _UNIT},
    "n_reference": {"LongName": "Reference participants",
                    "Description": "Number of reference-site participants in the barycentre (T1w and surfaces "
                    "found and read)."},
    "thickness_r_real": {"LongName": "Thickness agreement, real T1w",
                         "Description": "Pearson r across Desikan-Killiany regions between cortical thickness "
                         "measured in the participant's real T1w (on the model grid) and the surfaces' thickness "
                         "(pearson_r_real of the participant QC); the same on each tissue row.", "Units": "unitless"},
    "thickness_r_synthetic": {"LongName": "Thickness agreement, harmonized T1w",
                              "Description": "Pearson r across regions between thickness measured in the synthetic "
                              "(harmonized) T1w and the surfaces' thickness (pearson_r_synthetic of the participant "
                              "QC; n/a where the QC did not report it, e.g. under 50 % of vertices measured).",
                              "Units": "unitless"},
    "thickness_r_ratio": {"LongName": "Thickness agreement kept by harmonization",
                          "Description": "thickness_r_synthetic / thickness_r_real (n/a when either is missing or "
                          "thickness_r_real <= 0). The anatomy survives harmonization when it is at least 0.9.",
                          "Units": "unitless"},
    "thickness_r_real_vs_synthetic": {"LongName": "Thickness, real vs harmonized image",
                                      "Description": "Pearson r across regions between the thickness measured in "
                                      "the real T1w and in the synthetic T1w (regions measured in both; n/a with "
                                      "fewer than 3).", "Units": "unitless"},
    "n_regions_real_vs_synthetic": {"LongName": "Regions in thickness_r_real_vs_synthetic",
                                    "Description": "Number of regions measured in both images."},
}
