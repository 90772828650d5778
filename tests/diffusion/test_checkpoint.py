"""Model folders: bit-exact round trip, checksum refusal, incompatible files, training-state files."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from cor2vox_bids.diffusion.checkpoint import (
    file_sha256,
    load_model,
    load_training_state,
    save_model,
    save_training_state,
    verify_model,
)
from cor2vox_bids.diffusion.unet import UNet3D
from cor2vox_bids.errors import ExitCode, MissingInputError, ModelError
from diffusion_helpers import randomize, tiny_arch, tiny_config


@pytest.fixture
def folder(tmp_path, tiny_model):
    return save_model(tmp_path / "m", tiny_model, tiny_config())


def test_roundtrip_bit_exact(folder, tiny_model):
    cfg_file = json.loads((folder / "config.json").read_text())
    assert cfg_file["weights_sha256"] == file_sha256(folder / "model.safetensors")
    assert cfg_file["demo"] is True and cfg_file["code_version"] and cfg_file["name"] == "tiny-test"
    assert cfg_file["conditions"]["channels"] == ["sdf_cortex", "sdf_pial", "sdf_white", "edges", "ribbon"]
    assert cfg_file["grid"]["placement"] == "RAS-aligned, centred on the pial bounding-box centre"
    for path in (folder, folder / "model.safetensors"):
        net, cfg = load_model(path, "cpu")
        assert cfg == cfg_file and not net.training
        ref = tiny_model.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items())
    x = torch.randn(1, 6, 8, 8, 8)
    assert torch.equal(net(x, torch.tensor([3])), tiny_model.eval()(x, torch.tensor([3])))
    assert verify_model(folder) == cfg_file
    # saving is deterministic: same weights → same bytes → same checksum
    assert save_model(folder.parent / "again", tiny_model, tiny_config()) and \
        file_sha256(folder.parent / "again" / "model.safetensors") == cfg_file["weights_sha256"]


def test_channels_last_model_saves_identically(tmp_path, tiny_model):
    """Same weights → same bytes (memory format and repeated saves do not change the checksum)."""
    a = save_model(tmp_path / "a", tiny_model, tiny_config())
    for i in range(5):
        b = save_model(tmp_path / f"b{i}", tiny_model.to(memory_format=torch.channels_last_3d), tiny_config())
        assert file_sha256(a / "model.safetensors") == file_sha256(b / "model.safetensors")


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_weights_refused(folder, damage):
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    if damage == "flip":
        data[len(data) - 100] ^= 0xFF  # one byte of one weight
    else:
        data = data[: len(data) - 1000]
    w.write_bytes(bytes(data))
    for fn in (verify_model, lambda p: load_model(p, "cpu")):
        with pytest.raises(ModelError, match="checksum does not match") as exc:
            fn(folder)
        assert "model.safetensors" in str(exc.value) and exc.value.exit_code == ExitCode.DATA == 65


def test_missing_and_invalid_config(folder):
    cfg_path = folder / "config.json"
    good = cfg_path.read_text()
    cfg_path.write_text("{not json")
    with pytest.raises(ModelError, match="config.json.*JSON"):
        verify_model(folder)
    cfg = json.loads(good)
    del cfg["schedule"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="schedule"):
        load_model(folder)
    cfg_path.unlink()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model(folder / "model.safetensors")
    with pytest.raises(MissingInputError):
        load_model(folder / "nowhere")


def test_incompatible_weights_refused(tmp_path, folder):
    """Weights of another architecture with a matching checksum: names/shapes are checked."""
    other = save_model(tmp_path / "other", randomize(UNet3D(tiny_arch(base=4))), tiny_config(base=4))
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights_sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(cfg))
    for fn in (verify_model, load_model):
        with pytest.raises(ModelError, match="do not fit the architecture.*wrong shape"):
            fn(folder)
    cfg["architecture"]["in_channels"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="input channels"):
        verify_model(folder)


def test_not_safetensors(folder):
    (folder / "model.safetensors").write_bytes(b"\x80\x02garbage" * 10)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256(b"\x80\x02garbage" * 10).hexdigest()
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="safetensors"):
        verify_model(folder)
    with pytest.raises(ModelError, match="safetensors"):
        load_model(folder)


def test_training_state_roundtrip(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "step": torch.tensor(4.0),
               "rng": torch.Generator().manual_seed(3).get_state()}
    save_training_state(tmp_path / "s", tensors, {"step": 4, "x": [1.5, float("inf")]})
    got, meta = load_training_state(tmp_path / "s")
    assert all(torch.equal(got[k], v) for k, v in tensors.items()) and meta["step"] == 4
    assert meta["x"][1] == float("inf")
    assert load_training_state(tmp_path / "none") is None
    p = tmp_path / "s" / "state.safetensors"
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(ModelError, match="checksum does not match"):
        load_training_state(tmp_path / "s")


def test_a_path_that_is_no_model_is_named_as_such(tmp_path):
    """--model pointing at an empty folder or at some other file: the message says what a model is, naming the path
    (not a config.json beside it)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a model folder") as info:
        load_model(empty)
    assert info.value.path == empty
    other = tmp_path / "README.md"
    other.write_text("# not weights")
    with pytest.raises(ModelError, match=r"not a model: give a model folder .* or its \.safetensors file") as info:
        load_model(other)
    assert info.value.path == other
