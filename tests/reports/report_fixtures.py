"""A small participant (two sphere-shell 'hemispheres' in a 2 mm volume) and its reports, for the report tests."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "geometry"))
from meshes import icosphere  # noqa: E402

SHAPE = (40, 48, 40)
AFFINE = np.array([[2.0, 0, 0, -40.0], [0, 2.0, 0, -48.0], [0, 0, 2.0, -40.0], [0, 0, 0, 1]])

SUMMARY = {
    "regions": "desikan-killiany", "n_rows": 4,
    "pearson_r_synthetic": 0.93, "mean_abs_diff_mm_synthetic": 0.21, "n_regions_synthetic": 4,
    "coverage_synthetic": 0.81, "pearson_r_vertex_synthetic": 0.7, "median_abs_diff_mm_vertex_synthetic": 0.25,
    "pearson_r_real": 0.95, "mean_abs_diff_mm_real": 0.18, "n_regions_real": 4, "coverage_real": 0.92,
    "pearson_r_real_native": "n/a", "mean_abs_diff_mm_real_native": "n/a", "n_regions_real_native": 0,
    "ssim_brain": 0.9651867220353442, "psnr_brain": 29.1, "mae_brain": 0.03,
    "ribbon_dice_synthetic": 0.62, "mean_intensity_wm_synthetic": 0.51, "n_samples": 1,
    "qc_sample": "synth_seed0.nii.gz", "normalisation": "min to 0, 99.9th percentile to 1, clipped",
}
ROWS = [
    {"hemi": h, "region": g, "region_source": "aparc.annot", "n_vertices": 100, "thickness_surface": t,
     "thickness_synthetic": t + d, "thickness_surface_synthetic": t, "coverage_synthetic": 0.8,
     "thickness_real": t + d / 2, "thickness_surface_real": t, "coverage_real": 0.9,
     "thickness_real_native": float("nan"), "thickness_surface_real_native": float("nan"),
     "coverage_real_native": float("nan")}
    for h in ("L", "R") for g, t, d in (("superiorfrontal", 2.8, 0.2), ("bankssts", 2.4, -0.1))
]
TABLE_DICTIONARY = {
    "thickness_surface": {"LongName": "Surface cortical thickness", "Units": "mm"},
    "coverage_synthetic": {"LongName": "Coverage of the synthetic thickness measurement", "Units": "fraction (0-1)"},
}
RUN = {"model": {"name": "cor2vox-demo", "demo": True, "sha256": "ab" * 32, "grid_shape": list(SHAPE),
                 "spacing_mm": 2.0}, "seeds": [0], "steps": 2, "eta": 1.0, "device": "cpu", "num_samples": 1}


def _mesh(radius: float, centre) -> SimpleNamespace:
    v, f = icosphere(3, radius, centre)
    return SimpleNamespace(vertices=np.asarray(v, float), faces=np.asarray(f, np.int64))


def hemispheres() -> list[SimpleNamespace]:
    return [SimpleNamespace(hemi=h, white=_mesh(12.0, (x, 0.0, 0.0)), pial=_mesh(15.0, (x, 0.0, 0.0)))
            for h, x in (("L", -17.0), ("R", 17.0))]


def volumes() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic and 'real' images: bright inside the white spheres, grey in the shells, dark outside."""
    idx = np.indices(SHAPE).reshape(3, -1).T
    world = idx * 2.0 + AFFINE[:3, 3]
    out = np.zeros(len(world))
    for x in (-17.0, 17.0):
        r = np.linalg.norm(world - [x, 0, 0], axis=1)
        out = np.maximum(out, np.where(r < 12, 0.9, np.where(r < 15, 0.5, 0.0)))
    syn = out.reshape(SHAPE).astype(np.float32)
    rng = np.random.default_rng(0)
    return syn, np.clip(syn + rng.normal(0, 0.03, SHAPE), 0, 1).astype(np.float32)


def build_reports(root: Path) -> dict[str, Path]:
    """Figures, a participant report and a group report (two rows, the second an outlier) under ``root``."""
    from cor2vox_bids.reports.group import GroupReport, make_group_figures, write_group_report
    from cor2vox_bids.reports.participant import ParticipantReport, make_participant_figures, write_participant_report

    hemis = hemispheres()
    syn, real = volumes()
    figdir = root / "sub-01" / "figures"
    figdir.mkdir(parents=True)
    vertex = {}
    for h in hemis:
        n = len(h.pial.vertices)
        vertex[f"{h.hemi}_surface"] = np.full(n, 3.0)
        err = np.linspace(-0.5, 0.5, n)
        err[::7] = np.nan
        vertex[f"{h.hemi}_synthetic"] = 3.0 + err
        vertex[f"{h.hemi}_real"] = 3.0 + err / 2
    maps = {"sdf_pial": syn - 0.5, "sdf_white": syn - 0.7, "sdf_cortex": syn * 0, "ribbon": (syn == 0.5) * 1.0,
            "edges": syn}

    def name(desc, suffix, hemi, ext):
        return figdir / f"sub-01{'_hemi-' + hemi if hemi else ''}_desc-{desc}_{suffix}{ext}"

    figs = make_participant_figures(name, hemis, (syn, AFFINE), real=(real, AFFINE), maps=maps, maps_affine=AFFINE,
                                    vertex=vertex, rows=ROWS, clip_mm=5.0)
    crash = root / "sub-01" / "log" / "run1" / "crash-example.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback: example\n")
    report = ParticipantReport(
        subject="01", session=None, surfaces_source="freesurfer",
        inputs=[("T1w", "sub-01/anat/sub-01_T1w.nii.gz")], run=RUN, summary=SUMMARY, rows=ROWS, figures=figs,
        table_dictionary=TABLE_DICTIONARY, crash_files=[crash], versions={"cor2vox-bids": "0.1.0", "numpy": "2"},
        started="2026-01-01T10:00:00+00:00", run_id="run1", command=["cor2vox-bids", "in", "out", "participant"])
    participant = write_participant_report(root / "sub-01.html", report)
    rows = [{"participant_id": f"sub-{i:02d}", **SUMMARY, "coverage_synthetic": 0.93, "ribbon_dice_synthetic": 0.85}
            for i in range(1, 7)]
    rows[1] = {**rows[1], "participant_id": "sub-02", "ssim_brain": 0.5, "pearson_r_synthetic": 0.2}
    for i, r in enumerate(rows):
        if i not in (1,):
            r["ssim_brain"] = 0.9640 + 0.0003 * i
    tsv = root / "group_desc-qc_summary.tsv"
    tsv.write_text("participant_id\tssim_brain\n"
                   + "".join(f"{r['participant_id']}\t{r['ssim_brain']}\n" for r in rows))
    gfig = root / "group" / "figures"
    gfig.mkdir(parents=True)
    figures = make_group_figures(gfig / "group_desc-measures_qc.png", rows)
    group = write_group_report(root / "group_desc-qc_report.html", GroupReport(
        rows=rows, reports={"sub-01": participant}, tables=[("Summary measures", tsv)], figures=figures, demo=True))
    return {"participant": participant, "group": group, "figures": figdir}
