"""``cor2vox-train BIDS_DIR MODEL_DIR``: train a Cor2Vox bridge model from T1w images and their surfaces.

Conditioning maps and the T1w on the model grid are computed with the same steps the BIDS App uses
(``cor2vox_bids.interfaces``) and cached in the work dir; training state is checkpointed there too, so rerunning the
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

from ..errors import Cor2VoxError, ExitCode, MissingInputError, UsageError
from ..settings import Settings, TrainSettings
from .parser import parse_settings

PROG = "cor2vox-train"
DESCRIPTION = ("cor2vox-train: train the Brownian-bridge UNet of Cor2Vox on a BIDS dataset with FreeSurfer or "
               "sMRIPrep surfaces. Rerun the same command with the same work dir to resume.")
LOGGER = logging.getLogger("cor2vox_bids.train")
DEFAULT_SHAPES = {"demo": [80, 96, 80], "paper": [128, 128, 128]}


def _architecture(settings: TrainSettings, shape: list[int]):
    from ..diffusion.unet import demo_config, paper_config

    if settings.architecture == "paper":
        arch = paper_config()
        if settings.base_channels:
            from dataclasses import replace

            arch = replace(arch, base_channels=settings.base_channels)
        return arch
    return demo_config(image_size=max(shape), base_channels=settings.base_channels or 16)


def model_config_for(settings: TrainSettings, summary: dict, init_cfg: dict | None = None) -> dict:
    """The complete model config (architecture, grid, conditions, schedule) for these settings.

    With ``init_cfg`` (the config of the ``--init-from`` model) the sections that give the weights their
    meaning (architecture, grid, intensity, conditions, schedule) are that model's.
    """
    from ..diffusion.checkpoint import MODEL_SECTIONS, make_model_config

    if init_cfg is not None:
        cfg = {"name": settings.name, "demo": settings.demo,
               **{k: json.loads(json.dumps(init_cfg[k])) for k in MODEL_SECTIONS}, "training": dict(summary)}
        return cfg
    shape = settings.grid_shape or DEFAULT_SHAPES[settings.architecture]
    return make_model_config(_architecture(settings, shape), shape, settings.spacing_mm, name=settings.name,
                             demo=settings.demo, training=summary)


def init_conflicts(settings: TrainSettings, init_cfg: dict) -> list[str]:
    """Model options given on the command line that disagree with the ``--init-from`` model's config."""
    from ..diffusion.unet import UNetConfig

    given = settings.model_fields_set
    shape = [int(s) for s in init_cfg["grid"]["shape"]]
    out = []
    if "grid_shape" in given and list(settings.grid_shape or []) != shape:
        out.append(f"--grid-shape {' '.join(map(str, settings.grid_shape or []))} (the model's grid is "
                   f"{' '.join(map(str, shape))})")
    if "spacing_mm" in given and abs(settings.spacing_mm - float(init_cfg["grid"]["spacing_mm"])) > 1e-9:
        out.append(f"--spacing {settings.spacing_mm:g} (the model's is {float(init_cfg['grid']['spacing_mm']):g})")
    if given & {"architecture", "base_channels"}:
        want = _architecture(settings, list(settings.grid_shape or shape)).to_dict()
        have = UNetConfig.from_dict(init_cfg["architecture"]).to_dict()
        diff = [f"{k} {want[k]} vs {have.get(k)}" for k in want if want[k] != have.get(k)]
        if diff:
            out.append(f"--architecture {settings.architecture}"
                       f"{f' --base-channels {settings.base_channels}' if settings.base_channels else ''} "
                       f"(differs from the model in {', '.join(diff)})")
    return out


def load_init(settings: TrainSettings) -> tuple[dict | None, dict | None, dict | None]:
    """(weights, config, record) of the ``--init-from`` model, or Nones; bad models raise 64/65/66 errors."""
    if settings.init_from is None:
        return None, None, None
    from ..diffusion.checkpoint import load_init_weights

    weights, cfg, sha = load_init_weights(settings.init_from)
    if not cfg.get("weights_sha256"):
        LOGGER.warning("%s records no weights sha256; its weights have sha256 %s", settings.init_from, sha)
    bad = init_conflicts(settings, cfg)
    if bad:
        raise UsageError("--init-from model is incompatible with the options given: " + "; ".join(bad)
                         + ". Leave these options out to use the model's own", settings.init_from)
    record = {"name": cfg.get("name"), "folder": Path(settings.init_from).name, "weights_sha256": sha,
              "code_version": cfg.get("code_version"), "steps": (cfg.get("training") or {}).get("steps")}
    LOGGER.info("initialising from %s (%s, sha256 %s)", settings.init_from, cfg.get("name"), sha[:12])
    return weights, cfg, record


def prepare_pairs(settings: TrainSettings, config: dict, cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(condition, image) arrays per participant, computed once and cached as ``.npz`` in ``cache``."""
    from ..diffusion.conditioning import condition_from_array
    from ..bids import naming
    from ..bids.inputs import collect_inputs
    from ..geometry.surfaces import save_hemispheres
    from ..interfaces.surfaces import load_and_validate
    from ..interfaces.synthesis import make_conditioning, read_maps, real_on_grid

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
            hemis, _ = load_and_validate(p.hemis, p.source, p.orig, p.t1w)
            save_hemispheres(folder / "hemispheres.npz", hemis)
            make_conditioning(folder / "hemispheres.npz", shape, spacing, folder / "maps.npz")
            maps, _ = read_maps(folder / "maps.npz")
            real = real_on_grid(p.t1w, folder / "maps.npz", folder / naming.work_image_name("real_on_grid"))
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
    init_weights, init_cfg, init_record = load_init(settings)
    config = model_config_for(settings, {}, init_cfg)
    pairs = prepare_pairs(settings, config, work / "cache")
    train_keys, val_keys = split(sorted(pairs), settings.validation_label)
    summary = {"dataset": str(Path(settings.bids_dir).name), "participants_train": train_keys,
               "participants_validation": val_keys, "steps": settings.steps, "batch_size": settings.batch_size,
               "accumulation": settings.accumulation, "lr": settings.lr, "ema_decay": ema_decay,
               "seed": settings.random_seed}
    config = model_config_for(settings, summary, init_cfg)
    LOGGER.info("training on %d participant(s), validating on %d: %s", len(train_keys), len(val_keys), val_keys)
    t0 = time.perf_counter()
    folder = train(config, [pairs[k] for k in train_keys], [pairs[k] for k in val_keys], work / "train",
                   steps=settings.steps, batch_size=settings.batch_size, accumulation=settings.accumulation,
                   lr=settings.lr, plateau_patience=settings.plateau_patience, ema_decay=ema_decay,
                   ema_every=settings.ema_every, ema_start=settings.ema_start, val_every=settings.val_every,
                   seed=settings.random_seed, device=settings.device, precision=settings.precision,
                   resume=not settings.no_resume, init_weights=init_weights, init_info=init_record,
                   log=LOGGER.info)
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
