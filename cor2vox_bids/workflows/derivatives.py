"""Write one participant's results into the BIDS derivatives folder (names from :mod:`.outputs`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .. import __version__
from ..steps import MAP_NAMES, read_maps, save_volume
from . import outputs

MAP_DESCRIPTIONS = {
    "sdf_pial": "Signed distance (mm) to the pial surface, both hemispheres; negative inside.",
    "sdf_white": "Signed distance (mm) to the white surface, both hemispheres; negative inside.",
    "sdf_cortex": "Cortex SDF (mm): 0 in the ribbon, the distance to the nearer of white/pial outside it.",
    "ribbon": "Cortical ribbon: voxels where the pial and white SDFs differ in sign.",
    "edges": "Mesh-edge map in [0, 1] (see docs/architecture.md, geometry).",
}


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return dst


def sources(participant: dict) -> list[str]:
    """BIDS URIs of the surfaces (and the T1w used for QC)."""
    uris = []
    if participant["source"] == "freesurfer":
        root, name = Path(participant["fs_dir"]), "freesurfer"
    else:
        root, name = Path(participant["smriprep_dir"]), "smriprep"
    for hemi in ("L", "R"):
        for kind in ("white", "pial", "annot"):
            path = participant["hemis"][hemi].get(kind)
            if path:
                uris.append(outputs.bids_uri(name, Path(path), root))
    if participant.get("t1w"):
        uris.append(outputs.bids_uri("raw", Path(participant["t1w"]), Path(participant["bids_dir"])))
    return uris


def write_participant_derivatives(output_dir: Path, participant: dict, run: dict, synthetic: list[Path],
                                  maps_npz: Path, hemis_npz: Path, qc_dir: Path) -> tuple[list[Path], Path]:
    """Copy images, sidecars, conditioning maps (optional), QC tables and figures; write the HTML report."""
    from .report import write_participant_report

    sub, ses = participant["subject"], participant.get("session")
    model = run["model"]
    written: list[Path] = []
    srcs = sources(participant)
    model_uri = f"file://{Path(model['path']).resolve().as_posix()}"
    for seed, path in zip(run["seeds"], synthetic):
        dst = output_dir / outputs.synth_path(sub, ses, seed, run["num_samples"])
        written.append(_copy(path, dst))
        sidecar = {
            "Description": "Synthetic T1-weighted image generated from the cortical surfaces by cor2vox-bids "
                           "(Brownian-bridge diffusion). Not an acquired image."
                           + (" Made with a DEMO model: not for research use." if model["demo"] else ""),
            "Sources": srcs + [model_uri],
            "ModelName": model["name"], "ModelSHA256": model["sha256"], "ModelIsDemo": model["demo"],
            "RandomSeed": int(seed), "NumInferenceSteps": int(run["steps"]), "Eta": float(run["eta"]),
            "Device": run["device"], "SkullStripped": False,
            "Space": "scanner RAS of the participant (same world frame as the T1w), on the model grid",
            "IntensityRange": [0.0, 1.0],
            "SoftwareName": "cor2vox-bids", "SoftwareVersion": __version__,
        }
        written.append(outputs.write_json(dst.with_name(dst.name.replace(".nii.gz", ".json")), sidecar))
    if run["save_conditioning"]:
        maps, affine = read_maps(maps_npz)
        for name in MAP_NAMES:
            dst = output_dir / outputs.conditioning_path(sub, ses, name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            data = maps[name].astype(np.uint8) if name == "ribbon" else maps[name]
            written.append(save_volume(dst, data, affine))
            written.append(outputs.write_json(dst.with_name(dst.name.replace(".nii.gz", ".json")), {
                "Description": MAP_DESCRIPTIONS[name], "Sources": srcs,
                "Units": "mm" if name.startswith("sdf") else "arbitrary"}))
    written.append(_copy(qc_dir / "qc.tsv", output_dir / outputs.qc_table_path(sub, ses)))
    written.append(_copy(qc_dir / "qc.json", output_dir / outputs.qc_table_path(sub, ses, ".json")))
    written.append(_copy(qc_dir / "summary.json", output_dir / outputs.qc_summary_path(sub, ses)))
    figures = {}
    for fig in sorted((qc_dir / "figures").glob("*.png")):
        dst = output_dir / outputs.figure_path(sub, ses, fig.stem.replace("_", ""), "T1w" if "slices" in fig.stem else "qc")
        figures[fig.stem] = _copy(fig, dst)
        written.append(dst)
    report = write_participant_report(output_dir, output_dir / outputs.report_path(sub, ses), participant, run,
                                      qc_dir, figures)
    written.append(report)
    return written, report
