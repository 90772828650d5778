"""Fine-tuning: ``train(init_weights=...)`` and ``cor2vox-train --init-from MODEL_DIR``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cor2vox_bids.cli import train as cli_train
from cor2vox_bids.diffusion.checkpoint import file_sha256, load_init_weights, save_model
from cor2vox_bids.diffusion.training import train
from cor2vox_bids.diffusion.unet import UNet3D, UNetConfig
from cor2vox_bids.errors import ModelError
from diffusion_helpers import randomize, sphere_pair, tiny_config


def _pairs(size=8):
    a = sphere_pair(size)
    return [a, tuple(np.flip(x, axis=-1).copy() for x in a), tuple(0.5 * x for x in a)]


def _source_model(folder, seed=7, size=8):
    """A tiny model folder with random (non-default) weights."""
    cfg = tiny_config(size)
    torch.manual_seed(seed)
    net = randomize(UNet3D(UNetConfig.from_dict(cfg["architecture"])), seed)
    return save_model(folder, net, cfg)


def test_init_weights_fresh_optimizer_and_ema(tmp_path):
    """With lr 0 nothing moves: the trained and EMA weights are exactly the loaded ones (not a random init),
    the step counter starts at 0 and the config records the source model."""
    src = _source_model(tmp_path / "src")
    weights, cfg, sha = load_init_weights(src)
    assert sha == file_sha256(src / "model.safetensors")
    info = {"name": cfg["name"], "weights_sha256": sha}
    out = train(cfg, _pairs(), [], tmp_path / "run", steps=3, lr=0.0, ema_every=1, ema_start=0, ema_decay=0.5,
                seed=1, device="cpu", precision="fp32", progress=False, log=lambda s: None,
                init_weights=weights, init_info=info)
    got = load_file(out / "model.safetensors")
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in got)
    state = load_file(tmp_path / "run" / "state" / "state.safetensors")
    assert all(torch.equal(state[f"model.{k}"], weights[k]) for k in weights)
    meta = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert meta["step"] == 3 and meta["args"]["init_from"] == info
    assert json.loads((out / "config.json").read_text())["training"]["init_from"] == info
    # a different source really changes the start: lr 0 from a random init gives other weights
    plain = train(cfg, _pairs(), [], tmp_path / "plain", steps=1, lr=0.0, seed=1, device="cpu",
                  precision="fp32", progress=False, log=lambda s: None)
    other = load_file(plain / "model.safetensors")
    assert any(not torch.equal(other[k], weights[k]) for k in weights)


def test_init_weights_that_do_not_fit(tmp_path):
    src = _source_model(tmp_path / "src")
    weights, cfg, _ = load_init_weights(src)
    wider = tiny_config(8, base=16)
    with pytest.raises(ModelError, match="do not fit"):
        train(wider, _pairs(), [], tmp_path / "run", steps=1, device="cpu", precision="fp32", progress=False,
              log=lambda s: None, init_weights=weights)


@pytest.fixture
def fake_data(monkeypatch):
    """cor2vox-train without surfaces: prepare_pairs returns three synthetic participants on the model grid."""
    def prepare(settings, config, cache):
        size = config["grid"]["shape"][0]
        return {(f"0{i + 1}", None): p for i, p in enumerate(_pairs(size))}
    monkeypatch.setattr(cli_train, "prepare_pairs", prepare)


def _argv(tmp_path, out, *extra):
    return [str(tmp_path / "bids"), str(out), "-w", str(tmp_path / "work"), "--steps", "2", "--lr", "1e-3",
            "--val-every", "100", "--device", "cpu", "--precision", "fp32", "--nthreads", "1", *extra]


def test_cli_init_from_records_source_and_resume_wins(tmp_path, fake_data, capfd):
    src = _source_model(tmp_path / "src")
    sha = file_sha256(src / "model.safetensors")
    assert cli_train.main(_argv(tmp_path, tmp_path / "model", "--init-from", str(src))) == 0
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    src_cfg = json.loads((src / "config.json").read_text())
    assert cfg["architecture"] == src_cfg["architecture"] and cfg["grid"] == src_cfg["grid"]
    assert cfg["training"]["init_from"]["weights_sha256"] == sha
    assert cfg["training"]["init_from"]["name"] == "tiny-test"
    assert cfg["training"]["steps"] == 2
    # rerun with more steps and another --init-from: the saved state wins, the record stays the first model
    other = _source_model(tmp_path / "other", seed=9)
    capfd.readouterr()
    assert cli_train.main(_argv(tmp_path, tmp_path / "model", "--init-from", str(other))
                          + ["--steps", "4"]) == 0
    text = capfd.readouterr().err
    assert "resuming from step 2" in text and "are ignored" in text
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["training"]["steps"] == 4 and cfg["training"]["init_from"]["weights_sha256"] == sha


def test_cli_init_from_errors(tmp_path, fake_data):
    src = _source_model(tmp_path / "src")
    # options that disagree with the model: usage error 64
    assert cli_train.main(_argv(tmp_path, tmp_path / "m1", "--init-from", str(src), "--grid-shape",
                                "16", "16", "16")) == 64
    assert cli_train.main(_argv(tmp_path, tmp_path / "m1", "--init-from", str(src), "--base-channels",
                                "16")) == 64
    assert not (tmp_path / "m1").exists()
    # a corrupt weights file (sha256 recorded in config.json does not match): data error 65
    blob = bytearray((src / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (src / "model.safetensors").write_bytes(bytes(blob))
    assert cli_train.main(_argv(tmp_path, tmp_path / "m2", "--init-from", str(src))) == 65
    # a folder that is not there: missing input 66
    assert cli_train.main(_argv(tmp_path, tmp_path / "m3", "--init-from", str(tmp_path / "nope"))) == 66


def test_init_from_without_recorded_sha(tmp_path):
    src = _source_model(tmp_path / "src")
    cfg = json.loads((src / "config.json").read_text())
    del cfg["weights_sha256"]
    (src / "config.json").write_text(json.dumps(cfg))
    _, _, sha = load_init_weights(src)
    assert sha == file_sha256(src / "model.safetensors")
