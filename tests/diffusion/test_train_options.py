"""The paper's training recipe (--architecture paper), EMA start in mini-batches, plateau cooldown and raw loss."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cor2vox_bids.cli import train as cli_train
from cor2vox_bids.cli.parser import parse_settings
from cor2vox_bids.diffusion.training import train
from cor2vox_bids.settings import TrainSettings
from diffusion_helpers import sphere_pair, tiny_config


def _settings(*args: str) -> TrainSettings:
    return parse_settings(TrainSettings, ["bids", "model", *args], "t", "t")


def test_split_holds_out_subjects_by_label_across_sessions():
    """--validation-label names subjects (from the typed inputs, not parsed from keys): every session of a held-out
    subject is held out; a label matching no subject is a usage error; default: the last two of ≥ 4."""
    from cor2vox_bids.errors import UsageError

    ids = [("01", "A"), ("01", "B"), ("02", None), ("sub", None), ("1", None)]
    train_ids, val_ids = cli_train.split(ids, ["01", "sub"])
    assert val_ids == [("01", "A"), ("01", "B"), ("sub", None)] and train_ids == [("02", None), ("1", None)]
    with pytest.raises(UsageError, match="'03'"):
        cli_train.split(ids, ["03"])
    assert cli_train.split(ids[:4], None) == (ids[:2], ids[2:4])
    assert cli_train.split(ids[:3], None) == (ids[:3], [])


def test_paper_recipe_fills_only_what_is_not_given():
    s = cli_train.training_options(_settings("--architecture", "paper", "--lr", "3e-4"))
    assert (s.lr, s.batch_size, s.accumulation, s.plateau_cooldown, s.plateau_on, s.ema_decay, s.ema_every) == (
        3e-4, 2, 2, 3000, "raw", 0.995, 8)
    assert cli_train.ema_start_step(s) == 15000  # start_ema_step 30000 mini-batches / accumulation 2
    s = cli_train.training_options(_settings("--architecture", "paper", "--ema-start", "100"))
    assert s.ema_start_minibatches is None and cli_train.ema_start_step(s) == 100
    demo = cli_train.training_options(_settings())  # the demo keeps its own (measured) choices
    assert (demo.lr, demo.batch_size, demo.plateau_on, demo.plateau_cooldown, demo.ema_decay) == (
        2e-4, 1, "smoothed", 0, None)
    assert cli_train.ema_start_step(_settings("--ema-start-minibatches", "7", "--accumulation", "2")) == 4
    cfg = cli_train.model_config_for(_settings("--architecture", "paper"), {})
    assert cfg["architecture"]["upsample_mode"] == "trilinear"
    assert cli_train.model_config_for(_settings(), {})["architecture"]["upsample_mode"] == "nearest"


def test_ema_start_options_exclusive():
    assert cli_train.main(["b", "m", "--ema-start", "5", "--ema-start-minibatches", "10"]) == 64


def _lrs(run):
    with open(run / "train_log.tsv") as f:
        return [float(r["lr"]) for r in csv.DictReader(f, delimiter="\t")]


def test_plateau_cooldown_and_raw_loss(tmp_path):
    """patience 0: without cooldown the lr may halve every step; with cooldown 3 at most every 4th step.
    The raw loss and the smoothed loss lead to different schedules."""
    pairs = [sphere_pair(8), tuple(0.5 * a for a in sphere_pair(8))]
    common = dict(steps=12, lr=1e-3, plateau_patience=0, min_lr=1e-9, seed=2, device="cpu", precision="fp32",
                  progress=False, log=lambda s: None)
    cfg = tiny_config(8)
    train(cfg, pairs, [], tmp_path / "a", plateau_on="raw", **common)
    out = train(cfg, pairs, [], tmp_path / "b", plateau_on="raw", plateau_cooldown=3, **common)
    train(cfg, pairs, [], tmp_path / "c", plateau_on="smoothed", **common)
    a, b, c = _lrs(tmp_path / "a"), _lrs(tmp_path / "b"), _lrs(tmp_path / "c")
    drops = [i for i in range(1, len(b)) if b[i] < b[i - 1]]
    assert drops and all(j - i >= 4 for i, j in zip(drops, drops[1:]))
    assert sum(x < y for x, y in zip(a[1:], a)) > len(drops)  # no cooldown: more reductions
    assert a != c
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["plateau_cooldown"] == 3 and training["plateau_on"] == "raw"
    assert np.isfinite(training["final_loss_smooth"])


def test_fp16_on_cpu_is_a_usage_error(tmp_path):
    from cor2vox_bids.errors import UsageError

    with pytest.raises(UsageError, match="fp16"):
        train(tiny_config(8), [sphere_pair(8)], [], tmp_path, steps=1, device="cpu", precision="fp16",
              progress=False, log=lambda s: None)
