"""Report figure functions: contours in world mm, slice placement, the flicker SVG, views, axis ranges, measures."""

from __future__ import annotations

import numpy as np
import pytest

from cor2vox_bids.reports import figures as F
from cor2vox_bids.reports.measures import describe, flag, format_value
from report_fixtures import AFFINE, hemispheres, volumes


def test_plane_cut_of_a_sphere_is_its_circle():
    h = hemispheres()[0].pial  # radius 15 around (-17, 0, 0)
    seg = F.plane_segments_mm(h.vertices, h.faces, 2, 6.0)  # z = 6 mm
    assert len(seg) > 20
    r = np.linalg.norm(seg.reshape(-1, 2) - [-17.0, 0.0], axis=1)
    assert np.allclose(r, np.sqrt(15**2 - 6**2), atol=0.6)  # chords of a subdivided icosphere


def test_sagittal_slices_avoid_the_midline_and_split_between_hemispheres():
    pos = F.sagittal_positions(-70.0, 80.0, 8.0, 6)
    assert (pos < 8.0).sum() == 3 and (pos > 8.0).sum() == 3
    assert np.min(np.abs(pos - 8.0)) >= 5.9
    assert F.hemisphere_midline(np.array([[-40.0, 0, 0], [-2.0, 0, 0]]), np.array([[4.0, 0, 0], [50.0, 0, 0]])) == 1.0


def test_slice_positions_are_symmetric_and_skip_the_centre():
    pos = F.slice_positions(-60.0, 60.0, 6)
    assert np.allclose(pos, -pos[::-1]) and np.min(np.abs(pos)) > 5


def test_reorient_to_ras_moves_a_flipped_axis_back():
    data = np.arange(24, dtype=float).reshape(2, 3, 4)
    las = np.diag([-2.0, 2.0, 2.0, 1.0])
    out, aff = F.reorient_ras(data, las)
    assert aff[0, 0] > 0 and np.array_equal(out[:, :, :], data[::-1])
    # the same world point keeps its value
    assert np.allclose(las @ [0, 1, 2, 1], aff @ [1, 1, 2, 1])


def test_lateral_and_medial_views_face_the_right_way():
    v = np.array([[-60.0, 0, 0], [-5.0, 0, 0], [-30.0, 50, 0]])
    _, depth = F.view_projection(v, "L", "lateral")
    assert np.argmax(depth) == 0  # the most lateral point is nearest in the lateral view of the left hemisphere
    _, depth = F.view_projection(v, "L", "medial")
    assert np.argmax(depth) == 1
    xy, _ = F.view_projection(v, "L", "lateral")
    assert xy[2, 0] < xy[0, 0]  # anterior points left when looking at the left hemisphere from the left


def test_anatomy_mosaic_and_flicker_share_one_size(tmp_path):
    syn, real = volumes()
    hemis = hemispheres()
    surfaces = {"pial": (np.concatenate([h.pial.vertices for h in hemis]),
                         np.concatenate([hemis[0].pial.faces, hemis[1].pial.faces + len(hemis[0].pial.vertices)]))}
    mosaic, flicker = F.plot_anatomy(syn, AFFINE, tmp_path / "m.png", surfaces=surfaces, flicker={"real T1w": real},
                                     flicker_path=tmp_path / "f.svg", midline=0.0)
    from PIL import Image

    w, h = Image.open(mosaic).size
    assert w == 1080 and 300 < h < 1000
    svg = flicker.read_text()
    assert f'width="{w}"' in svg and f'height="{h + 30}"' in svg
    assert "real T1w (2/2)" in svg and "synthetic T1w (1/2)" in svg


def test_flicker_needs_two_frames(tmp_path):
    with pytest.raises(ValueError):
        F.flicker_svg([("a", b"")], (10, 10), tmp_path / "x.svg")


@pytest.mark.parametrize("values,natural,span,expect", [
    ([0.9640, 0.9655], (0.0, 1.0), 0.1, (0.90, 1.0)),  # close values: at least 0.1 wide, not past 1
    ([1.0, 3.0], (0.0, None), 0.5, (0.9, 3.1)),  # 5 % padding each side
])
def test_group_axis_limits_keep_a_meaningful_span(values, natural, span, expect):
    lo, hi = F.group_axis_limits(np.array(values), natural, span)
    assert hi - lo >= span - 1e-9
    margin = 0.035 * (hi - lo)  # the frame's 3 % edge beyond a natural bound
    assert lo >= (natural[0] if natural[0] is not None else -np.inf) - margin
    assert hi <= (natural[1] if natural[1] is not None else np.inf) + margin
    assert lo == pytest.approx(expect[0], abs=0.02 + margin) and hi == pytest.approx(expect[1], abs=0.02 + margin)


def test_measures_have_human_names_units_and_flags():
    m = describe("pearson_r_synthetic")
    assert "_" not in m.name and "synthetic T1w" in m.name and m.units
    assert flag(0.5, m) and flag(0.95, m) is None and flag(float("nan"), m) is None
    d = describe("median_abs_diff_mm_vertex_real")
    assert d.units == "mm" and flag(0.4, d) and not flag(0.2, d)
    unknown = describe("some_new_key_mm", {"some_new_key_mm": {"LongName": "A new measure", "Units": "mm"}})
    assert unknown.name == "A new measure" and unknown.units == "mm"
    assert format_value(0.8123, describe("coverage_real")) == "81.2 %"
    assert format_value(0.123456) == "0.123"


def test_group_axis_never_hides_a_value_outside_the_usual_range():
    lo, hi = F.group_axis_limits(np.array([-0.224, -0.22]), (0.0, 1.0), 0.1, (0.9, None))
    assert lo < -0.224 and hi > 0.9
