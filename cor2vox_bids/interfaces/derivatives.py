"""Publishing one participant's results into the BIDS derivatives folder (every name from ``bids.naming``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from .. import __version__
from ..bids import naming
from ..bids.dataset import write_json
from ..geometry import MAP_NAMES
from ..qc.layout import QC_FOLDER
from ..reports.html import ReportSubject
from .common import PublishInputSpec, listed, optional, optional_session
from .synthesis import read_maps, save_volume

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


def synthetic_sidecar(run: dict, seed: int, sources: list[str]) -> dict:
    """The JSON sidecar of one synthetic T1w."""
    model = run["model"]
    return {
        "Description": "Synthetic T1-weighted image generated from the cortical surfaces by cor2vox-bids "
        "(Brownian-bridge diffusion). Not an acquired image."
        + (" Made with a DEMO model: not for research use." if model["demo"] else ""),
        "Sources": sources + [f"file://{Path(model['path']).resolve().as_posix()}"],
        "ModelName": model["name"],
        "ModelSHA256": model["sha256"],
        "ModelIsDemo": model["demo"],
        "RandomSeed": int(seed),
        "NumInferenceSteps": int(run["steps"]),
        "Eta": float(run["eta"]),
        "Device": run["device"],
        "SkullStripped": False,
        "Space": "scanner RAS of the participant (same world frame as the T1w), on the model grid",
        "IntensityRange": [0.0, 1.0],
        "SoftwareName": "cor2vox-bids",
        "SoftwareVersion": __version__,
    }


def write_participant_derivatives(
    output_dir: Path,
    subject: ReportSubject,
    sources: list[str],
    run: dict,
    synthetic: list[Path],
    maps_npz: Path,
    qc_dir: Path,
) -> tuple[list[Path], Path]:
    """Copy images, sidecars, conditioning maps (optional) and QC tables; returns (files, the path of the report,
    which the report node writes next with its figures)."""
    sub, ses = subject.subject, subject.session
    written: list[Path] = []
    for seed, path in zip(run["seeds"], synthetic):
        dst = output_dir / naming.synth_path(sub, ses, seed, run["num_samples"])
        written.append(_copy(path, dst))
        written.append(write_json(naming.sidecar_of(dst), synthetic_sidecar(run, seed, sources)))
    if run["save_conditioning"]:
        maps, affine = read_maps(maps_npz)
        for name in MAP_NAMES:
            dst = output_dir / naming.conditioning_path(sub, ses, name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            data = maps[name].astype(np.uint8) if name == "ribbon" else maps[name]
            written.append(save_volume(dst, data, affine))
            written.append(
                write_json(
                    naming.sidecar_of(dst),
                    {
                        "Description": MAP_DESCRIPTIONS[name],
                        "Sources": sources,
                        "Units": "mm" if name.startswith("sdf") else "arbitrary",
                    },
                )
            )
    written.append(_copy(QC_FOLDER.path(qc_dir, "table"), output_dir / naming.qc_table_path(sub, ses)))
    written.append(_copy(QC_FOLDER.path(qc_dir, "dictionary"), output_dir / naming.qc_table_path(sub, ses, ".json")))
    written.append(_copy(QC_FOLDER.path(qc_dir, "summary"), output_dir / naming.qc_summary_path(sub, ses)))
    report = output_dir / naming.report_path(sub, ses)  # written after this node (interfaces.reports)
    return written, report


class _DerivInputSpec(PublishInputSpec):
    source = traits.Enum("freesurfer", "gifti", mandatory=True)
    t1w = traits.Str(desc="the T1w used for QC (named in the report)")
    source_files = traits.List(traits.Str, desc="input files, listed in the report")
    sources = traits.List(traits.Str, desc="BIDS URIs of the inputs (sidecar 'Sources')")
    synthetic = InputMultiObject(File(exists=True), mandatory=True)
    maps = File(exists=True, mandatory=True)
    qc_dir = traits.Directory(exists=True, mandatory=True)


class _DerivOutputSpec(TraitedSpec):
    out_files = traits.List(traits.Str)
    report = traits.Str()


class WriteDerivatives(SimpleInterface):
    """Copy results into the BIDS derivatives folder (names from ``bids.naming``); the report node follows."""

    input_spec = _DerivInputSpec
    output_spec = _DerivOutputSpec
    always_run = True

    def _run_interface(self, runtime):
        i = self.inputs
        subject = ReportSubject(
            subject=i.subject,
            session=optional_session(i),
            source=i.source,
            t1w=optional(i.t1w),
            source_files=listed(i.source_files),
        )
        files, report = write_participant_derivatives(
            Path(i.output_dir),
            subject,
            listed(i.sources),
            json.loads(Path(i.run_json).read_text()),
            [Path(p) for p in i.synthetic],
            Path(i.maps),
            Path(i.qc_dir),
        )
        self._results["out_files"] = [str(f) for f in files]
        self._results["report"] = str(report)
        return runtime
