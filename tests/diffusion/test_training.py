"""Training loop: overfitting one pair, exact resume, outputs, argument checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage.metrics import structural_similarity

from cor2vox_bids.diffusion.checkpoint import file_sha256, load_model, verify_model
from cor2vox_bids.diffusion.inference import synthesize
from cor2vox_bids.diffusion.training import auto_ema_decay, train
from cor2vox_bids.errors import UsageError
from diffusion_helpers import sphere_pair, tiny_config


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_overfits_one_pair(tmp_path):
    """A 25 k-parameter UNet memorises one 16³ pair: its 10-step sample reaches SSIM > 0.9 (on [−1, 1],
    data_range 2) within a minute, while the untrained net (x̂0 = y) scores far lower."""
    cond, img = sphere_pair(16)
    cfg = tiny_config()
    folder = train(cfg, [(cond, img)], [(cond, img)], tmp_path / "run", steps=80, lr=3e-3, ema_start=10**6,
                   val_every=40, seed=0, device="cpu", precision="fp32", progress=False, log=lambda s: None)
    net, mcfg = load_model(folder)
    sample = synthesize(net, mcfg, torch.from_numpy(cond)[None], [5], steps=10)[0] * 2 - 1
    s = structural_similarity(sample, img[0], data_range=2.0)
    base = structural_similarity(cond[0], img[0], data_range=2.0)
    assert s > 0.9 and base < 0.5, (s, base)
    assert verify_model(folder)["training"]["steps"] == 80
    rows = _rows(tmp_path / "run" / "train_log.tsv")
    assert [int(r["step"]) for r in rows] == list(range(1, 81))
    assert float(rows[-1]["loss_smooth"]) < 0.5 * float(rows[0]["loss"])
    assert float(rows[39]["val_ssim"]) > 0 and float(rows[-1]["val_ssim"]) > 0.9 and rows[0]["val_ssim"] == ""
    for png in ("loss_curve.png", "val/step-000040.png", "val/step-000080.png"):
        assert (tmp_path / "run" / png).read_bytes()[:4] == b"\x89PNG"


def _tiny_run(out, steps, **kw):
    pairs = [sphere_pair(8), tuple(np.flip(a, axis=-1).copy() for a in sphere_pair(8)),
             tuple(0.5 * a for a in sphere_pair(8))]
    args = dict(steps=steps, batch_size=2, accumulation=2, lr=1e-3, plateau_patience=0, plateau_factor=0.5,
                loss_smoothing=0.0,
                min_lr=1e-4, ema_every=2, ema_start=2, ema_decay=0.9, val_every=3, val_samples=1, val_steps=2,
                seed=3, device="cpu", precision="fp32", progress=False, log=lambda s: None)
    args.update(kw)
    cfg = tiny_config(8)
    cfg["architecture"]["dropout"] = 0.1  # exercises the global RNG state too
    return train(cfg, pairs, pairs[:1], out, **args)


def test_resume_equals_uninterrupted(tmp_path):
    full = _tiny_run(tmp_path / "full", 7)
    _tiny_run(tmp_path / "part", 4)  # "interrupted" after step 4 (state saved at 3 and 4)
    resumed = _tiny_run(tmp_path / "part", 7)
    assert file_sha256(full / "model.safetensors") == file_sha256(resumed / "model.safetensors")
    a, b = (load_file(p / "state" / "state.safetensors") for p in (tmp_path / "full", tmp_path / "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = _rows(tmp_path / "full" / "train_log.tsv"), _rows(tmp_path / "part" / "train_log.tsv")
    assert [(r["step"], r["loss"], r["lr"]) for r in ra] == [(r["step"], r["loss"], r["lr"]) for r in rb]
    assert len({r["lr"] for r in ra}) > 1  # the plateau scheduler did act
    # a fresh run with the same seed is bit-identical too; another seed is not
    again = _tiny_run(tmp_path / "again", 7)
    other = _tiny_run(tmp_path / "other", 7, seed=4)
    assert file_sha256(again / "model.safetensors") == file_sha256(full / "model.safetensors")
    assert file_sha256(other / "model.safetensors") != file_sha256(full / "model.safetensors")


def test_validation_logs_ema_and_raw_weights(tmp_path):
    _tiny_run(tmp_path / "v", 3)
    rows = _rows(tmp_path / "v" / "train_log.tsv")
    assert rows[2]["val_ssim"] and rows[2]["val_ssim_raw"] and not rows[1]["val_ssim_raw"]
    assert -1.0 <= float(rows[2]["val_ssim_raw"]) <= 1.0


def test_ema_horizon_default_and_warning(tmp_path):
    assert auto_ema_decay(200_000, 8) == pytest.approx(0.995)  # the paper's setting for long runs
    assert auto_ema_decay(2000, 8) == pytest.approx(0.96)  # a tenth of a short run
    assert 8 / (1 - auto_ema_decay(10, 8)) >= 16  # never shorter than two updates
    said = []
    _tiny_run(tmp_path / "w", 3, ema_decay=0.999, log=said.append)  # averages over 2000 steps of 1
    assert any("EMA averages over about 2000 steps" in s for s in said)
    said.clear()
    _tiny_run(tmp_path / "w2", 7, ema_decay=0.5, ema_every=1, ema_start=0, log=said.append)  # horizon 2 steps
    assert not any("EMA averages" in s for s in said)


def test_resume_refuses_other_settings(tmp_path):
    _tiny_run(tmp_path / "r", 2)
    with pytest.raises(UsageError, match="seed"):
        _tiny_run(tmp_path / "r", 4, seed=9)
    _tiny_run(tmp_path / "r", 2, seed=9, resume=False)  # explicit restart is allowed


def test_bf16_path_runs(tmp_path):
    folder = _tiny_run(tmp_path / "bf", 2, precision="bf16")
    assert verify_model(folder)["training"]["precision"] == "bf16"


def test_bad_pairs_rejected(tmp_path):
    cond, img = sphere_pair(16)
    with pytest.raises(UsageError, match="training pair 0"):
        train(tiny_config(8), [(cond, img)], [], tmp_path, steps=1, progress=False)
    with pytest.raises(UsageError, match="empty"):
        train(tiny_config(8), [], [], tmp_path, steps=1, progress=False)
