"""Graph pieces of ``--atrophy SPEC`` and of the seed std map (``--num-samples`` ≥ 2), joined to a participant graph.

::

    ingest ─► atrophy_surfaces ─► atrophy_conditioning (MapNode over steps, baseline grid) ─► atrophy_synthesis
       │                                  ▲ conditioning (baseline maps)              (steps batched, baseline seed)
       └──────────────────────────────────┴──────────────► atrophy_qc ◄── synthesis (baseline image) ◄──┘
    synthesis (all seeds) + conditioning ─► seed_std

Nothing of the baseline is recomputed: the steps reuse its grid and white SDF, and QC measures only the new images.
The step images come from one node that batches the steps into shared network calls (cheaper than one call per
step on CPU and GPU alike); each still gets the noise a one-image synthesis with the baseline's seed gets.
"""

from __future__ import annotations

from pathlib import Path

from nipype.pipeline import engine as pe

from ..bids.inputs import ParticipantInputs
from ..geometry.atrophy import load_atrophy_spec
from ..interfaces.atrophy import (
    MAX_SERIES_BATCH,
    AtrophyQC,
    AtrophySurfaces,
    SeedStd,
    StepConditioning,
    SynthesizeSeries,
    WriteAtrophyDerivatives,
)


def first(items):
    """The first of a list of files (the baseline sample: the first seed)."""
    return items[0] if isinstance(items, (list, tuple)) else items


def add_atrophy_nodes(wf: pe.Workflow, *, ingest: pe.Node, conditioning: pe.Node, synth: pe.Node, spec: str,
                      model: str, model_sha256: str, seed: int, steps: int, eta: float, device: str, threads: int,
                      label: str, progress_dir: Path | None = None) -> dict[str, pe.Node]:
    """Add the atrophy series to ``wf``; returns the nodes whose outputs the derivatives sink publishes
    (``surfaces``: step surfaces, GIFTIs, report; ``synthesis``: step images; ``qc``: the QC folder)."""
    parsed = load_atrophy_spec(spec)
    label_files = [str(r.label_path) for r in parsed.regions if r.label_path is not None]
    n_steps = parsed.steps
    surfaces = pe.Node(AtrophySurfaces(spec=spec, label_files=label_files), name="atrophy_surfaces", mem_gb=1.0)
    step_cond = pe.MapNode(StepConditioning(threads=threads), iterfield=["hemispheres"],
                           name="atrophy_conditioning", n_procs=threads, mem_gb=2.0)
    gpu = device.startswith("cuda")
    step_synth = pe.Node(SynthesizeSeries(model=model, model_sha256=model_sha256, seed=int(seed), steps=steps,
                                          eta=eta, device=device, threads=threads, label=f"{label} atrophy",
                                          use_gpu=gpu, progress_dir=str(progress_dir or "")),
                         name="atrophy_synthesis", n_procs=threads,
                         # a batch element's activations: 0.3 GB measured (demo model, CPU bf16)
                         mem_gb=3.0 + 0.5 * (min(n_steps, MAX_SERIES_BATCH) - 1))
    qc = pe.Node(AtrophyQC(spec=spec), name="atrophy_qc", mem_gb=2.0)
    wf.connect([
        (ingest, surfaces, [("hemispheres", "hemispheres")]),
        (surfaces, step_cond, [("hemispheres", "hemispheres")]),
        (conditioning, step_cond, [("maps", "baseline_maps")]),
        (step_cond, step_synth, [("maps", "maps")]),
        (ingest, qc, [("hemispheres", "hemispheres")]),
        (surfaces, qc, [("prescription", "prescription"), ("hemispheres", "step_hemispheres")]),
        (synth, qc, [(("synthetic", first), "baseline")]),
        (step_synth, qc, [("synthetic", "step_images")]),
    ])
    return {"surfaces": surfaces, "synthesis": step_synth, "qc": qc}


def add_seed_std_node(wf: pe.Workflow, *, conditioning: pe.Node, synth: pe.Node) -> pe.Node:
    """Voxel-wise std across the samples (``--num-samples`` ≥ 2) and its ribbon/brain summary."""
    node = pe.Node(SeedStd(), name="seed_std", mem_gb=1.0)
    wf.connect([(synth, node, [("synthetic", "synthetic")]), (conditioning, node, [("maps", "maps")])])
    return node


def add_series_outputs(wf: pe.Workflow, *, p: ParticipantInputs, ingest: pe.Node, conditioning: pe.Node,
                       synth: pe.Node, sink: pe.Node, atrophy: str | None, run_json: Path, output_dir: Path, model: str,
                       model_sha256: str, seeds: list[int], steps: int, eta: float, device: str, threads: int,
                       progress_dir: Path | None) -> pe.Node:
    """The atrophy series (with ``atrophy``) and the seed std map (with ≥ 2 seeds), and their derivatives node
    (after the main one)."""
    publish = pe.Node(WriteAtrophyDerivatives(output_dir=str(output_dir), subject=p.subject, session=p.session or "",
                                              sources=p.source_uris(), run_json=str(run_json)),
                      name="atrophy_derivatives", mem_gb=0.5, run_without_submitting=True)
    wf.connect(sink, "out_files", publish, "published")
    if atrophy is not None:
        nodes = add_atrophy_nodes(wf, ingest=ingest, conditioning=conditioning, synth=synth, spec=str(atrophy),
                                  model=model, model_sha256=model_sha256, seed=seeds[0], steps=steps, eta=eta,
                                  device=device, threads=threads, label=p.key, progress_dir=progress_dir)
        publish.inputs.spec = str(atrophy)
        wf.connect([
            (nodes["surfaces"], publish, [("report", "surfaces_report"), ("pial_gifti", "pial_gifti")]),
            (nodes["synthesis"], publish, [("synthetic", "step_images")]),
            (nodes["qc"], publish, [("atrophy_dir", "atrophy_dir")]),
        ])
    if len(seeds) >= 2:
        std = add_seed_std_node(wf, conditioning=conditioning, synth=synth)
        wf.connect([(std, publish, [("seedstd", "seedstd"), ("summary", "seedstd_summary")])])
    return publish
