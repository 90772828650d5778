"""The expected range and the flag of a measure are written in the units its value is shown in: a coverage
shown as "87.3 %" is expected "≥ 90 %" (not "≥ 0.9"); a thickness difference in mm says mm."""

from __future__ import annotations

from cor2vox_bids.reports.measures import describe, expected_text, flag, format_value


def test_fraction_ranges_are_percentages_like_their_values():
    m = describe("coverage_synthetic")
    assert format_value(0.873, m) == "87.3 %"
    assert expected_text(m) == "≥ 90 %"
    assert flag(0.873, m) == "below the expected ≥ 90 %"
    assert flag(0.95, m) is None


def test_mm_and_unitless_ranges():
    mm = describe("median_abs_diff_mm_vertex_synthetic")
    assert expected_text(mm) == "≤ 0.3 mm" and flag(0.5, mm) == "above the expected ≤ 0.3 mm"
    r = describe("pearson_r_synthetic")
    assert expected_text(r) == "≥ 0.9" and flag(0.5, r) == "below the expected ≥ 0.9"
