"""Fixtures for the tests against a live SLURM cluster (``scripts/slurm_test.sh`` starts one).

The cluster tests are marked ``slurm`` (``make test`` deselects them). Without a reachable cluster they are
skipped, unless ``COR2VOX_REQUIRE_SLURM=1`` (set by ``scripts/slurm_test.sh``) turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from slurm_helpers import TIMINGS


def make_tiny_model(folder: Path) -> Path:
    """An untrained 2-level UNet on a 32×40×32 grid at 5 mm: synthesis in well under a second."""
    import torch

    from cor2vox_bids.diffusion.checkpoint import make_model_config, save_model
    from cor2vox_bids.diffusion.unet import UNet3D, UNetConfig

    arch = UNetConfig(image_size=32, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                      attention_resolutions=(), middle_attention=False, num_head_channels=8, norm_groups=4)
    torch.manual_seed(0)
    save_model(folder, UNet3D(arch), make_model_config(arch, (32, 40, 32), 5.0, name="tiny-test", demo=True))
    return folder


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The SLURM_CONF of a live cluster whose node takes jobs."""
    conf = os.environ.get("SLURM_CONF")
    why = None
    if not conf or not Path(conf).is_file():
        why = "SLURM_CONF is not set to a file"
    elif shutil.which("sinfo") is None:
        why = "sinfo is not installed"
    else:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        if res.returncode != 0 or not any(s.startswith(("idle", "mixed", "alloc")) for s in res.stdout.split()):
            why = f"no idle SLURM node: {res.stdout.strip()} {res.stderr.strip()}"
    if why:
        if os.environ.get("COR2VOX_REQUIRE_SLURM") == "1":
            pytest.fail(f"SLURM cluster required: {why}")
        pytest.skip(f"no SLURM cluster ({why}); run scripts/slurm_test.sh")
    return conf


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def slurm_demo(tmp_path_factory) -> dict[str, Path]:
    """Two demo participants (no site 2), built once; in a folder the jobs can read (shared on a real cluster)."""
    pytest.importorskip("smriprep_freesurfer732", reason="demo extra not installed")
    from cor2vox_bids.demodata import build_demo_dataset

    root = tmp_path_factory.mktemp("slurmdemo")
    return build_demo_dataset(root, participants=2, seed=0, site2=False, log=lambda *_: None)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("SLURM test timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items()))
