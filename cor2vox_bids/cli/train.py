"""``cor2vox-train BIDS_DIR MODEL_DIR``: train a Cor2Vox bridge model from T1w images and their surfaces.

Conditioning maps and the T1w on the model grid are computed with the same steps the BIDS App uses
(``cor2vox_bids.steps``) and cached in the work dir; training state is checkpointed there too, so rerunning the
same command after an interruption resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import steps
from ..errors import Cor2VoxError, ExitCode, MissingInputError, UsageError
from ..settings import Settings, TrainSettings
from .parser import parse_settings

PROG = "cor2vox-train"
DESCRIPTION = ("cor2vox-train: train the Brownian-bridge UNet of Cor2Vox on a BIDS dataset with FreeSurfer or "
               "sMRIPrep surfaces. Rerun the same command with the same work dir to resume.")
LOGGER = logging.getLogger("cor2vox_bids.train")
DEFAULT_SHAPES = {"demo": [80, 96, 80], "paper": [128, 128, 128]}


def model_config_for(settings: TrainSettings, summary: dict) -> dict:
    """The complete model config (architecture, grid, conditions, schedule) for these settings."""
    from ..diffusion.checkpoint import make_model_config
    from ..diffusion.unet import demo_config, paper_config

    shape = settings.grid_shape or DEFAULT_SHAPES[settings.architecture]
    if settings.architecture == "paper":
        arch = paper_config()
        if settings.base_channels:
            from dataclasses import replace

            arch = replace(arch, base_channels=settings.base_channels)
    else:
        arch = demo_config(image_size=max(shape), base_channels=settings.base_channels or 16)
    return make_model_config(arch, shape, settings.spacing_mm, name=settings.name, demo=settings.demo,
                             training=summary)


def prepare_pairs(settings: TrainSettings, config: dict, cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(condition, image) arrays per participant, computed once and cached as ``.npz`` in ``cache``."""
    from ..diffusion.conditioning import condition_from_array
    from ..inputs import collect_inputs
    from ..workflows.base import participant_spec

    app = Settings(bids_dir=settings.bids_dir, output_dir=cache / "unused", analysis_level="participant",
                   participant_label=settings.participant_label, fs_subjects_dir=settings.fs_subjects_dir,
                   derivatives=settings.derivatives, skip_bids_validation=True)
    ready, failed, _ = collect_inputs(app)
    for f in failed:
        LOGGER.warning("left out %s: %s", f.key, f.message)
    shape, spacing = config["grid"]["shape"], config["grid"]["spacing_mm"]
    tag = f"{'x'.join(map(str, shape))}_{spacing:g}mm_clip{config['conditions']['sdf_clip_mm']:g}"
    pairs = {}
    for p in ready:
        if p.t1w is None:
            LOGGER.warning("left out %s: no T1w to learn from", p.key)
            continue
        cached = cache / f"{p.key}_{tag}.npz"
        if not cached.is_file():
            t0 = time.perf_counter()
            folder = cache / p.key
            folder.mkdir(parents=True, exist_ok=True)
            hemis, _ = steps.load_hemispheres(participant_spec(p, app))
            steps.save_hemispheres(folder / "hemispheres.npz", hemis)
            steps.make_conditioning(folder / "hemispheres.npz", shape, spacing, folder / "maps.npz")
            maps, _ = steps.read_maps(folder / "maps.npz")
            real = steps.real_on_grid(p.t1w, folder / "maps.npz", folder / "real_on_grid.nii.gz")
            image = 2.0 * np.asarray(nib.load(str(real)).dataobj, dtype=np.float32) - 1.0  # back to [-1, 1]
            tmp = cached.with_suffix(".part.npz")
            np.savez(tmp, condition=condition_from_array(maps, config), image=image[None].astype(np.float32))
            tmp.replace(cached)
            LOGGER.info("cached %s in %.1f s", p.key, time.perf_counter() - t0)
        with np.load(cached) as data:
            pairs[p.key] = (data["condition"], data["image"])
    if not pairs:
        raise MissingInputError("no participant with both a T1w and surfaces to train on", settings.bids_dir)
    return pairs


def split(keys: list[str], validation: list[str] | None) -> tuple[list[str], list[str]]:
    """Training and validation participants (default: the last two are held out, if ≥ 4 participants)."""
    if validation:
        val = [k for k in keys if k.split("_")[0][4:] in validation]
        missing = set(validation) - {k.split("_")[0][4:] for k in val}
        if missing:
            raise UsageError(f"validation label(s) {sorted(missing)} not among the training participants")
    else:
        val = keys[-2:] if len(keys) >= 4 else []
    return [k for k in keys if k not in val], val


def run(settings: TrainSettings) -> Path:
    from ..diffusion.training import train

    out = Path(settings.output_model)
    work = Path(settings.work_dir) if settings.work_dir else out.parent / f"{out.name}_work"
    if settings.nthreads:
        import torch

        torch.set_num_threads(settings.nthreads)
    from ..diffusion.training import auto_ema_decay

    ema_decay = settings.ema_decay if settings.ema_decay is not None else auto_ema_decay(settings.steps,
                                                                                         settings.ema_every)
    config = model_config_for(settings, {})
    pairs = prepare_pairs(settings, config, work / "cache")
    train_keys, val_keys = split(sorted(pairs), settings.validation_label)
    summary = {"dataset": str(Path(settings.bids_dir).name), "participants_train": train_keys,
               "participants_validation": val_keys, "steps": settings.steps, "batch_size": settings.batch_size,
               "accumulation": settings.accumulation, "lr": settings.lr, "ema_decay": ema_decay,
               "seed": settings.random_seed}
    config = model_config_for(settings, summary)
    LOGGER.info("training on %d participant(s), validating on %d: %s", len(train_keys), len(val_keys), val_keys)
    t0 = time.perf_counter()
    folder = train(config, [pairs[k] for k in train_keys], [pairs[k] for k in val_keys], work / "train",
                   steps=settings.steps, batch_size=settings.batch_size, accumulation=settings.accumulation,
                   lr=settings.lr, plateau_patience=settings.plateau_patience, ema_decay=ema_decay,
                   ema_every=settings.ema_every, ema_start=settings.ema_start, val_every=settings.val_every,
                   seed=settings.random_seed, device=settings.device, precision=settings.precision,
                   resume=not settings.no_resume, log=LOGGER.info)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(folder).iterdir():
        shutil.copyfile(f, out / f.name)
    for extra in ("train_log.tsv", "loss_curve.png"):
        if (work / "train" / extra).is_file():
            shutil.copyfile(work / "train" / extra, out / extra)
    (out / "training_run.json").write_text(json.dumps(
        {"settings": settings.model_dump(mode="json"), "wall_seconds_this_run": time.perf_counter() - t0},
        indent=2) + "\n")
    LOGGER.info("model written to %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(TrainSettings, argv, PROG, DESCRIPTION)
    except Cor2VoxError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    from .run import setup_logging

    setup_logging(settings.verbose)
    try:
        run(settings)
    except Cor2VoxError as exc:
        LOGGER.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        LOGGER.error("interrupted; rerun the same command to resume")
        return 130
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
