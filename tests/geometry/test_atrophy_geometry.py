"""Atrophy on surfaces: spec validation, exact thinning on a sphere shell, falloff shape, floor, intersections."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cor2vox_bids.errors import ExitCode, MissingInputError, ParticipantError, UsageError
from cor2vox_bids.geometry import Hemisphere, Surface, cortical_thickness
from cor2vox_bids.geometry.atrophy import (
    falloff_weights,
    load_atrophy_spec,
    mesh_edge_distance,
    prescribe,
    region_mask,
    solve_displacement,
    thin_pial,
    thinned_series,
)
from cor2vox_bids.geometry.intersections import (
    flipped_faces,
    mesh_crossings,
    self_intersections,
    triangles_intersect,
)
from meshes import icosphere

R_WHITE, R_PIAL = 20.0, 24.0


def _shell(subdivisions: int = 3, cap_z: float = 0.0, hemi: str = "L") -> Hemisphere:
    """Concentric spheres (white 20 mm, pial 24 mm); 'precentral' = vertices with z/r > cap_z."""
    v, f = icosphere(subdivisions)
    labels = (v[:, 2] > cap_z).astype(np.int64)
    return Hemisphere(hemi, Surface(v * R_WHITE, f), Surface(v * R_PIAL, f), labels, ["unknown", "precentral"])


def _spec(tmp_path, regions, steps=2, falloff_mm=0.0, name="spec.json", **extra):
    path = tmp_path / name
    path.write_text(json.dumps({"steps": steps, "falloff_mm": falloff_mm, "regions": regions, **extra}))
    return path


# ---------------------------------------------------------------------------------------------- spec validation


def test_spec_defaults_and_round_trip(tmp_path):
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "lh", "label": "precentral", "thinning_mm": 1}], steps=3))
    assert spec.steps == 3 and spec.floor_mm == 0.5 and spec.falloff_mm == 0.0
    assert spec.regions[0].hemi == "L" and spec.regions[0].thinning_mm == 1.0
    assert [spec.fraction(k) for k in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1])
    assert spec.to_dict()["regions"] == [{"hemi": "L", "label": "precentral", "region": "precentral",
                                          "thinning_mm": 1.0}]


def test_unknown_region_is_a_usage_error_listing_names(tmp_path):
    path = _spec(tmp_path, [{"hemi": "L", "label": "precentrl", "thinning_mm": 1.0}])
    with pytest.raises(UsageError) as info:
        load_atrophy_spec(path)
    assert info.value.exit_code == ExitCode.USAGE == 64
    assert "precentrl" in str(info.value) and "precentral" in str(info.value) and "superiorfrontal" in str(info.value)
    assert "(did you mean 'precentral'?)" in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize("regions, extra, match", [
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1, "thinning_fraction": 0.1}], {}, "exactly one"),
    ([{"hemi": "L", "label": "precentral"}], {}, "exactly one"),
    ([{"hemi": "X", "label": "precentral", "thinning_mm": 1}], {}, "hemi"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": -1}], {}, "thinning_mm"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 9}], {}, "thinning_mm"),
    ([{"hemi": "L", "label": "precentral", "thinning_fraction": 1.0}], {}, "below 1"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1, "colour": 3}], {}, "unknown keys"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1}] * 2, {}, "twice"),
    ([], {}, "non-empty"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1}], {"steps": 0}, "steps"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1}], {"steps": 2.5}, "steps"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1}], {"falloff_mm": "5"}, "falloff_mm"),
    ([{"hemi": "L", "label": "precentral", "thinning_mm": 1}], {"seed": 3}, "unknown keys"),
])
def test_bad_spec_content_is_a_usage_error(tmp_path, regions, extra, match):
    data = {"steps": 2, "regions": regions, **extra}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=match):
        load_atrophy_spec(path)


def test_bad_json_and_missing_spec(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{"steps": 2,')
    with pytest.raises(UsageError, match="not valid JSON"):
        load_atrophy_spec(path)
    with pytest.raises(MissingInputError) as info:
        load_atrophy_spec(tmp_path / "nope.json")
    assert info.value.exit_code == 66


def test_yaml_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("steps: 2\nfalloff_mm: 4\nregions:\n  - {hemi: R, label: insula, thinning_fraction: 0.2}\n")
    spec = load_atrophy_spec(path)
    assert spec.falloff_mm == 4.0 and spec.regions[0].thinning_fraction == 0.2 and spec.regions[0].hemi == "R"


def test_label_file_relative_to_spec(tmp_path):
    (tmp_path / "labels").mkdir()
    verts = np.array([5, 1, 3])
    _write_label(tmp_path / "labels" / "lh.spot.label", verts)
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "labels/lh.spot.label", "thinning_mm": 1}]))
    region = spec.regions[0]
    assert region.name == "lh.spot" and region.label_path == (tmp_path / "labels" / "lh.spot.label").resolve()
    np.testing.assert_array_equal(region.label_vertices, [1, 3, 5])
    with pytest.raises(UsageError, match="other hemisphere"):
        load_atrophy_spec(_spec(tmp_path, [{"hemi": "R", "label": "labels/lh.spot.label", "thinning_mm": 1}]))


def test_missing_or_unreadable_label_is_exit_66(tmp_path):
    with pytest.raises(MissingInputError) as info:
        load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "gone.label", "thinning_mm": 1}]))
    assert info.value.exit_code == 66 and info.value.path.name == "gone.label"
    (tmp_path / "broken.label").write_text("not a label\n")
    with pytest.raises(MissingInputError) as info:
        load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "broken.label", "thinning_mm": 1}]))
    assert info.value.path.name == "broken.label" and "cannot read" in str(info.value)
    (tmp_path / "short.label").write_text("#!ascii label\n3\n1 0 0 0 0\n2 0 0 0 0\n")
    with pytest.raises(MissingInputError, match="announces 3 vertices"):
        load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "short.label", "thinning_mm": 1}]))


def _write_label(path, vertices):
    lines = ["#!ascii label", str(len(vertices))]
    lines += [f"{int(v)} 0.0 0.0 0.0 0.0" for v in vertices]
    path.write_text("\n".join(lines) + "\n")


def test_region_mask_participant_errors(tmp_path):
    hemi = _shell(1)
    _write_label(tmp_path / "big.label", [0, 10_000])
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "big.label", "thinning_mm": 1}]))
    with pytest.raises(ParticipantError, match="10000"):
        region_mask(spec.regions[0], hemi)
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "insula", "thinning_mm": 1}]))
    with pytest.raises(ParticipantError, match="insula"):
        region_mask(spec.regions[0], hemi)
    bare = Hemisphere("L", hemi.white, hemi.pial)
    with pytest.raises(ParticipantError, match="no annotation"):
        region_mask(spec.regions[0], bare)


# ---------------------------------------------------------------------------------------------- thinning


def test_sphere_shell_thinning_is_exact(tmp_path):
    hemi = _shell(3)
    white_before = hemi.white.vertices.copy()
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "precentral", "thinning_mm": 1.0}], steps=2))
    pres = prescribe(spec, hemi)
    region = pres.regions["precentral"]
    assert pres.region_mm["precentral"] == pytest.approx(1.0)
    base = cortical_thickness(hemi.white.vertices, hemi.white.faces, hemi.pial.vertices, hemi.pial.faces)
    series = thinned_series(spec, hemi, pres)
    assert len(series) == 2
    for k, step in enumerate(series, 1):
        radius = np.linalg.norm(step.vertices, axis=1)
        # moved radially (along white→pial); the facets of the polyhedral shells make the closest-point thickness
        # differ from the radius difference by < 0.003 mm, which the displacement solve compensates
        np.testing.assert_allclose(radius[region], R_PIAL - 0.5 * k, atol=5e-3)
        direction = step.vertices[region] / radius[region, None]
        np.testing.assert_allclose(direction, hemi.pial.vertices[region] / R_PIAL, atol=1e-12)
        np.testing.assert_allclose(radius[~region], R_PIAL, atol=1e-12)  # hard edge: the rest stays
        thick = cortical_thickness(hemi.white.vertices, hemi.white.faces, step.vertices, hemi.pial.faces)
        np.testing.assert_allclose((base - thick)[region], 0.5 * k, atol=1e-4)
        assert step.report()["new_self_intersections"] == 0 and step.new_white_crossings == 0
        assert step.n_backed_off == 0 and step.n_moved == int(region.sum())
    np.testing.assert_array_equal(hemi.white.vertices, white_before)


def test_thinning_fraction_on_shell(tmp_path):
    hemi = _shell(2, hemi="R")
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "R", "label": "precentral", "thinning_fraction": 0.25}],
                                   steps=1))
    pres = prescribe(spec, hemi)
    assert pres.region_mm["precentral"] == pytest.approx(1.0, abs=0.03)  # 25 % of ≈ 4 mm
    step = thinned_series(spec, hemi, pres)[0]
    line = np.linalg.norm(step.vertices - hemi.white.vertices, axis=1)[pres.regions["precentral"]]
    assert np.all(np.abs(line - 3.0) < 0.03)


def test_other_hemisphere_is_untouched(tmp_path):
    hemi = _shell(2, hemi="R")
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "precentral", "thinning_mm": 1.0}]))
    pres = prescribe(spec, hemi)
    assert not pres.amount_mm.any() and not pres.regions
    for step in thinned_series(spec, hemi, pres):
        np.testing.assert_array_equal(step.vertices, hemi.pial.vertices)


def test_falloff_weights_shape():
    f = 6.0
    d = np.array([0.0, 1e-3, 3.0, 6.0 - 1e-3, 6.0, 9.0, np.inf])
    w = falloff_weights(d, f)
    np.testing.assert_allclose(w[[0, 2, 4, 5, 6]], [1.0, 0.5, 0.0, 0.0, 0.0], atol=1e-12)
    assert 1 - w[1] < 1e-6 and w[3] < 1e-6  # flat at both ends (smooth)
    dense = falloff_weights(np.linspace(0, f, 601), f)
    assert np.all(np.diff(dense) <= 1e-15)
    np.testing.assert_array_equal(falloff_weights(np.array([0.0, 0.5]), 0.0), [1.0, 0.0])


def test_falloff_on_sphere_follows_geodesic_distance(tmp_path):
    cap = np.cos(np.radians(30))
    hemi = _shell(4, cap_z=cap)
    falloff = 8.0
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "precentral", "thinning_mm": 1.0}],
                                   steps=1, falloff_mm=falloff))
    pres = prescribe(spec, hemi)
    region = pres.regions["precentral"]
    mid_r = 0.5 * (R_WHITE + R_PIAL)
    unit = hemi.white.vertices / R_WHITE
    # true geodesic distance on the mid sphere to the nearest region vertex
    true_d = mid_r * np.arccos(np.clip(unit @ unit[region].T, -1, 1)).min(axis=1)
    edge_d = mesh_edge_distance(0.5 * (hemi.white.vertices + hemi.pial.vertices), hemi.pial.faces, region)
    ring = (true_d > 2.0) & (true_d < 20.0)
    ratio = edge_d[ring] / true_d[ring]
    # edge paths are never shorter than the geodesic (up to the chords, 0.1 % here); zigzags add up to ~20 %
    assert np.all(ratio >= 0.998) and np.all(ratio < 1.2) and np.median(ratio) < 1.1
    amount = pres.amount_mm
    np.testing.assert_array_equal(amount[region], 1.0)
    assert np.all(amount[true_d >= falloff] == 0.0)  # edge distance ≥ true distance: nothing beyond F
    assert np.all(amount[(~region) & (true_d < falloff / 1.2)] > 0)
    # the weight is the cosine taper of a distance between the geodesic and 1.2 × the geodesic
    outside = ~region
    assert np.all(amount[outside] <= falloff_weights(0.995 * true_d[outside], falloff))  # 0.995: chords
    assert np.all(amount[outside] >= falloff_weights(1.2 * true_d[outside], falloff))
    order = np.argsort(true_d[~region])  # thinning falls off with distance (up to the edge-path wobble)
    a = amount[~region][order]
    assert np.all(np.diff(a) < 0.08)


def test_floor_keeps_pial_off_white(tmp_path):
    hemi = _shell(2)
    line0 = np.linalg.norm(hemi.pial.vertices - hemi.white.vertices, axis=1)
    spec = load_atrophy_spec(_spec(tmp_path, [{"hemi": "L", "label": "precentral", "thinning_mm": 5.0}],
                                   steps=1, floor_mm=0.5))
    step = thinned_series(spec, hemi)[0]
    region = hemi.labels == 1
    line = np.linalg.norm(step.vertices - hemi.white.vertices, axis=1)
    np.testing.assert_allclose(line[region], 0.5, atol=1e-9)
    np.testing.assert_allclose(line[~region], line0[~region])
    assert step.n_floored == int(region.sum())
    # a vertex already thinner than the floor does not move
    pial = hemi.white.vertices * (R_WHITE + 0.3) / R_WHITE
    out = thin_pial(hemi.white.vertices, hemi.white.faces, pial, hemi.pial.faces, np.full(len(pial), 1.0), 0.5)
    np.testing.assert_array_equal(out.vertices, pial)
    assert out.n_moved == 0


def test_solve_displacement_on_oblique_lines():
    # a flat slab whose vertex correspondence is sheared: lines are oblique, thickness is the slab's 3 mm
    n = 25
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    flat = np.stack([x.ravel(), y.ravel(), np.zeros(n * n)], axis=1)
    i = np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]
    faces = np.concatenate([np.stack([i, i + n, i + n + 1], -1).reshape(-1, 3),
                            np.stack([i, i + n + 1, i + 1], -1).reshape(-1, 3)])
    white = flat
    pial = flat + [2.0, 0.0, 3.0]  # each line is 3.6 mm long for 3 mm of thickness
    centre = (np.abs(flat[:, 0] - 12) < 5) & (np.abs(flat[:, 1] - 12) < 5)
    target = np.where(centre, 1.0, 0.0)
    base = cortical_thickness(white, faces, pial, faces)
    disp = solve_displacement(white, faces, pial, faces, target, 0.5)
    out = thin_pial(white, faces, pial, faces, disp, 0.5)
    change = base - cortical_thickness(white, faces, out.vertices, faces)
    inner = (np.abs(flat[:, 0] - 12) < 3) & (np.abs(flat[:, 1] - 12) < 3)
    np.testing.assert_allclose(change[inner], 1.0, atol=0.03)
    assert abs(change[inner].mean() - 1.0) < 0.01
    plain = thin_pial(white, faces, pial, faces, target, 0.5)  # moving by the prescription falls short
    assert (base - cortical_thickness(white, faces, plain.vertices, faces))[inner].mean() < 0.9
    assert np.all(disp[inner] > 1.1)  # the move along the oblique line is longer than the thinning


# ---------------------------------------------------------------------------------------------- intersections


def test_triangles_intersect_cases():
    a = np.array([[[0, 0, 0], [2, 0, 0], [0, 2, 0]]], dtype=float)
    crossing = np.array([[[0.5, 0.5, -1], [0.5, 0.5, 1], [1.5, 1.5, 1]]], dtype=float)
    above = crossing + [0, 0, 2.5]
    beside = crossing + [5, 0, 0]
    assert triangles_intersect(a, crossing)[0]
    assert not triangles_intersect(a, above)[0] and not triangles_intersect(a, beside)[0]
    assert triangles_intersect(np.repeat(a, 3, 0), np.concatenate([crossing, above, beside])).tolist() == [
        True, False, False]


def test_self_intersections_and_crossings_on_spheres():
    v, f = icosphere(3)
    assert len(self_intersections(v * 10, f)) == 0
    dented = v * 10
    dented[0] = -dented[0] * 1.5  # one vertex pulled through the far side
    pairs = self_intersections(dented, f)
    assert len(pairs) > 0 and np.all(pairs[:, 0] < pairs[:, 1])
    touched = np.isin(np.arange(len(f)), np.flatnonzero((f == 0).any(axis=1)))
    assert len(self_intersections(dented, f, touched)) == len(pairs)  # every pair involves the moved vertex
    assert len(mesh_crossings(v * 12, f, v * 10, f)) == 0
    assert len(mesh_crossings(v * 10 + [5, 0, 0], f, v * 10, f)) > 0
    assert flipped_faces(v, dented, f).any() and not flipped_faces(v, v * 3, f).any()


def _sheet(n=15, z=0.0):
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), np.full(n * n, z)], axis=1)
    i = np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]
    f = np.concatenate([np.stack([i, i + n, i + n + 1], -1).reshape(-1, 3),
                        np.stack([i, i + n + 1, i + 1], -1).reshape(-1, 3)])
    return v, f


def test_back_off_prevents_new_white_crossings():
    white, f = _sheet(z=0.0)
    pial, _ = _sheet(z=3.0)
    c = 7 * 15 + 7
    white[c] = pial[c] + [4.0, 0.0, -8.0]  # a long oblique line: the floor does not stop it crossing white
    disp = np.zeros(len(pial))
    disp[c] = 6.0
    raw = thin_pial(white, f, pial, f, disp, 0.5, check=False)
    assert raw.vertices[c, 2] < 0 and len(mesh_crossings(raw.vertices, f, white, f)) > 0
    out = thin_pial(white, f, pial, f, disp, 0.5)
    assert out.new_white_crossings == 0 and out.n_backed_off >= 1
    assert 0 < out.displacement_mm[c] < 6.0 and out.vertices[c, 2] > 0
    assert len(mesh_crossings(out.vertices, f, white, f)) == 0


def test_back_off_prevents_fold_overs():
    white, f = _sheet(z=0.0)
    pial, _ = _sheet(z=3.0)
    c = 7 * 15 + 7
    white[c] = pial[c] + [-10.0, 0.0, -3.0]  # an almost tangential line: moving along it folds the mesh
    disp = np.zeros(len(pial))
    disp[c] = 5.0
    raw = thin_pial(white, f, pial, f, disp, 0.5, check=False)
    assert flipped_faces(pial, raw.vertices, f).any()
    out = thin_pial(white, f, pial, f, disp, 0.5)
    assert out.new_flipped_faces == 0 and out.new_self_intersections == 0 and out.n_backed_off >= 1
    assert not flipped_faces(pial, out.vertices, f).any()
    assert 0 < out.displacement_mm[c] < 5.0
