"""The top-level graph: ``init_cor2vox_wf`` holds one participant sub-workflow per participant (and session)."""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path

from nipype.pipeline import engine as pe

from ..bids import naming
from ..bids.inputs import ParticipantInputs
from .participant import init_participant_wf


@dataclass(frozen=True)
class SynthesisSpec:
    """What every participant's synthesis shares: the checked model and the sampling settings."""

    model: str  # model folder or .safetensors, absolute
    model_sha256: str
    grid_shape: tuple[int, int, int]
    spacing_mm: float
    device: str
    seeds: list[int]
    steps: int
    eta: float
    threads: int  # torch / geometry threads per node (not derived from --nprocs: images must not depend on it)
    atrophy: str | None = None  # atrophy spec file (absolute), validated before the graph


@dataclass(frozen=True)
class BuildFailure:
    """A participant whose sub-workflow could not be built (an input found bad only while building): left out of
    the graph, the others still run."""

    participant: ParticipantInputs
    error: Exception
    traceback: str


def node_name(key: str) -> str:
    """The participant sub-workflow's name (and work-dir folder): ``sub_01_wf``."""
    return re.sub(r"[^A-Za-z0-9]", "_", key) + "_wf"


def init_cor2vox_wf(
    participants: list[ParticipantInputs],
    spec: SynthesisSpec,
    run_json: Path,
    output_dir: Path,
    run_id: str,
    work_dir: Path,
) -> tuple[pe.Workflow, list[BuildFailure]]:
    """One Nipype workflow holding a sub-workflow per participant; content-hashed node caching in ``work_dir``.

    A participant whose sub-workflow raises while it is built is left out of the graph and returned as a
    :class:`BuildFailure` (the caller records it); the others are built and run as usual."""
    wf = pe.Workflow(name=naming.WORKFLOW_NAME, base_dir=str(work_dir))
    output_dir = Path(output_dir).resolve()
    failures: list[BuildFailure] = []
    for p in participants:
        try:
            sub = init_participant_wf(
                name=node_name(p.key),
                participant=p,
                run_json=run_json,
                output_dir=output_dir,
                model=spec.model,
                model_sha256=spec.model_sha256,
                grid_shape=list(spec.grid_shape),
                spacing_mm=spec.spacing_mm,
                seeds=list(spec.seeds),
                steps=spec.steps,
                eta=spec.eta,
                device=spec.device,
                threads=spec.threads,
                crashdump_dir=output_dir / naming.log_dir(p.subject, run_id),
                progress_dir=naming.progress_dir(Path(work_dir).resolve()),
                atrophy=spec.atrophy,
            )
        except Exception as exc:  # this participant only: bad input found while building, or a bug
            failures.append(BuildFailure(p, exc, traceback.format_exc()))
            continue
        wf.add_nodes([sub])
    wf.config["execution"].update(
        {
            "crashfile_format": "txt",
            "hash_method": "content",
            "stop_on_first_crash": False,
            "remove_unnecessary_outputs": False,
            "parameterize_dirs": False,
        }
    )
    return wf, failures
