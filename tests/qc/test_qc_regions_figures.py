"""Region table, TSV + data dictionary, summary JSON (the report's figures: tests/reports)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from cor2vox_bids.qc.adapters import hemisphere_rows
from cor2vox_bids.qc.regions import (
    QC_COLUMNS,
    QC_TSV_DICTIONARY,
    read_qc_tsv,
    region_rows,
    summarize_rows,
    write_qc_tsv,
    write_summary_json,
)
from qc_phantoms import icosphere

NAMES = [b"unknown", b"bankssts", b"cuneus", b"corpuscallosum", b"fusiform", b"insula"]


@pytest.fixture(scope="module")
def hemi_data():
    """Icosphere split into latitude bands → labels; surface thickness 2.0 + 0.3·label; synthetic = +0.1 mm."""
    v, f = icosphere(3)  # 642 vertices
    band = np.digitize(v[:, 2], [-0.6, -0.2, 0.2, 0.6])  # 0..4
    labels = np.array([-1, 1, 2, 4, 5])[band]  # band 0 unlabelled; 'unknown'(0)/'corpuscallosum'(3) unused
    labels[:3] = 0  # three 'unknown' vertices
    surface = 2.0 + 0.3 * np.maximum(labels, 0)
    synthetic = surface + 0.1
    synthetic[labels == 5] = np.nan  # measurement failed in one whole region
    synthetic[np.flatnonzero(labels == 1)[:4]] = np.nan  # and at a few vertices elsewhere
    return v, f, labels, surface, synthetic


def test_region_rows_with_annotation(hemi_data):
    v, f, labels, surface, synthetic = hemi_data
    rows = region_rows("lh", surface, synthetic, None, labels, NAMES)
    assert [r["region"] for r in rows] == ["bankssts", "cuneus", "fusiform", "insula"]
    assert all(r["hemi"] == "L" for r in rows)
    assert [r["n_vertices"] for r in rows] == [int((labels == k).sum()) for k in (1, 2, 4, 5)]
    np.testing.assert_allclose([r["thickness_surface"] for r in rows], [2.3, 2.6, 3.2, 3.5], atol=1e-12)
    np.testing.assert_allclose([r["thickness_synthetic"] for r in rows][:3], [2.4, 2.7, 3.3], atol=1e-12)
    assert np.isnan(rows[3]["thickness_synthetic"]) and all(np.isnan(r["thickness_real"]) for r in rows)
    summary = summarize_rows(rows)
    assert summary["regions"] == "desikan-killiany"
    assert summary["n_regions_synthetic"] == 3
    assert summary["mean_abs_diff_mm_synthetic"] == pytest.approx(0.1, abs=1e-12)
    assert summary["pearson_r_synthetic"] == pytest.approx(1.0, abs=1e-12)  # exact offset → r = 1
    assert summary["pearson_r_real"] == "n/a" and summary["mean_abs_diff_mm_real"] == "n/a"


def test_region_summary_with_real_matches_numpy(hemi_data):
    v, f, labels, surface, synthetic = hemi_data
    real = surface * 0.9 + np.where(labels == 2, 0.5, 0.0)
    rows = region_rows("R", surface, synthetic, real, labels, NAMES)
    rows += region_rows("L", surface, synthetic, real, labels, NAMES)
    s = summarize_rows(rows)
    x = np.array([r["thickness_surface"] for r in rows])
    y = np.array([r["thickness_real"] for r in rows])
    assert s["n_regions_real"] == 8
    assert s["pearson_r_real"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert s["mean_abs_diff_mm_real"] == pytest.approx(np.mean(np.abs(x - y)), abs=1e-12)


def test_region_rows_without_annotation(hemi_data):
    v, f, labels, surface, synthetic = hemi_data
    rows = region_rows("lh", surface, synthetic) + region_rows("rh", surface, synthetic)
    assert [(r["hemi"], r["region"], r["n_vertices"]) for r in rows] == [
        ("L", "whole_hemisphere", 642), ("R", "whole_hemisphere", 642)]
    assert rows[0]["thickness_surface"] == pytest.approx(surface.mean(), abs=1e-12)
    assert rows[0]["thickness_synthetic"] == pytest.approx(np.nanmean(synthetic), abs=1e-12)
    s = summarize_rows(rows)
    assert s["regions"] == "unavailable (no annotation)"
    assert np.isnan(s["pearson_r_synthetic"])
    # paired: the image mean is compared with the surface mean over the same (measured) vertices → exactly +0.1
    measured = np.isfinite(synthetic)
    assert rows[0]["thickness_surface_synthetic"] == pytest.approx(surface[measured].mean(), abs=1e-12)
    assert rows[0]["coverage_synthetic"] == pytest.approx(measured.mean(), abs=1e-12)
    assert s["mean_abs_diff_mm_synthetic"] == pytest.approx(0.1, abs=1e-12)


def test_adapter_reads_hemisphere_objects(hemi_data):
    v, f, labels, surface, synthetic = hemi_data
    surf = SimpleNamespace(vertices=v, faces=f, path=None)
    hemi = SimpleNamespace(hemi="lh", white=surf, pial=surf, labels=labels, names=NAMES, thickness=surface)
    expected = region_rows("lh", surface, synthetic, None, labels, NAMES)
    np.testing.assert_equal(hemisphere_rows(hemi, synthetic), expected)  # NaN-aware comparison


def test_tsv_dictionary_and_summary_json(hemi_data, tmp_path):
    v, f, labels, surface, synthetic = hemi_data
    rows = region_rows("lh", surface, synthetic, None, labels, NAMES)
    tsv = write_qc_tsv(rows, tmp_path / "sub-01_desc-qc_thickness.tsv")
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == list(QC_COLUMNS)
    assert len(lines) == 1 + len(rows)
    assert lines[1].split("\t")[-1] == "n/a"  # no real T1w
    sidecar = json.loads(tsv.with_suffix(".json").read_text())
    assert set(sidecar) == set(QC_COLUMNS) == set(QC_TSV_DICTIONARY)
    assert all({"LongName", "Description"} <= set(entry) for entry in sidecar.values())
    assert all(sidecar[c]["Units"] == "mm" for c in QC_COLUMNS if c.startswith("thickness"))
    back = read_qc_tsv(tsv)
    assert [r["region"] for r in back] == [r["region"] for r in rows]
    np.testing.assert_allclose([r["thickness_surface"] for r in back], [r["thickness_surface"] for r in rows],
                               atol=5e-5)  # 4 decimals written
    summary = summarize_rows(rows)
    out = json.loads(write_summary_json({**summary, "psnr_brain": np.inf, "x": np.float32(0.5)},
                                        tmp_path / "s.json").read_text())
    assert out["psnr_brain"] is None and out["x"] == 0.5 and out["pearson_r_real"] == "n/a"
