"""One participant's graph: ingest → conditioning → synthesis (N seeds) → QC → derivatives."""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from ..bids.inputs import ParticipantInputs
from ..interfaces.derivatives import WriteDerivatives
from ..interfaces.qc import QualityControl
from ..interfaces.reports import ParticipantFigures, ParticipantReportNode
from ..interfaces.surfaces import Ingest, ingest_inputs
from ..interfaces.synthesis import Conditioning, RealOnGrid, Synthesize
from .atrophy import add_series_outputs


def report_inputs(p: ParticipantInputs) -> list[tuple[str, str]]:
    """The inputs the report's Summary names: the T1w first, then every surface file."""
    rows = [("T1w", str(p.t1w))] if p.t1w else [("T1w", "none (no real image: similarity measures are skipped)")]
    what = {"white": "white surface", "pial": "pial surface", "annot": "regions (annotation)",
            "thickness": "FreeSurfer thickness", "sphere": "registered sphere"}
    for hemi, files in sorted(p.hemis.items()):
        side = {"L": "Left", "R": "Right"}.get(hemi, hemi)
        for field, label in what.items():
            path = getattr(files, field, None)
            if path is not None:
                rows.append((f"{side} {label}", str(path)))
    return rows


def init_participant_wf(
    *,
    name: str,
    participant: ParticipantInputs,
    run_json: Path,
    output_dir: Path,
    model: str,
    model_sha256: str,
    grid_shape: list[int],
    spacing_mm: float,
    seeds: list[int],
    steps: int,
    eta: float,
    device: str,
    threads: int,
    crashdump_dir: Path,
    progress_dir: Path | None = None,
    atrophy: str | None = None,
) -> pe.Workflow:
    """Build the per-participant workflow (no computation happens here).

    Every input file of the participant is a ``File`` input of a node, so a changed surface reruns what depends
    on it when the work dir is reused."""
    p = participant
    wf = pe.Workflow(name=name)
    ingest = pe.Node(Ingest(label=p.key, **ingest_inputs(p.hemis, p.source, p.orig, p.t1w)), name="ingest", mem_gb=0.5)
    conditioning = pe.Node(
        Conditioning(grid_shape=list(grid_shape), spacing_mm=spacing_mm, threads=threads),
        name="conditioning",
        n_procs=threads,
        mem_gb=2.0,
    )
    gpu = device.startswith("cuda")
    synth = pe.MapNode(
        Synthesize(
            model=model,
            model_sha256=model_sha256,
            steps=steps,
            eta=eta,
            device=device,
            threads=threads,
            label=p.key,
            use_gpu=gpu,
            progress_dir=str(progress_dir or ""),
        ),
        iterfield=["seed"],
        name="synthesis",
        n_procs=threads,
        mem_gb=3.0,
    )
    synth.inputs.seed = list(seeds)
    qc = pe.Node(QualityControl(), name="qc", mem_gb=2.0)
    # what both publishing nodes are told of the participant and the run (interfaces.common.PublishInputSpec)
    publish = {"output_dir": str(output_dir), "subject": p.subject, "session": p.session or "",
               "run_json": str(run_json), "source": p.source}
    sink = pe.Node(
        WriteDerivatives(
            **publish,
            t1w=str(p.t1w) if p.t1w else "",
            source_files=[str(f) for f in p.surface_files()],
            sources=p.source_uris(),
        ),
        name="derivatives",
        mem_gb=1.0,
        run_without_submitting=True,
    )
    figures = pe.Node(ParticipantFigures(subject=p.subject, session=p.session or "", model=str(model)),
                      name="figures", mem_gb=1.0)
    report = pe.Node(
        ParticipantReportNode(**publish, inputs=report_inputs(p)),
        name="report",
        mem_gb=0.5,
        run_without_submitting=True,  # always rewritten (the page must match the published files): no job
    )
    wf.connect(
        [
            (ingest, conditioning, [("hemispheres", "hemispheres")]),
            (conditioning, synth, [("maps", "maps")]),
            (ingest, qc, [("hemispheres", "hemispheres")]),
            (conditioning, qc, [("maps", "maps")]),
            (synth, qc, [("synthetic", "synthetic")]),
            (synth, sink, [("synthetic", "synthetic")]),
            (conditioning, sink, [("maps", "maps")]),
            (qc, sink, [("qc_dir", "qc_dir")]),
            (ingest, figures, [("hemispheres", "hemispheres")]),
            (conditioning, figures, [("maps", "maps")]),
            (synth, figures, [("synthetic", "synthetic")]),
            (qc, figures, [("qc_dir", "qc_dir")]),
            (ingest, report, [("warnings", "warnings")]),
            (figures, report, [("index", "figures")]),
            (qc, report, [("qc_dir", "qc_dir")]),
            (sink, report, [("out_files", "published")]),
        ]
    )
    if p.t1w is not None:
        real = pe.Node(RealOnGrid(t1w=str(p.t1w)), name="real_on_grid", mem_gb=1.0)
        wf.connect([(conditioning, real, [("maps", "maps")]), (real, qc, [("real", "real")]),
                    (real, figures, [("real", "real")])])
        qc.inputs.real_native = str(p.t1w)
    if atrophy is not None or len(seeds) >= 2:
        series = add_series_outputs(
            wf, p=p, ingest=ingest, conditioning=conditioning, synth=synth, sink=sink, atrophy=atrophy,
            run_json=run_json, output_dir=output_dir, model=model, model_sha256=model_sha256, seeds=list(seeds),
            steps=steps, eta=eta, device=device, threads=threads, progress_dir=progress_dir)
        wf.connect(series, "out_files", report, "series_published")
    for node_name in wf.list_node_names():
        wf.get_node(node_name).config = {"execution": {"crashdump_dir": str(crashdump_dir), "crashfile_format": "txt"}}
    return wf
