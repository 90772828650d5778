"""End to end: ``--atrophy SPEC`` and ``--num-samples 2`` on one demo participant with the tiny model."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.bids import naming
from cor2vox_bids.cli.run import main
from cor2vox_bids.errors import ExitCode
from cor2vox_bids.qc.atrophy import ATROPHY_COLUMNS, read_atrophy_tsv

SPEC = {"steps": 2, "falloff_mm": 5,
        "regions": [{"hemi": "L", "label": "precentral", "thinning_mm": 1.0},
                    {"hemi": "R", "label": "superiorfrontal", "thinning_fraction": 0.2}]}


def _run(bids, out, *extra):
    return main([str(bids), str(out), "participant", "--skip-bids-validation", "--participant-label", "01",
                 *map(str, extra)])


@pytest.fixture(scope="module")
def atrophy_run(demo_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("atrophy")
    spec = root / "spec.json"
    spec.write_text(json.dumps(SPEC))
    out, work = root / "out", root / "work"
    code = _run(demo_data["bids"], out, "--model", tiny_model, "-w", work, "--atrophy", spec, "--num-samples", 2,
                "--random-seed", 7, "--steps", 2, "--nprocs", 2, "--omp-nthreads", 1)
    assert code == ExitCode.OK
    return {"out": out, "work": work, "spec": spec, "bids": demo_data["bids"], "model": tiny_model, "root": root}


def _image(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_files_and_sidecars(atrophy_run):
    out = atrophy_run["out"]
    base_sidecar = json.loads((out / naming.synth_path("01", None, 7, 2, ".json")).read_text())
    base = _image(out / naming.synth_path("01", None, 7, 2))
    for step in (1, 2):
        img = out / naming.atrophy_image_path("01", None, step)
        assert img.is_file() and _image(img).shape == base.shape
        base_affine = nib.load(str(out / naming.synth_path("01", None, 7, 2))).affine
        assert nib.load(str(img)).affine.tolist() == base_affine.tolist()
        side = json.loads((out / naming.atrophy_image_path("01", None, step, ".json")).read_text())
        assert side["AtrophyStep"] == step and side["AtrophySteps"] == 2
        assert side["RandomSeed"] == base_sidecar["RandomSeed"] == 7  # the baseline's seed at every step
        assert side["ModelSHA256"] == base_sidecar["ModelSHA256"]
        assert side["PrescribedThinning"]["L"]["precentral"] == pytest.approx(0.5 * step)
        assert 0 < side["PrescribedThinning"]["R"]["superiorfrontal"] < 2
        assert side["AtrophySpec"]["regions"][0]["label"] == "precentral"
        assert side["SurfaceChecks"]["L"]["new_self_intersections"] == 0
        assert side["Sources"][0].endswith(naming.synth_path("01", None, 7, 2))
        for hemi in ("L", "R"):
            gii = nib.load(str(out / naming.atrophy_pial_path("01", None, hemi, step)))
            assert gii.darrays[0].data.shape[1] == 3 and gii.darrays[1].data.shape[1] == 3
    # the steps differ from the baseline (the surfaces changed) and from each other
    assert not np.array_equal(_image(out / naming.atrophy_image_path("01", None, 1)), base)
    for rel in (naming.atrophy_qc_path("01", None, ".json"), naming.atrophy_summary_path("01", None),
                naming.figure_path("01", None, "atrophyseries", "T1w"), naming.figure_path("01", None, "atrophyplot")):
        assert (out / rel).is_file(), rel


def test_qc_table(atrophy_run):
    out = atrophy_run["out"]
    path = out / naming.atrophy_qc_path("01", None)
    assert tuple(path.read_text().splitlines()[0].split("\t")) == ATROPHY_COLUMNS
    rows = read_atrophy_tsv(path)
    assert {r["step"] for r in rows} == {1, 2} and {r["hemi"] for r in rows} == {"L", "R"}
    pre = [r for r in rows if r["region"] == "precentral" and r["hemi"] == "L"]
    assert [r["in_spec"] for r in pre] == [True, True]
    assert [r["prescribed_mm"] for r in pre] == pytest.approx([0.5, 1.0])
    for r in pre:  # surface-measured thinning on the thinned surfaces (demo meshes: within 5 %)
        assert r["surface_mm"] == pytest.approx(r["prescribed_mm"], rel=0.05)
    other = [r for r in rows if r["region"] == "cuneus"]
    assert other and not any(r["in_spec"] for r in other)
    assert all(abs(r["surface_mm"]) < 0.05 for r in other)
    assert all(np.isfinite(r["image_mm"]) or r["image_coverage"] == 0 for r in rows)


def test_seed_std_map(atrophy_run):
    out = atrophy_run["out"]
    a = _image(out / naming.synth_path("01", None, 7, 2)).astype(np.float64)
    b = _image(out / naming.synth_path("01", None, 8, 2)).astype(np.float64)
    std = _image(out / naming.seedstd_path("01", None))
    np.testing.assert_allclose(std, np.abs(a - b) / np.sqrt(2), atol=1e-6)
    side = json.loads((out / naming.seedstd_path("01", None, ".json")).read_text())
    assert side["RandomSeeds"] == [7, 8] and side["SeedStdSummary"]["n_samples"] == 2
    assert side["SeedStdSummary"]["ribbon_voxels"] > 0


def test_outputs_indexed_by_pybids(atrophy_run):
    from bids import BIDSLayout

    layout = BIDSLayout(str(atrophy_run["out"]), validate=False, is_derivative=True)
    assert len(layout.get(subject="01", desc="atrophy02", suffix="T1w", extension=".nii.gz")) == 1
    assert len(layout.get(subject="01", desc="atrophy01", suffix="pial", hemi="L")) == 1
    assert len(layout.get(subject="01", desc="seedstd", suffix="T1w", extension=".nii.gz")) == 1


def test_resume_reuses_the_series(atrophy_run, tmp_path):
    """Same -w, new output folder: the series is not recomputed and its images are identical."""
    work = atrophy_run["work"]
    results = sorted(work.rglob("result_*atrophy_synthesis*.pklz"))
    assert len(results) == 1  # both steps in one batched node
    before = [p.stat().st_mtime_ns for p in results]
    out2 = tmp_path / "out2"
    code = _run(atrophy_run["bids"], out2, "--model", atrophy_run["model"], "-w", work, "--atrophy",
                atrophy_run["spec"], "--num-samples", 2, "--random-seed", 7, "--steps", 2, "--nprocs", 2,
                "--omp-nthreads", 1)
    assert code == ExitCode.OK
    assert [p.stat().st_mtime_ns for p in results] == before
    for step in (1, 2):
        rel = naming.atrophy_image_path("01", None, step)
        assert np.array_equal(_image(out2 / rel), _image(atrophy_run["out"] / rel))


def test_bad_specs_stop_before_any_work(demo_data, tiny_model, tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"steps": 2, "regions": [{"hemi": "L", "label": "precentrl", "thinning_mm": 1}]}))
    out = tmp_path / "out"
    assert _run(demo_data["bids"], out, "--model", tiny_model, "--atrophy", spec) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "precentrl" in err and "superiorfrontal" in err and "Traceback" not in err
    assert not list(out.glob("sub-*"))
    spec.write_text(json.dumps({"steps": 2, "regions": [{"hemi": "L", "label": "gone.label", "thinning_mm": 1}]}))
    assert _run(demo_data["bids"], out, "--model", tiny_model, "--atrophy", spec) == ExitCode.NO_INPUT
    assert "gone.label" in capsys.readouterr().err
    assert not list(out.glob("sub-*"))


def test_report_has_the_series_section(atrophy_run):
    html = (atrophy_run["out"] / naming.report_path("01", None)).read_text()
    assert "Atrophy series and seeds" in html and "atrophyseries" in html and "Seed variability" in html
    assert naming.atrophy_qc_path("01", None).split("/")[-1] in html
