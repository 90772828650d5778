"""Quality control measured in the image: thickness along white→pial lines, SSIM/PSNR/MAE, ribbon Dice, figures.

Core functions take plain arrays (vertices, faces, per-vertex labels, names); ``adapters`` accepts
``geometry.Hemisphere`` objects.
"""

from .regions import (
    QC_COLUMNS,
    QC_TSV_DICTIONARY,
    read_qc_tsv,
    region_rows,
    summarize_rows,
    write_qc_tsv,
    write_summary_json,
)
from .similarity import similarity
from .thickness import TissueIntensities, calibrate_profile_model, estimate_tissue_intensities, image_thickness
from .tissue import ribbon_dice, tissue_labels

__all__ = [
    "QC_COLUMNS",
    "QC_TSV_DICTIONARY",
    "TissueIntensities",
    "calibrate_profile_model",
    "estimate_tissue_intensities",
    "image_thickness",
    "read_qc_tsv",
    "region_rows",
    "ribbon_dice",
    "similarity",
    "summarize_rows",
    "tissue_labels",
    "write_qc_tsv",
    "write_summary_json",
]
