"""End to end: participant and group level on the demo data with a tiny model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cor2vox_bids.cli.run import main
from cor2vox_bids.errors import ExitCode


def _run(bids, out, level, *extra):
    return main([str(bids), str(out), level, "--skip-bids-validation", *map(str, extra)])


@pytest.fixture(scope="module")
def finished_run(demo_data, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    out, work = root / "out", root / "work"
    code = _run(demo_data["bids"], out, "participant", "--model", tiny_model, "-w", work, "--nprocs", "2",
                "--save-conditioning", "--random-seed", "3")
    assert code == ExitCode.OK
    assert _run(demo_data["bids"], out, "group") == ExitCode.OK
    return {"out": out, "work": work, "bids": demo_data["bids"], "model": tiny_model}


def test_derivatives_indexed_by_pybids(finished_run):
    from bids import BIDSLayout

    layout = BIDSLayout(str(finished_run["out"]), validate=False, is_derivative=True)
    assert layout.get_subjects() == ["01", "02"]
    synth = layout.get(desc="synth", suffix="T1w", extension=".nii.gz")
    assert len(synth) == 2
    for sub in ("01", "02"):
        for desc, suffix in [("pial", "sdf"), ("white", "sdf"), ("cortex", "sdf"), ("ribbon", "mask"),
                             ("meshedges", "edges"), ("thickness", "qc")]:
            assert layout.get(subject=sub, desc=desc, suffix=suffix), (sub, desc, suffix)
    desc = json.loads((finished_run["out"] / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "cor2vox-bids"
    # every file under sub-*/anat is known to pybids
    files = {Path(f.path) for f in layout.get(subject=["01", "02"])}
    on_disk = {p for p in finished_run["out"].glob("sub-*/anat/*") if p.is_file()}
    assert on_disk <= files


def test_sidecar_sources_and_model_hash(finished_run):
    out = finished_run["out"]
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-synth_T1w.json").read_text())
    weights = finished_run["model"] / "model.safetensors"
    assert sidecar["ModelSHA256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sidecar["RandomSeed"] == 3 and sidecar["NumInferenceSteps"] == 10 and sidecar["SkullStripped"] is False
    roots = {"freesurfer": finished_run["bids"] / "derivatives" / "freesurfer", "raw": finished_run["bids"]}
    assert len(sidecar["Sources"]) >= 5
    for uri in sidecar["Sources"]:
        if uri.startswith("bids:"):
            _, name, rel = uri.split(":", 2)
            assert (roots[name] / rel).is_file(), uri
        else:
            assert Path(uri.removeprefix("file://")).exists(), uri


def test_synthetic_image_on_model_grid_in_scanner_space(finished_run):
    img = nib.load(str(finished_run["out"] / "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"))
    assert img.shape == (32, 40, 32)
    assert np.allclose(np.linalg.norm(img.affine[:3, :3], axis=0), 5.0)
    data = np.asarray(img.dataobj)
    assert np.isfinite(data).all() and 0.0 <= data.min() and data.max() <= 1.0
    # the pial surfaces' bounding-box centre is the grid centre (placement rule), in scanner RAS
    cond = nib.load(str(finished_run["out"] / "sub-01/anat/sub-01_desc-ribbon_mask.nii.gz"))
    assert np.allclose(cond.affine, img.affine)


def test_white_contour_lies_on_synthetic_grid(finished_run):
    """The contour drawn in the report's mosaic (world mm), mapped to the synthetic image's voxels, sits where the
    white SDF is 0."""
    from scipy import ndimage

    from cor2vox_bids.geometry.surfaces import Hemisphere
    from cor2vox_bids.reports.figures import plane_segments_mm

    out = finished_run["out"]
    synth = nib.load(str(out / "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"))
    sdf_white = np.asarray(nib.load(str(out / "sub-01/anat/sub-01_desc-white_sdf.nii.gz")).dataobj)
    hemis_npz = next(finished_run["work"].rglob("sub_01_wf/ingest/hemispheres.npz"))
    left = Hemisphere.load(hemis_npz, "L")
    v, f = left.white.vertices, left.white.faces
    a = synth.affine
    assert np.allclose(a[:3, :3], np.diag(np.diag(a[:3, :3])))  # the model grid has RAS axes
    k = 16
    seg = plane_segments_mm(v, f, axis=2, position=a[2, 3] + a[2, 2] * k)
    assert len(seg) > 50
    pts = seg.reshape(-1, 2)
    i, j = (pts[:, 0] - a[0, 3]) / a[0, 0], (pts[:, 1] - a[1, 3]) / a[1, 1]
    vals = ndimage.map_coordinates(sdf_white, [i, j, np.full(len(pts), k)], order=1)
    # trilinear interpolation of an SDF sampled at 5 mm: |value| at the true surface stays under half a voxel
    assert np.median(np.abs(vals)) < 1.0 and np.percentile(np.abs(vals), 95) < 2.5
    assert (out / "sub-01/figures/sub-01_desc-mosaic_T1w.png").is_file()


def test_every_published_figure_is_in_the_report(finished_run):
    """The figures folder holds exactly what the participant report shows (no figure that no report uses)."""
    import re

    out = finished_run["out"]
    for sub in ("01", "02"):
        html = (out / f"sub-{sub}.html").read_text()
        linked = {Path(m).name for m in re.findall(r"(?:src|href|data)='([^']+)'", html) if "/figures/" in m}
        published = {p.name for p in (out / f"sub-{sub}" / "figures").iterdir()}
        assert published and published == linked, (sub, published ^ linked)


def test_qc_outputs_and_report(finished_run):
    out = finished_run["out"]
    header = (out / "sub-01/anat/sub-01_desc-thickness_qc.tsv").read_text().splitlines()[0].split("\t")
    assert header[:6] == ["hemi", "region", "n_vertices", "thickness_surface", "thickness_synthetic", "thickness_real"]
    rows = (out / "sub-01/anat/sub-01_desc-thickness_qc.tsv").read_text().splitlines()[1:]
    assert len(rows) == 68
    # the TSV's data dictionary sidecar describes every column
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-thickness_qc.json").read_text())
    assert set(header) <= set(sidecar)
    summary = json.loads((out / "sub-01/anat/sub-01_desc-summary_qc.json").read_text())
    for key in ("ssim_brain", "psnr_brain", "ribbon_dice_synthetic", "pearson_r_real"):
        assert key in summary
    html = (out / "sub-01.html").read_text()
    assert "DEMO model" in html and "<script" not in html
    for src in __import__("re").findall(r"src='([^']+)'", html):
        assert (out / src).is_file(), src
    assert (out / "group_desc-qc_summary.tsv").read_text().count("sub-0") == 2
    assert (out / "group_desc-qc_thickness.tsv").is_file() and (out / "group_desc-qc_report.html").is_file()


def test_rerun_reuses_work_dir_and_gives_same_bytes(finished_run, demo_data, tmp_path):
    out2 = tmp_path / "out"
    code = _run(demo_data["bids"], out2, "participant", "--model", finished_run["model"], "-w",
                finished_run["work"], "--save-conditioning", "--random-seed", "3", "--participant-label", "01")
    assert code == ExitCode.OK
    rel = "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"
    assert np.array_equal(np.asarray(nib.load(str(finished_run["out"] / rel)).dataobj),
                          np.asarray(nib.load(str(out2 / rel)).dataobj))


def test_nprocs_1_equals_2(finished_run, demo_data, tmp_path):
    out = tmp_path / "out"
    assert _run(demo_data["bids"], out, "participant", "--model", finished_run["model"], "-w", tmp_path / "w",
                "--nprocs", "1", "--random-seed", "3") == ExitCode.OK
    for sub in ("01", "02"):
        rel = f"sub-{sub}/anat/sub-{sub}_desc-synth_T1w.nii.gz"
        assert np.array_equal(np.asarray(nib.load(str(out / rel)).dataobj),
                              np.asarray(nib.load(str(finished_run["out"] / rel)).dataobj))


def test_broken_surface_fails_alone(demo_copy, tiny_model, tmp_path):
    broken = demo_copy["freesurfer"] / "sub-02" / "surf" / "rh.pial"
    broken.write_bytes(broken.read_bytes()[:5000])  # truncated
    out = tmp_path / "out"
    code = _run(demo_copy["bids"], out, "participant", "--model", tiny_model, "-w", tmp_path / "w")
    assert code == ExitCode.SOME_PARTICIPANTS_FAILED
    assert (out / "sub-01/anat/sub-01_desc-synth_T1w.nii.gz").is_file()
    assert not (out / "sub-02/anat").exists()
    crash = list((out / "sub-02" / "log").rglob("crash-*.txt"))
    assert crash and str(broken) in crash[0].read_text()


def test_multiple_samples_named_by_seed(demo_data, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert _run(demo_data["bids"], out, "participant", "--model", tiny_model, "-w", tmp_path / "w",
                "--participant-label", "02", "--num-samples", "2", "--random-seed", "5", "--steps", "3") == ExitCode.OK
    a = np.asarray(nib.load(str(out / "sub-02/anat/sub-02_desc-synthseed5_T1w.nii.gz")).dataobj)
    b = np.asarray(nib.load(str(out / "sub-02/anat/sub-02_desc-synthseed6_T1w.nii.gz")).dataobj)
    assert not np.array_equal(a, b)


def test_dry_run_prints_plan_and_writes_nothing(demo_data, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(demo_data["bids"], out, "participant", "--model", tiny_model, "--dry-run") == ExitCode.OK
    text = capsys.readouterr().out
    assert "sub-01/anat/sub-01_desc-synth_T1w.nii.gz" in text and "sub-02" in text
    assert not out.exists()  # not even a log folder: the output folder it would have created is not left behind


def test_tampered_model_exit_65(demo_data, tiny_model, tmp_path, capsys):
    bad = tmp_path / "model"
    shutil.copytree(tiny_model, bad)
    blob = bytearray((bad / "model.safetensors").read_bytes())
    blob[-10] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(blob))
    assert _run(demo_data["bids"], tmp_path / "out", "participant", "--model", bad) == ExitCode.DATA
    assert "checksum does not match" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("sub-*"))


def test_cuda_without_gpu_exit_75(demo_data, tiny_model, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert _run(demo_data["bids"], tmp_path / "out", "participant", "--model", tiny_model,
                "--device", "cuda") == ExitCode.TEMPFAIL


def test_interrupted_run_resumes_to_same_bytes(demo_data, tiny_model, tmp_path):
    """Kill the process mid-synthesis, rerun with the same -w: same image bytes as an uninterrupted run."""
    args = [sys.executable, "-m", "cor2vox_bids.cli.run", str(demo_data["bids"]), None, "participant",
            "--skip-bids-validation", "--model", str(tiny_model), "--participant-label", "01", "--steps", "400",
            "--random-seed", "11", "-w", None, "--nprocs", "1"]

    def cmd(out, work):
        a = list(args)
        a[4], a[a.index("-w") + 1] = str(out), str(work)
        return a

    ref_out, out, work = tmp_path / "ref", tmp_path / "out", tmp_path / "w"
    assert subprocess.run(cmd(ref_out, tmp_path / "wref"), capture_output=True).returncode == 0
    proc = subprocess.Popen(cmd(out, work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    seen = False
    while time.time() < deadline and proc.poll() is None:
        if list(work.rglob("synthesis/mapflow/_synthesis0/_report")) or list(work.rglob("_synthesis0")):
            seen = True
            time.sleep(1.0)
            break
        time.sleep(0.2)
    assert seen, "synthesis never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "sub-01/anat/sub-01_desc-synth_T1w.nii.gz").exists()
    assert subprocess.run(cmd(out, work), capture_output=True).returncode == 0
    rel = "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"
    assert np.array_equal(np.asarray(nib.load(str(out / rel)).dataobj),
                          np.asarray(nib.load(str(ref_out / rel)).dataobj))


def test_group_report_shows_demo_notice_only_for_demo_images(finished_run, tmp_path):
    """The group report's DEMO notice follows the images' sidecars (``ModelIsDemo``)."""
    html = (finished_run["out"] / "group_desc-qc_report.html").read_text()
    assert "DEMO model" in html  # the tiny test model is marked demo
    out = tmp_path / "out"
    shutil.copytree(finished_run["out"], out)
    for sidecar in out.glob("sub-*/anat/*_T1w.json"):
        meta = json.loads(sidecar.read_text())
        meta["ModelIsDemo"] = False
        sidecar.write_text(json.dumps(meta))
    assert _run(finished_run["bids"], out, "group") == ExitCode.OK
    assert "DEMO model" not in (out / "group_desc-qc_report.html").read_text()


def test_figures_carry_the_hemi_entity(finished_run):
    """Figure names parse as BIDS entities; a hemisphere is never folded into ``desc`` (``...syntheticL``)."""
    import re

    figures = sorted(p.name for p in (finished_run["out"] / "sub-01" / "figures").glob("*.png"))
    assert figures
    pattern = re.compile(r"^sub-01(_hemi-[LR])?_desc-([a-zA-Z0-9]+)_(qc|T1w)\.png$")
    for name in figures:
        match = pattern.match(name)
        assert match, name
        assert not re.search(r"[a-z](L|R)$", match.group(2)), name


def test_reports_and_data_dictionaries_from_a_run(finished_run):
    """The participant report (navbar, anatomy mosaic, flicker, QC) and the group report with its links; every
    TSV/JSON has a data dictionary describing each column/key; group TSV floats are rounded."""
    import re

    out = finished_run["out"]
    html = (out / "sub-01.html").read_text()
    assert "<nav" in html and "href='#qc'" in html and "id='methods'" in html
    for desc in ("mosaic_T1w.png", "flicker_T1w.svg", "regions_qc.png", "thicknesserror_qc.png"):
        assert (out / "sub-01" / "figures" / f"sub-01_desc-{desc}").is_file(), desc
    summary = json.loads((out / "sub-01/anat/sub-01_desc-summary_qc.json").read_text())
    dictionary = json.loads((out / "qc_summary_dictionary.json").read_text())
    assert set(summary) <= set(dictionary)
    assert all(entry.get("LongName") and entry.get("Description") for entry in dictionary.values())
    group = (out / "group_desc-qc_report.html").read_text()
    assert "href='sub-01.html'" in group and "href='sub-02.html'" in group
    for name in ("summary", "thickness"):
        tsv = (out / f"group_desc-qc_{name}.tsv").read_text().splitlines()
        described = json.loads((out / f"group_desc-qc_{name}.json").read_text())
        assert set(tsv[0].split("\t")) <= set(described), name
        floats = [c for line in tsv[1:] for c in line.split("\t") if re.fullmatch(r"-?\d+\.\d+", c)]
        assert floats and all(len(c.split(".")[1]) <= 4 for c in floats), name
    assert "work/" in (out / ".bidsignore").read_text()


def test_report_lists_the_conditioning_maps(finished_run):
    """--save-conditioning: the report's Outputs table links each conditioning map; one sample: no seed suffix."""
    html = (finished_run["out"] / "sub-01.html").read_text()
    for what, name in (("pial signed distance", "sub-01_desc-pial_sdf.nii.gz"),
                       ("cortical ribbon", "sub-01_desc-ribbon_mask.nii.gz"),
                       ("tissue-boundary (edge) map", "sub-01_desc-meshedges_edges.nii.gz")):
        assert f"<td>Conditioning map: {what}</td>" in html and name in html
    assert "<td>Synthetic T1w</td>" in html
