"""The Methods paragraph says, when they were made, that an atrophy series was synthesised (steps, regions with
hemisphere and thinning, falloff, the baseline's seed) and that a seed standard-deviation map was computed over
N samples; read from the published sidecars (``interfaces.reports.series_of``)."""

from __future__ import annotations

import json

from cor2vox_bids.bids import naming
from cor2vox_bids.interfaces.reports import series_of
from cor2vox_bids.reports.participant import methods_html

RUN = {"model": {"name": "m", "sha256": "ab" * 32}, "seeds": [7, 8, 9], "steps": 5, "eta": 1.0}
SPEC = {"steps": 3, "falloff_mm": 5.0, "floor_mm": 0.5,
        "regions": [{"hemi": "L", "label": "precentral", "region": "precentral", "thinning_mm": 1.0},
                    {"hemi": "R", "label": "superiorfrontal", "region": "superiorfrontal", "thinning_fraction": 0.2}]}


def _write(path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def test_methods_describe_atrophy_series_and_seed_std(tmp_path):
    _write(tmp_path / naming.sidecar_of(naming.atrophy_image_path("01", None, 1)),
           {"RandomSeed": 7, "AtrophyStep": 1, "AtrophySpec": SPEC})
    _write(tmp_path / naming.seedstd_path("01", None, ".json"), {"SeedStdSummary": {"n_samples": 3}})
    series = series_of(tmp_path, "01", None, RUN)
    assert series == {"atrophy": SPEC, "atrophy_seed": 7, "seed_std_samples": 3}
    text = methods_html(RUN, {"cor2vox-bids": "0.1"}, {}, "freesurfer", series=series)
    assert "progressive atrophy series of 3 steps" in text
    assert "by 1 mm in the left precentral region" in text
    assert "by 20 % of the local thickness in the right superior frontal region" in text
    assert "over 5 mm outside each region" in text and "same random seed as the baseline image (seed 7)" in text
    assert "standard-deviation map across the 3 synthetic images" in text


def test_methods_without_series_say_nothing_of_them(tmp_path):
    series = series_of(tmp_path, "01", None, RUN)
    assert series == {}
    text = methods_html(RUN, {"cor2vox-bids": "0.1"}, {}, "freesurfer", series=series)
    assert "atrophy" not in text and "standard-deviation" not in text
