"""Quality control measured in the image: thickness with FreeSurfer's definition, SSIM/PSNR/MAE, ribbon Dice, figures.

The thickness measure (v2): ``qc.lines`` (FreeSurfer's two lines per vertex), ``qc.profiles`` (profiles and the
blurred-slab fit), ``qc.measure`` (calibration, gates, per-vertex thickness), ``qc.participant`` (all images of one
participant, regions, summary). ``qc.thickness.image_thickness`` is the v1 measure along white→pial vertex lines.
Core functions take plain arrays (vertices, faces, per-vertex labels, names); ``adapters`` accepts
``geometry.Hemisphere`` objects.
"""

from .participant import measure_participant, thickness_summary
from .regions import (
    QC_COLUMNS,
    QC_TSV_DICTIONARY,
    read_qc_tsv,
    region_rows,
    summarize_rows,
    write_qc_tsv,
    write_summary_json,
)
from .ribbon import ribbon_dice_in_brain, ribbon_soft_dice
from .similarity import similarity
from .thickness import TissueIntensities, calibrate_profile_model, estimate_tissue_intensities, image_thickness


def __getattr__(name: str):
    """``tissue_labels`` and ``ribbon_dice`` (whole-head mixture, scikit-learn) are imported on first use: the
    import costs ~2 s and the QC node uses ``ribbon_dice_in_brain``."""
    if name in ("tissue_labels", "ribbon_dice"):
        from . import tissue

        return getattr(tissue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "QC_COLUMNS",
    "QC_TSV_DICTIONARY",
    "TissueIntensities",
    "calibrate_profile_model",
    "estimate_tissue_intensities",
    "image_thickness",
    "measure_participant",
    "ribbon_dice_in_brain",
    "ribbon_soft_dice",
    "thickness_summary",
    "read_qc_tsv",
    "region_rows",
    "ribbon_dice",
    "similarity",
    "summarize_rows",
    "tissue_labels",
    "write_qc_tsv",
    "write_summary_json",
]
