"""PCA round trip, storage without pickle, sampling determinism and slerp vs lerp."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cor2vox_bids.errors import MissingInputError, ModelError
from cor2vox_bids.shape.model import (
    ShapeModel,
    fit_pca,
    interpolate_codes,
    lerp,
    load_model,
    mean_thickness_law,
    sample_codes,
    save_model,
    slerp,
)


def _features(n: int = 7, v: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.column_stack([rng.normal(0, 30, (v, 3)), rng.uniform(1.5, 3.5, v)]).reshape(-1)
    modes = rng.normal(size=(3, 4 * v))
    return base + rng.normal(size=(n, 3)) @ modes + 0.05 * rng.normal(size=(n, 4 * v))


def _model(n: int = 7, v: int = 40) -> ShapeModel:
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    hemis = {h: fit_pca(_features(n, v, seed=i)) for i, h in enumerate("LR")}
    annot = {h: (np.zeros(v, dtype=np.int32), np.array([[25, 5, 25, 0, 1639705]]), ["unknown"]) for h in "LR"}
    sphere = {h: np.random.default_rng(5).normal(size=(v, 3)) for h in "LR"}
    return ShapeModel(
        hemis,
        {"Name": "toy", "OrigAffine": np.eye(4).tolist(), "OrigShape": [8, 8, 8]},
        {h: faces for h in "LR"},
        sphere,
        annot,
        [f"sub-{i:02d}" for i in range(n)],
    )


def test_pca_round_trip_all_components():
    x = _features()
    pca = fit_pca(x)
    assert pca.n_components == len(x) - 1
    assert np.abs(pca.decode(pca.encode(x)) - x).max() < 1e-8
    # whitened: training codes have unit variance per component and orthonormal components
    assert np.allclose(pca.train_codes.var(axis=0, ddof=1), 1.0)
    assert np.allclose(pca.components @ pca.components.T, np.eye(pca.n_components), atol=1e-10)


def test_pca_truncation_error_decreases():
    x = _features(n=9)
    pca = fit_pca(x)
    errs = [np.abs(pca.truncated(k).decode(pca.encode(x)[:, :k]) - x).mean() for k in range(1, pca.n_components + 1)]
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    assert errs[2] < 0.1 * errs[0] or errs[0] < 1e-6  # three true modes


def test_components_capped_and_standardised():
    x = _features(n=5)
    assert fit_pca(x, n_components=50).n_components == 4
    x[:, 7] = 3.0  # a column that never varies: floored std, no division by zero
    pca = fit_pca(x)
    assert np.all(np.isfinite(pca.components)) and pca.std[7] > 0


def test_save_load_round_trip_without_pickle(tmp_path):
    model = _model()
    files = save_model(model, tmp_path)
    for f in files[1:]:
        with np.load(f, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)
    back = load_model(tmp_path)
    assert back.training == model.training
    for h in "LR":
        assert np.array_equal(back.hemis[h].components, model.hemis[h].components)
        assert np.array_equal(back.hemis[h].train_codes, model.hemis[h].train_codes)
        assert back.annot[h][2] == ["unknown"]
    meta = json.loads((tmp_path / "shape_model.json").read_text())
    assert meta["Hemispheres"]["L"]["n_components"] == 6 and "Kabsch" in meta["PoseRemoval"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(MissingInputError):
        load_model(tmp_path / "nope")
    save_model(_model(), tmp_path)
    (tmp_path / "hemi-R_shape.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError) as err:
        load_model(tmp_path)
    assert err.value.path == tmp_path / "hemi-R_shape.npz"
    (tmp_path / "shape_model.json").write_text("{")
    with pytest.raises(ModelError):
        load_model(tmp_path)


def test_sampling_is_deterministic_per_seed():
    model = _model()
    a, b, c = sample_codes(model, 3, 11), sample_codes(model, 3, 11), sample_codes(model, 3, 12)
    for x, y in zip(a, b):
        assert all(np.array_equal(x[h], y[h]) for h in "LR")
    assert not np.array_equal(a[0]["L"], c[0]["L"])
    half = sample_codes(model, 3, 11, scale=0.5)
    assert np.allclose(half[1]["R"], 0.5 * a[1]["R"])


def test_slerp_keeps_norm_lerp_shrinks():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=10), rng.normal(size=10)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    r = np.linalg.norm(a)
    omega = np.arccos(a @ b / r**2)
    for t in (0.0, 0.25, 0.5, 0.9, 1.0):
        assert np.isclose(np.linalg.norm(slerp(a, b, t)), r)
    assert np.allclose(slerp(a, b, 0.0), a) and np.allclose(slerp(a, b, 1.0), b)
    assert np.isclose(np.linalg.norm(lerp(a, b, 0.5)), r * np.cos(omega / 2))
    # slerp midpoint lies on the bisector of the two directions
    mid = slerp(a, b, 0.5)
    assert np.isclose(mid @ a, mid @ b)


def test_interpolation_ends_are_training_codes():
    model = _model()
    steps = interpolate_codes(model, "sub-01", "sub-04", 5, "slerp")
    assert [t for t, _ in steps] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert np.allclose(steps[0][1]["L"], model.hemis["L"].train_codes[1])
    assert np.allclose(steps[-1][1]["R"], model.hemis["R"].train_codes[4])
    again = interpolate_codes(model, "sub-01", "sub-04", 5, "slerp")
    assert all(np.array_equal(x[1]["L"], y[1]["L"]) for x, y in zip(steps, again))


def test_holdout_error_falls_with_components():
    """Leave-one-out on data with three true modes: the error drops from the mean to the noise floor by k = 3."""
    from cor2vox_bids.shape.build import holdout_errors
    from cor2vox_bids.shape.data import ParticipantOnTemplate

    rows = {h: _features(n=10, v=30, seed=s) for s, h in enumerate("LR")}
    people = [
        ParticipantOnTemplate(
            f"sub-{i:02d}",
            {h: rows[h][i].reshape(-1, 4)[:, :3] for h in "LR"},
            {h: rows[h][i].reshape(-1, 4)[:, 3] for h in "LR"},
            False,
            0.0,
            0.0,
            0.0,
            0.0,
        )
        for i in range(10)
    ]
    errors = holdout_errors(people, [0, 1, 2, 3, 5])
    mid = [errors[k]["mid_rms_mm"] for k in (0, 1, 2, 3, 5)]
    assert mid[0] > mid[1] > mid[2] > mid[3]
    assert mid[3] < 0.1 * mid[0] and abs(mid[4] - mid[3]) < 0.05 * mid[0]


def test_mean_thickness_law_matches_samples():
    """The mean thickness of sampled participants (DK-region vertices of both hemispheres) is normal with the
    predicted mean and sd, and the predicted share outside the training range is what sampling gives."""
    model = _model()
    v = model.n_vertices
    labels = np.r_[np.zeros(5, dtype=np.int32), np.ones(v - 5, dtype=np.int32)]  # 5 'unknown' vertices left out
    for h in "LR":
        model.annot[h] = (
            labels,
            np.array([[25, 5, 25, 0, 1639705], [60, 20, 220, 0, 14423100]]),
            ["unknown", "precentral"],
        )
    law = mean_thickness_law(model)
    n = 4000

    codes = sample_codes(model, n, 3)
    thick = [model.hemis[h].decode(np.stack([c[h] for c in codes]))[:, 3::4][:, 5:] for h in "LR"]
    mt = np.concatenate(thick, axis=1).mean(axis=1)
    assert abs(mt.mean() - law["mean"]) < 4 * law["sd"] / np.sqrt(n)
    assert abs(mt.std() / law["sd"] - 1) < 0.05
    # without TrainingMeanThickness the range comes from the training codes: all training participants inside it
    train = np.concatenate(
        [model.hemis[h].decode(model.hemis[h].train_codes)[:, 3::4][:, 5:] for h in "LR"], axis=1
    ).mean(axis=1)
    assert np.isclose(law["training_min"], train.min()) and np.isclose(law["training_max"], train.max())
    outside = np.mean((mt < law["training_min"]) | (mt > law["training_max"]))
    p = law["p_outside_training_range"]
    assert 0 < p < 1 and abs(outside - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3
    # scale shrinks the spread; a range of mean +- 1.96 sd leaves 5 % outside
    assert np.isclose(mean_thickness_law(model, 0.5)["sd"], 0.5 * law["sd"])
    model.info["TrainingMeanThickness"] = {"a": law["mean"] - 1.96 * law["sd"], "b": law["mean"] + 1.96 * law["sd"]}
    assert abs(mean_thickness_law(model)["p_outside_training_range"] - 0.05) < 1e-3
    assert mean_thickness_law(model, 0.5)["p_outside_training_range"] < 1e-4
