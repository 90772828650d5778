"""One participant's graph: ingest → conditioning → synthesis (N seeds) → QC → derivatives."""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from ..interfaces.cor2vox import (Conditioning, Ingest, QualityControl, RealOnGrid, Synthesize,
                                  WriteDerivatives)


def init_participant_wf(*, name: str, participant_json: Path, run_json: Path, output_dir: Path, model: str,
                        model_sha256: str, grid_shape: list[int], spacing_mm: float, seeds: list[int], steps: int,
                        eta: float, device: str, threads: int, has_t1w: bool, label: str,
                        crashdump_dir: Path) -> pe.Workflow:
    """Build the per-participant workflow (no computation happens here)."""
    wf = pe.Workflow(name=name)
    ingest = pe.Node(Ingest(participant_json=str(participant_json)), name="ingest", mem_gb=0.5)
    conditioning = pe.Node(Conditioning(grid_shape=list(grid_shape), spacing_mm=spacing_mm, threads=threads),
                           name="conditioning", n_procs=threads, mem_gb=2.0)
    gpu = device.startswith("cuda")
    synth = pe.MapNode(Synthesize(model=model, model_sha256=model_sha256, steps=steps, eta=eta, device=device,
                                  threads=threads, label=label, use_gpu=gpu),
                       iterfield=["seed"], name="synthesis", n_procs=threads, mem_gb=3.0)
    synth.inputs.seed = list(seeds)
    qc = pe.Node(QualityControl(), name="qc", mem_gb=2.0)
    sink = pe.Node(WriteDerivatives(output_dir=str(output_dir), participant_json=str(participant_json),
                                    run_json=str(run_json)), name="derivatives", mem_gb=1.0, run_without_submitting=True)
    wf.connect([
        (ingest, conditioning, [("hemispheres", "hemispheres")]),
        (conditioning, synth, [("maps", "maps")]),
        (ingest, qc, [("hemispheres", "hemispheres")]),
        (conditioning, qc, [("maps", "maps")]),
        (synth, qc, [("synthetic", "synthetic")]),
        (synth, sink, [("synthetic", "synthetic")]),
        (conditioning, sink, [("maps", "maps")]),
        (ingest, sink, [("hemispheres", "hemispheres")]),
        (qc, sink, [("qc_dir", "qc_dir")]),
    ])
    if has_t1w:
        real = pe.Node(RealOnGrid(), name="real_on_grid", mem_gb=1.0)
        real.inputs.t1w = _t1w_of(participant_json)
        wf.connect([(conditioning, real, [("maps", "maps")]), (real, qc, [("real", "real")])])
    for node_name in wf.list_node_names():
        wf.get_node(node_name).config = {"execution": {"crashdump_dir": str(crashdump_dir),
                                                       "crashfile_format": "txt"}}
    return wf


def _t1w_of(participant_json: Path) -> str:
    import json

    return json.loads(Path(participant_json).read_text())["t1w"]
