"""Calibrate the WM > GM > CSF frame/identity check (``geometry.validation.check_tissue_contrast``).

Usage: ``python scripts/calibrate_frame_check.py DEMO_BIDS_DIR OUT.json`` with DEMO_BIDS_DIR made by
``cor2vox-demo-data DIR --participants 3 --no-site2`` (DIR/bids).

Cases per participant and hemisphere: its own surfaces; shifted by 2, 3, 5, 10, 26 mm in random directions;
shifted by -c_ras (FreeSurfer tkr RAS left as scanner RAS); every other participant's surfaces. For the first
participant also a degraded copy of its T1w (contrast compressed to 35 %, extra blur, noise 4 % of bright), and
fsaverage5's average T1 (an intensity ramp without a ribbon) with its own and shifted surfaces. Prints one row per
case (score as given, gain of the best translation, that translation, verdict) and writes the rows as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter

from cor2vox_bids.errors import SurfaceError
from cor2vox_bids.geometry import Hemisphere, Surface, load_freesurfer_hemisphere
from cor2vox_bids.geometry.validation import best_translation, check_tissue_contrast, tissue_contrast


def moved(hemi: Hemisphere, shift: np.ndarray) -> Hemisphere:
    """A copy of ``hemi`` translated by ``shift`` mm."""
    return Hemisphere(hemi.hemi, Surface(hemi.white.vertices + shift, hemi.white.faces, hemi.white.path),
                      Surface(hemi.pial.vertices + shift, hemi.pial.faces, hemi.pial.path))


def verdict(hemi: Hemisphere, data: np.ndarray, aff: np.ndarray, c_ras: np.ndarray | None) -> str:
    try:
        check_tissue_contrast(hemi, data, aff, c_ras)
    except SurfaceError as exc:
        text = str(exc)
        return "FAIL:" + ("c_ras" if "c_ras" in text else "displaced" if "displaced" in text else "contrast")
    return "pass"


def degrade(data: np.ndarray, seed: int) -> np.ndarray:
    """Lower contrast (35 %), extra blur and noise: a stand-in for a poor real scan."""
    mean = float(np.median(data[data > 0.05 * np.percentile(data, 99)]))
    low = gaussian_filter(mean + 0.35 * (data - mean), 0.8)
    noise = np.random.default_rng(seed).normal(0, 0.04 * float(np.percentile(low, 99)), size=low.shape)
    return (low + noise).astype(np.float32)


def random_shift(rng: np.random.Generator, size: float) -> np.ndarray:
    d = rng.normal(size=3)
    return d * size / np.linalg.norm(d)


def main(demo: Path, out: Path) -> None:
    fs = demo / "derivatives" / "freesurfer"
    subs = sorted(p.name for p in fs.glob("sub-*"))
    rng = np.random.default_rng(7)
    rows: list[dict] = []

    def run(label: str, hemi: Hemisphere, data: np.ndarray, aff: np.ndarray, c_ras=None) -> None:
        shift, best, at_zero = best_translation(hemi, data, aff)
        rows.append({"case": label, "score": round(tissue_contrast(hemi, data, aff).score, 3),
                     "gain": round(best - at_zero, 3), "shift": np.round(shift, 1).tolist(),
                     "verdict": verdict(hemi, data, aff, c_ras)})
        print(rows[-1], flush=True)

    for s in subs:
        img = nib.load(str(next((demo / s / "anat").glob("*_T1w.nii*"))))
        data, aff = np.asanyarray(img.dataobj).astype(np.float32), img.affine
        c_ras = aff[:3, :3] @ (np.asarray(img.shape[:3]) / 2.0) + aff[:3, 3]
        for h in "LR":
            hemi = load_freesurfer_hemisphere(fs / s, h)
            run(f"{s} {h} correct", hemi, data, aff, c_ras)
            for size in (2, 3, 5, 10, 26):
                for _ in range(2):
                    run(f"{s} {h} shift {size} mm", moved(hemi, random_shift(rng, size)), data, aff, c_ras)
            run(f"{s} {h} tkr frame (-c_ras)", moved(hemi, -c_ras), data, aff, c_ras)
            for o in subs:
                if o != s:
                    run(f"{s} {h} surfaces of {o}", load_freesurfer_hemisphere(fs / o, h), data, aff, c_ras)
            if s == subs[0]:
                low = degrade(data, 3)
                run(f"{s} {h} LOW-CONTRAST correct", hemi, low, aff, c_ras)
                for size in (2, 5, 10, 26):
                    run(f"{s} {h} LOW-CONTRAST shift {size} mm", moved(hemi, random_shift(rng, size)), low, aff,
                        c_ras)
                other = load_freesurfer_hemisphere(fs / subs[1], h)
                run(f"{s} {h} LOW-CONTRAST surfaces of {subs[1]}", other, low, aff, c_ras)
    spec = importlib.util.find_spec("smriprep_freesurfer732")
    fsavg = Path(list(spec.submodule_search_locations)[0]) / "freesurfer" / "subjects" / "fsaverage5"
    t1 = nib.load(str(fsavg / "mri" / "T1.mgz"))
    data = np.asanyarray(t1.dataobj).astype(np.float32)
    for h in "LR":
        hemi = load_freesurfer_hemisphere(fsavg, h)
        run(f"fsaverage5 {h} correct (average T1, ramp)", hemi, data, t1.affine)
        for size in (2, 5, 10, 26):
            run(f"fsaverage5 {h} shift {size} mm", moved(hemi, random_shift(rng, size)), data, t1.affine)
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
