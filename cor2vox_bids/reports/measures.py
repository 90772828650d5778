"""What the reports say about each number: human names, units, one-line definitions and expected ranges.

The QC writes its own data dictionaries (the region TSV's JSON sidecar, the summary's key dictionary); a key
found there takes its name, units and description from there. This table adds what a reader needs beyond the
dictionary — a short human name for keys the QC dictionary does not name, and the range the project validates
the method against (``expected``; a value outside it is flagged in the reports). Keys may hold ``<kind>`` (the
image measured: ``synthetic``, ``real``, ``real_native``); :func:`describe` resolves a concrete key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Measure", "KIND_LABELS", "MEASURES", "DK_REGION_NAMES", "describe", "flag", "format_value",
           "summary_dictionary", "region_name", "expected_text", "KEY_MEASURES"]

#: what each image kind is, for readers
KIND_LABELS = {
    "synthetic": "synthetic T1w",
    "real": "real T1w (on the model grid)",
    "real_native": "real T1w (native resolution)",
}


@dataclass(frozen=True)
class Measure:
    """One reported number: ``name`` (human, no key syntax), ``units`` (``""`` for plain text), ``definition``
    (one line), ``expected`` ((lo, hi), None = open) with ``natural`` axis range and ``min_span`` for plots."""

    key: str
    name: str
    units: str
    definition: str
    expected: tuple[float | None, float | None] | None = None
    natural: tuple[float | None, float | None] = (None, None)
    min_span: float = 0.1
    group: str = "Other"
    show: bool = True  # False: technical bookkeeping, kept in the files but not in the report's table


_R = (-1.0, 1.0)
_FRACTION = (0.0, 1.0)

#: the reported measures, in display order (``expected``: the targets the project validates against)
MEASURES: tuple[Measure, ...] = (
    Measure("pearson_r_<kind>", "Regional thickness agreement (r)", "unitless (−1 to 1)",
            "Correlation across Desikan–Killiany regions of image-measured and surface thickness (paired vertices); "
            "not reported when less than half of the cortex was measured.",
            (0.9, None), _R, 0.2, "Cortical thickness"),
    Measure("pearson_r_vertex_<kind>", "Vertex thickness agreement (r)", "unitless (−1 to 1)",
            "Correlation over measured vertices of image-measured and surface thickness.",
            None, _R, 0.2, "Cortical thickness"),
    Measure("coverage_<kind>", "Coverage of the thickness measure", "fraction of cortex",
            "Fraction of cortex vertices where the image gave a thickness (the slab model fits and the standard "
            "error is small); the other numbers describe only these vertices.",
            (0.9, None), _FRACTION, 0.2, "Cortical thickness"),
    Measure("median_abs_diff_mm_vertex_<kind>", "Median absolute thickness difference", "mm",
            "Median over measured vertices of |image − surface thickness|.", (None, 0.3), (0.0, None), 0.5,
            "Cortical thickness"),
    Measure("median_diff_mm_<kind>", "Median thickness bias", "mm",
            "Median over measured vertices of image − surface thickness (positive: the image shows a thicker "
            "cortex).", None, (None, None), 0.5, "Cortical thickness"),
    Measure("mean_abs_diff_mm_<kind>", "Mean regional thickness difference", "mm",
            "Mean over regions of |image − surface| regional mean thickness.", None, (0.0, None), 0.5,
            "Cortical thickness"),
    Measure("n_regions_<kind>", "Regions measured", "regions",
            "Regions with enough measured vertices to report an image thickness.", None, (0.0, None), 10,
            "Cortical thickness"),
    Measure("coverage_both_lines_<kind>", "Measured on both lines", "fraction of cortex",
            "Fraction of cortex vertices measured along both FreeSurfer lines (white→pial and pial→white).",
            None, _FRACTION, 0.2, "Measurement diagnostics"),
    Measure("fraction_misfit_<kind>", "Profiles the slab model does not fit", "fraction of cortex",
            "Fraction of vertices whose intensity profile is not a blurred grey-matter slab (flagged, not "
            "corrected).", None, _FRACTION, 0.2, "Measurement diagnostics"),
    Measure("fraction_unresolved_<kind>", "Unresolved profiles", "fraction of cortex",
            "Fraction of vertices whose slab edges the data do not determine (e.g. touching sulcal banks).",
            None, _FRACTION, 0.2, "Measurement diagnostics"),
    Measure("fraction_outside_<kind>", "Profiles leaving the image", "fraction of cortex",
            "Fraction of vertices whose measurement lines leave the image.", None, _FRACTION, 0.2,
            "Measurement diagnostics"),
    Measure("median_se_mm_<kind>", "Median standard error", "mm",
            "Median standard error of the measured vertices' image thickness.", None, (0.0, None), 0.2,
            "Measurement diagnostics"),
    Measure("blur_sigma_mm_<kind>", "Effective image blur (σ)", "mm",
            "Gaussian blur of the image at the cortex: the σ whose slab fits explain the profiles best.", None,
            (0.0, None), 0.5,
            "Measurement diagnostics"),
    Measure("noise_sd_<kind>", "Noise level", "image units",
            "Voxel noise standard deviation in deep white matter.", None, (0.0, None), 0.02, "Measurement diagnostics"),
    Measure("slab_model_<kind>", "Slab model", "",
            "Whether the image shows a cortical slab the measure can fit (else nothing is measured).",
            group="Measurement diagnostics"),
    Measure("pearson_r_note_<kind>", "Note on r", "", "Why the regional r is not reported.",
            group="Measurement diagnostics"),
    Measure("ribbon_dice_<kind>", "Cortical ribbon overlap (Dice)", "unitless (0 to 1)",
            "Overlap of the grey-matter class found in the image (3-class intensity mixture, one label per voxel) "
            "with the ribbon between the white and pial surfaces. A ribbon 2-3 mm thick on 2 mm voxels is mostly "
            "partial-volume voxels, so this hard-label overlap stays near 0.7 there even for an image rendered from "
            "the surfaces themselves (demo real images on the 2 mm model grid: 0.69); no range is flagged, the "
            "partial-volume (soft) Dice is the one to hold to 0.8.", None, _FRACTION, 0.2, "Tissue"),
    Measure("ribbon_soft_dice_<kind>", "Cortical ribbon overlap, partial volume (soft Dice)", "unitless (0 to 1)",
            "Fuzzy Dice near the cortex of the ribbon's voxel fractions (from the surfaces) and the image's "
            "grey-matter fractions (partial-volume mixture of CSF, GM and WM); unlike the hard Dice it is not "
            "limited by voxels that are partly grey matter.", (0.8, None), _FRACTION, 0.2, "Tissue"),
    Measure("ribbon_soft_dice_note_<kind>", "Note on the soft Dice", "", "Why the soft Dice is not reported.",
            group="Tissue"),
    Measure("mean_intensity_wm_<kind>", "Mean white-matter intensity", "normalised intensity",
            "Mean image intensity inside the white surface.", None, _FRACTION, 0.2, "Tissue"),
    Measure("mean_intensity_gm_<kind>", "Mean cortical intensity", "normalised intensity",
            "Mean image intensity in the ribbon between the white and pial surfaces.", None, _FRACTION, 0.2,
            "Tissue"),
    Measure("mean_intensity_csf_<kind>", "Mean intensity just outside the pial surface", "normalised intensity",
            "Mean image intensity in a two-voxel shell outside the pial surface.", None, _FRACTION, 0.2, "Tissue"),
    Measure("ssim_brain", "Structural similarity to the real T1w, brain (SSIM)", "unitless (−1 to 1)",
            "Mean SSIM of synthetic vs real T1w inside the pial surface (intensities normalised alike).",
            (0.9, None), (-1.0, 1.0), 0.1, "Similarity to the real T1w"),
    Measure("psnr_brain", "Peak signal-to-noise ratio, brain (PSNR)", "dB",
            "PSNR of the synthetic vs real T1w inside the pial surface.", None, (0.0, None), 5.0,
            "Similarity to the real T1w"),
    Measure("mae_brain", "Mean absolute intensity error, brain", "normalised intensity",
            "Mean |synthetic − real| inside the pial surface.", None, (0.0, None), 0.05,
            "Similarity to the real T1w"),
    Measure("ssim_head", "Structural similarity, head (SSIM)", "unitless (−1 to 1)", "Mean SSIM inside the head mask.",
            None, (-1.0, 1.0), 0.1, "Similarity to the real T1w"),
    Measure("psnr_head", "Peak signal-to-noise ratio, head", "dB", "PSNR inside the head mask.", None,
            (0.0, None), 5.0, "Similarity to the real T1w"),
    Measure("mae_head", "Mean absolute intensity error, head", "normalised intensity",
            "Mean |synthetic − real| inside the head mask.", None, (0.0, None), 0.05, "Similarity to the real T1w"),
    Measure("ssim_volume", "Structural similarity, whole volume", "unitless (−1 to 1)",
            "Mean SSIM over the model grid.", None,
            (-1.0, 1.0), 0.1, "Similarity to the real T1w"),
    Measure("psnr_volume", "Peak signal-to-noise ratio, whole volume", "dB", "PSNR over the model grid.", None,
            (0.0, None), 5.0, "Similarity to the real T1w"),
    Measure("mae_volume", "Mean absolute intensity error, whole volume", "normalised intensity",
            "Mean |synthetic − real| over the model grid.", None, (0.0, None), 0.05, "Similarity to the real T1w"),
    Measure("n_voxels_brain", "Brain mask size", "voxels", "Voxels inside the pial surface.", None,
            group="Similarity to the real T1w", show=False),
    Measure("n_voxels_head", "Head mask size", "voxels", "Voxels in the head mask.", None,
            group="Similarity to the real T1w", show=False),
    Measure("normalisation", "Intensity normalisation", "", "How both images were scaled before comparison.",
            group="Similarity to the real T1w", show=False),
    Measure("regions", "Regions", "", "Atlas of the regional measures.", group="Bookkeeping", show=False),
    Measure("regions_source", "Source of the region labels", "",
            "Where each vertex's Desikan–Killiany label came from.", group="Bookkeeping"),
    Measure("thickness_definition", "Thickness definition", "", "How the image thickness is defined.",
            group="Bookkeeping", show=False),
    Measure("n_rows", "Rows in the region table", "rows", "Hemisphere × region rows.", group="Bookkeeping",
            show=False),
    Measure("n_samples", "Synthetic samples", "images", "Synthetic images made (one per seed); the QC measures "
            "the first.", group="Bookkeeping"),
    Measure("qc_sample", "Sample measured", "", "Which synthetic image the QC measured.", group="Bookkeeping",
            show=False),
)

#: the measures of the group report's compact table and small multiples (first found wins per column)
KEY_MEASURES = ("pearson_r_synthetic", "coverage_synthetic", "median_abs_diff_mm_vertex_synthetic",
                "ribbon_soft_dice_synthetic", "ribbon_dice_synthetic", "ssim_brain", "pearson_r_real", "coverage_real")

_BY_KEY = {m.key: m for m in MEASURES}
_KIND_RE = re.compile(r"^(?P<stem>.+)_(?P<kind>synthetic|real_native|real)$")


def _humanize(key: str) -> str:
    """Last resort for a key nobody described: words, not key syntax."""
    words = key.replace("_", " ").replace(" mm", " (mm)").strip()
    return words[:1].upper() + words[1:]


def describe(key: str, dictionary: Mapping[str, Mapping[str, Any]] | None = None) -> Measure:
    """The :class:`Measure` for a concrete summary key (``pearson_r_synthetic``): from :data:`MEASURES` (with
    ``<kind>`` resolved and the image named), overridden by the QC's data dictionary (exact key or its
    ``<kind>`` pattern: ``LongName``, ``Units``, ``Description``); unknown keys get a humanized name."""
    dictionary = dictionary or {}
    match = _KIND_RE.match(key)
    pattern = f"{match['stem']}_<kind>" if match else key
    base = _BY_KEY.get(key) or _BY_KEY.get(pattern)
    kind = match["kind"] if match and pattern in _BY_KEY or (match and pattern in dictionary) else None
    entry = dictionary.get(key) or dictionary.get(pattern) or {}
    if base is None:
        base = Measure(key, str(entry.get("LongName") or _humanize(key)), "", "", show=True)
    measure = replace(base, key=key)
    if entry.get("Units") and entry["Units"] not in ("1", "text"):
        measure = replace(measure, units=str(entry["Units"]))
    if entry.get("Description") and not measure.definition:
        measure = replace(measure, definition=str(entry["Description"]))
    if kind:
        measure = replace(measure, name=f"{measure.name}, {KIND_LABELS[kind]}")
    return measure


def flag(value: Any, measure: Measure) -> str | None:
    """Why ``value`` is outside ``measure.expected`` (a short sentence), or None (inside, or no range)."""
    if measure.expected is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if not math.isfinite(float(value)):
        return None
    lo, hi = measure.expected
    if lo is not None and value < lo:
        return f"below the expected ≥ {_bound(lo, measure)}"
    if hi is not None and value > hi:
        return f"above the expected ≤ {_bound(hi, measure)}"
    return None


def _bound(x: float, measure: Measure) -> str:
    """A range bound written as the values are (:func:`format_value`: fractions of the cortex as percentages),
    with its unit where it has a short one (mm, dB)."""
    if measure.units.startswith("fraction"):
        return f"{100 * x:g} %"
    return f"{x:g} {measure.units}" if measure.units in ("mm", "dB") else f"{x:g}"


def shown_units(measure: Measure) -> str:
    """The units as the report shows the values (:func:`format_value`): ``% of cortex`` for a fraction of the
    cortex, ``""`` for unitless measures, else the measure's units."""
    if measure.units.startswith("fraction"):
        return "% of " + measure.units[len("fraction of "):] if measure.units.startswith("fraction of ") else "%"
    return "" if not measure.units or measure.units.startswith("unitless") else measure.units


def shown_scale(measure: Measure) -> float:
    """Factor from stored to shown values (100 for fractions, shown in percent; else 1)."""
    return 100.0 if measure.units.startswith("fraction") else 1.0


def expected_text(measure: Measure) -> str:
    """``≥ 0.9``, ``≤ 0.3 mm``, ``≥ 90 %`` (a fraction, shown in percent like its values), ``0.2 to 0.8`` or
    ``""``."""
    if measure.expected is None:
        return ""
    lo, hi = measure.expected
    if lo is not None and hi is not None:
        return f"{_bound(lo, measure)} to {_bound(hi, measure)}"
    return f"≥ {_bound(lo, measure)}" if lo is not None else f"≤ {_bound(hi, measure)}"


def format_value(value: Any, measure: Measure | None = None) -> str:
    """Numbers rounded for reading (3 significant decimals; percentages for fractions of the cortex)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if measure is not None and measure.units.startswith("fraction"):
            return f"{100 * value:.1f} %"
        if abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.3f}"
    return str(value)


def summary_dictionary(keys: list[str], dictionary: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> dict[str, dict[str, Any]]:
    """A BIDS-style data dictionary (``LongName``, ``Description``, ``Units``) for concrete summary keys."""
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        m = describe(key, dictionary)
        entry: dict[str, Any] = {"LongName": m.name, "Description": m.definition or m.name}
        if m.units:
            entry["Units"] = m.units
        if m.expected is not None:
            entry["ExpectedRange"] = [m.expected[0], m.expected[1]]
        out[key] = entry
    return out


#: Desikan–Killiany region names as people write them
DK_REGION_NAMES = {
    "bankssts": "banks of the STS",
    "caudalanteriorcingulate": "caudal anterior cingulate",
    "caudalmiddlefrontal": "caudal middle frontal",
    "cuneus": "cuneus",
    "entorhinal": "entorhinal",
    "fusiform": "fusiform",
    "inferiorparietal": "inferior parietal",
    "inferiortemporal": "inferior temporal",
    "isthmuscingulate": "isthmus cingulate",
    "lateraloccipital": "lateral occipital",
    "lateralorbitofrontal": "lateral orbitofrontal",
    "lingual": "lingual",
    "medialorbitofrontal": "medial orbitofrontal",
    "middletemporal": "middle temporal",
    "parahippocampal": "parahippocampal",
    "paracentral": "paracentral",
    "parsopercularis": "pars opercularis",
    "parsorbitalis": "pars orbitalis",
    "parstriangularis": "pars triangularis",
    "pericalcarine": "pericalcarine",
    "postcentral": "postcentral",
    "posteriorcingulate": "posterior cingulate",
    "precentral": "precentral",
    "precuneus": "precuneus",
    "rostralanteriorcingulate": "rostral anterior cingulate",
    "rostralmiddlefrontal": "rostral middle frontal",
    "superiorfrontal": "superior frontal",
    "superiorparietal": "superior parietal",
    "superiortemporal": "superior temporal",
    "supramarginal": "supramarginal",
    "frontalpole": "frontal pole",
    "temporalpole": "temporal pole",
    "transversetemporal": "transverse temporal",
    "insula": "insula",
    "whole_hemisphere": "whole hemisphere",
}


def region_name(region: str) -> str:
    """A DK region as people write it (unknown names: underscores become spaces)."""
    return DK_REGION_NAMES.get(region, region.replace("_", " "))
