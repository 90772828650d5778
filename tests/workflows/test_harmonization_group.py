"""Group level with ``--reference-dataset``: the harmonization table, its data dictionary, the report section, and
a bad reference dataset stopping the run with a clear message."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cor2vox_bids.bids import naming
from cor2vox_bids.cli.run import main
from cor2vox_bids.errors import ExitCode

COLUMNS = ["participant_id", "tissue", "distance_before", "distance_after", "distance_change", "closer_to_reference",
           "reference_spread", "n_reference", "thickness_r_real", "thickness_r_synthetic", "thickness_r_ratio",
           "thickness_r_real_vs_synthetic", "n_regions_real_vs_synthetic"]


def _main(capfd, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def _read(tsv: Path) -> list[dict]:
    with open(tsv, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def site2_run(demo_data, tiny_model, tmp_path_factory) -> dict:
    """Site 2's sub-01 run through the participant level with the (tiny) model, conditioning maps kept."""
    root = tmp_path_factory.mktemp("harmonization")
    out = root / "out"
    code = main([str(demo_data["bids_site2"]), str(out), "participant", "--skip-bids-validation", "--model",
                 str(tiny_model), "--participant-label", "01", "--save-conditioning", "--nprocs", "1", "-w",
                 str(root / "work")])
    assert code == ExitCode.OK
    return {"out": out, "bids": demo_data["bids_site2"], "reference": demo_data["bids"], "root": root}


@pytest.fixture(scope="module")
def group_run(site2_run) -> dict:
    code = main([str(site2_run["bids"]), str(site2_run["out"]), "group", "--skip-bids-validation",
                 "--reference-dataset", str(site2_run["reference"])])
    assert code == ExitCode.OK
    return site2_run


def test_harmonization_table_columns_values_and_dictionary(group_run):
    out = group_run["out"]
    tsv = out / naming.harmonization_table_path()
    rows = _read(tsv)
    assert list(rows[0]) == COLUMNS
    assert [(r["participant_id"], r["tissue"]) for r in rows] == [("sub-01", t) for t in ("WM", "GM", "CSF")]
    for r in rows:
        before, after = float(r["distance_before"]), float(r["distance_after"])
        assert 0 < before < 1 and 0 < after < 2  # W1 in units of the normalised range
        assert float(r["distance_change"]) == pytest.approx(after - before, abs=2e-4)  # 4 decimals in the TSV
        assert r["closer_to_reference"] == ("yes" if after < before else "no")
        assert r["n_reference"] == "2" and float(r["reference_spread"]) > 0  # demo site 1: two participants
    dictionary = json.loads(tsv.with_suffix(".json").read_text())
    assert list(dictionary) == COLUMNS
    for key in ("distance_before", "distance_after", "distance_change", "reference_spread"):
        assert "normalised intensity" in dictionary[key]["Units"] and "Wasserstein" in json.dumps(dictionary)
    assert all(dictionary[k]["Description"] for k in COLUMNS)
    assert set(dictionary["tissue"]["Levels"]) == {"WM", "GM", "CSF"}


def test_harmonization_report_section(group_run):
    out = group_run["out"]
    html = (out / naming.group_report_path()).read_text()
    assert "id='harmonization'" in html and "href='#harmonization'" in html
    assert naming.harmonization_table_path() in html
    figure = out / naming.group_figure_path("harmonization")
    assert figure.is_file() and Path(figure.name).as_posix() in html


def test_masks_recomputed_from_surfaces_without_saved_maps(group_run, tmp_path):
    """Without the saved conditioning maps the masks come from the surfaces on the synthetic image's grid: the
    same distances."""
    out = tmp_path / "out"
    shutil.copytree(group_run["out"], out, symlinks=True, ignore=shutil.ignore_patterns("work"))
    for name in naming.MAP_ENTITIES:
        (out / naming.conditioning_path("01", None, name)).unlink()
    assert main([str(group_run["bids"]), str(out), "group", "--skip-bids-validation", "--reference-dataset",
                 str(group_run["reference"])]) == ExitCode.OK
    saved = _read(group_run["out"] / naming.harmonization_table_path())
    again = _read(out / naming.harmonization_table_path())
    for a, b in zip(saved, again):
        for key in ("distance_before", "distance_after"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4)


def test_reference_with_one_participant_gives_its_own_distances(group_run, tmp_path):
    """A reference of one participant: the barycentre is that participant, its spread is undefined (n/a)."""
    ref = tmp_path / "ref"
    shutil.copytree(group_run["reference"], ref, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n == "sub-02"])
    out = tmp_path / "out"
    shutil.copytree(group_run["out"], out, symlinks=True, ignore=shutil.ignore_patterns("work"))
    assert main([str(group_run["bids"]), str(out), "group", "--skip-bids-validation", "--reference-dataset",
                 str(ref)]) == ExitCode.OK
    rows = _read(out / naming.harmonization_table_path())
    assert all(r["n_reference"] == "1" and r["reference_spread"] == "n/a" for r in rows)
    two = _read(group_run["out"] / naming.harmonization_table_path())
    assert any(abs(float(a["distance_before"]) - float(b["distance_before"])) > 1e-3 for a, b in zip(rows, two))


def _no_group_outputs(out: Path) -> None:
    assert not (out / naming.group_path("summary", ".tsv")).exists()
    assert not (out / naming.harmonization_table_path()).exists()


@pytest.mark.parametrize("case", ["missing", "not_bids", "no_surfaces", "no_t1w"])
def test_bad_reference_dataset_stops_with_a_clear_message(demo_data, tmp_path, capfd, case):
    ref = tmp_path / "ref"
    phrase = {"missing": "does not exist", "not_bids": "not a BIDS dataset", "no_surfaces": "has no surfaces",
              "no_t1w": "has both a T1w image and surfaces"}[case]
    if case != "missing":
        ref.mkdir()
        if case != "not_bids":
            shutil.copy(demo_data["bids"] / "dataset_description.json", ref)
            if case == "no_t1w":  # surfaces and a T1w sidecar, but no image
                (ref / "derivatives").mkdir()
                (ref / "derivatives" / "freesurfer").symlink_to(demo_data["freesurfer"])
                (ref / "sub-01" / "anat").mkdir(parents=True)
                shutil.copy(demo_data["bids"] / "sub-01" / "anat" / "sub-01_T1w.json", ref / "sub-01" / "anat")
    out = tmp_path / "out"
    code, console = _main(capfd, demo_data["bids_site2"], out, "group", "--skip-bids-validation",
                          "--reference-dataset", ref)
    assert code == ExitCode.NO_INPUT, console
    assert "Traceback" not in console
    lines = [ln for ln in console.splitlines() if "reference" in ln and phrase in ln]
    assert lines, console
    assert any(str(ref) in ln for ln in lines), console
    _no_group_outputs(out)


def test_reference_dataset_at_participant_level_is_a_usage_error(demo_data, tmp_path, capfd):
    code, console = _main(capfd, demo_data["bids_site2"], tmp_path / "out", "participant", "--reference-dataset",
                          demo_data["bids"])
    assert code == ExitCode.USAGE and "--reference-dataset applies to the group level" in console
    assert "Traceback" not in console


def test_reference_quantiles_match_the_participant_level_maps(group_run):
    """The reference is summarised on a grid of the harmonized images' shape and spacing, placed around its own
    surfaces by the model's rule: the grid of site 1's sub-01 equals the one its own participant-level run would use
    (same surfaces as site 2's sub-01 in the demo), so its masks are the saved maps' masks."""
    import nibabel as nib

    from cor2vox_bids.bids.inputs import collect_inputs
    from cor2vox_bids.execution.harmonization import _hemispheres
    from cor2vox_bids.interfaces.synthesis import participant_grid
    from cor2vox_bids.settings import Settings

    saved = nib.load(str(group_run["out"] / naming.conditioning_path("01", None, "ribbon")))
    ready, _, _ = collect_inputs(Settings(bids_dir=group_run["reference"], output_dir=group_run["root"] / "x",
                                          analysis_level="group", participant_label=["01"],
                                          skip_bids_validation=True))
    grid = participant_grid(_hemispheres(ready[0]), saved.shape, float(np.linalg.norm(saved.affine[:3, 0])))
    assert grid.shape == saved.shape and np.allclose(grid.affine, saved.affine, atol=1e-5)
