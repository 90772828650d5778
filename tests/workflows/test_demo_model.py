"""The shipped DEMO model: loads through the safe path and makes a brain-like image for a held-out participant."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.cli.run import main
from cor2vox_bids.diffusion.checkpoint import verify_model
from cor2vox_bids.errors import ExitCode
from cor2vox_bids.execution.model import default_model_path


def test_shipped_model_is_verified_demo():
    path = default_model_path()
    cfg = verify_model(path)  # sha256 and tensor shapes checked, no unpickling
    assert cfg["demo"] is True and "demo" in cfg["name"]
    assert cfg["weights_sha256"] == hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert cfg["grid"]["spacing_mm"] <= 2.0
    assert (path / "model.safetensors").stat().st_size < 20 * 2**20
    card = (path / "model_card.md").read_text()
    assert "DEMO" in card and "FreeSurfer" in card and (path / "LICENSE.FreeSurfer.txt").is_file()


@pytest.fixture(scope="module")
def held_out_run(tmp_path_factory):
    """Participant 21 of the demo data (held out from the demo model's training), default model, seed 0.

    Building the data runs the threaded geometry kernels in this process before the workflow starts its
    MultiProc workers: with forked workers that hung (numba's thread pool is not fork-safe)."""
    pytest.importorskip("smriprep_freesurfer732", reason="demo extra not installed")
    from cor2vox_bids.demodata import build_demo_dataset

    root = tmp_path_factory.mktemp("heldout")
    paths = build_demo_dataset(root / "data", participants=1, seed=0, site2=False, first=21, log=lambda *_: None)
    out = root / "out"
    code = main([str(paths["bids"]), str(out), "participant", "-w", str(root / "work"), "--skip-bids-validation"])
    assert code == ExitCode.OK
    return out


def test_held_out_image_is_brain_like(held_out_run):
    """Tolerances: the model card reports the values measured on this participant; the bounds leave room for
    other CPUs (bf16 rounding differs) while still failing for an untrained or broken model, which scores SSIM
    near 0, inverts or flattens the tissue contrast and has no grey-matter class on the ribbon.
    """
    summary = json.loads((held_out_run / "sub-21/anat/sub-21_desc-summary_qc.json").read_text())
    assert summary["ssim_brain"] > SSIM_BRAIN_MIN
    assert summary["mean_intensity_wm_synthetic"] > summary["mean_intensity_gm_synthetic"] > \
        summary["mean_intensity_csf_synthetic"]
    assert summary["ribbon_dice_synthetic"] > RIBBON_DICE_MIN
    assert summary["ribbon_soft_dice_synthetic"] > RIBBON_SOFT_DICE_MIN
    sidecar = json.loads((held_out_run / "sub-21/anat/sub-21_desc-synth_T1w.json").read_text())
    assert sidecar["ModelIsDemo"] is True and "DEMO" in sidecar["Description"]
    assert "DEMO model" in (held_out_run / "sub-21.html").read_text()
    img = np.asarray(nib.load(str(held_out_run / "sub-21/anat/sub-21_desc-synth_T1w.nii.gz")).dataobj)
    assert np.isfinite(img).all() and img.std() > 0.05


# model card: 0.979 / 0.980 on held-out sub-21/22 (bf16 on this CPU); the bound is the target, which also
# beats the trivial baseline (undeformed template: 0.557 / 0.553) and another participant's surfaces (0.693 / 0.682);
# an untrained net scores < 0
SSIM_BRAIN_MIN = 0.9
RIBBON_DICE_MIN = 0.5  # model card: 0.697 / 0.680 (the real image on the same grid: 0.686 / 0.685); untrained: 0
# partial-volume (soft) Dice, the issue's ≥ 0.8: model card 0.871 / 0.875 (real image on the grid 0.905 / 0.915)
RIBBON_SOFT_DICE_MIN = 0.8
