"""``cor2vox-train BIDS_DIR MODEL_DIR``: train a Cor2Vox bridge model from T1w images and their surfaces.

Conditioning maps and the T1w on the model grid are computed with the same steps the BIDS App uses
(``cor2vox_bids.interfaces``) and cached in the work dir; training state is checkpointed there too, so rerunning the
same command after an interruption resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from ..diffusion.distributed import build_once, env_world
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


#: one participant of the training set: (subject label, session label or None), as ``bids.inputs`` finds them
Participant = tuple[str, str | None]


def prepare_pairs(settings: TrainSettings, config: dict,
                  cache: Path) -> dict[Participant, tuple[np.ndarray, np.ndarray]]:
    """(condition, image) arrays per participant, computed once and cached as ``.npz`` in ``cache``."""
    from ..bids import naming
    from ..bids.inputs import collect_inputs
    from ..diffusion.conditioning import condition_from_array
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
    usable = []
    for p in ready:
        if p.t1w is None:
            LOGGER.warning("left out %s: no T1w to learn from", p.key)
        else:
            usable.append(p)

    def build(p, cached: Path) -> None:
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

    # several processes (torchrun) share the work: each participant is built once, under a file lock
    info = env_world()
    build_once([(cache / f"{p.key}_{tag}.npz", functools.partial(build, p)) for p in usable], info.rank, info.world)
    pairs = {}
    for p in usable:
        cached = cache / f"{p.key}_{tag}.npz"
        with np.load(cached) as data:
            pairs[(p.subject, p.session)] = (data["condition"], data["image"])
    if not pairs:
        raise MissingInputError("no participant with both a T1w and surfaces to train on", settings.bids_dir)
    return pairs


def split(participants: list[Participant], validation: list[str] | None) -> tuple[list[Participant], list[Participant]]:
    """Training and validation participants (``--validation-label`` subject labels hold out every session of
    those subjects; default: the last two are held out, if ≥ 4 participants)."""
    if validation:
        val = [p for p in participants if p[0] in validation]
        missing = set(validation) - {subject for subject, _ in val}
        if missing:
            raise UsageError(f"validation label(s) {sorted(missing)} not among the training participants")
    else:
        val = participants[-2:] if len(participants) >= 4 else []
    return [p for p in participants if p not in val], val


PAPER_RECIPE = {"lr": 1e-4, "batch_size": 2, "accumulation": 2, "plateau_patience": 3000, "plateau_cooldown": 3000,
                "plateau_on": "raw", "ema_decay": 0.995, "ema_every": 8, "ema_start_minibatches": 30000}


def training_options(settings: TrainSettings) -> TrainSettings:
    """``settings`` with the paper's training recipe for every training option not given (``--architecture paper``).

    The authors' configuration: Adam 1e-4, batch 2 with 2 accumulation steps, ReduceLROnPlateau (factor 0.5,
    patience 3000, cooldown 3000) on the raw loss, EMA 0.995 every 8 steps from mini-batch 30000.
    """
    if settings.architecture != "paper":
        return settings
    given = settings.model_fields_set
    update = {k: v for k, v in PAPER_RECIPE.items() if k not in given}
    if "ema_start" in given:
        update.pop("ema_start_minibatches", None)
    return settings.model_copy(update=update)


def ema_start_step(settings: TrainSettings) -> int:
    """The first optimizer step with EMA updates (``--ema-start-minibatches`` counts mini-batches)."""
    if settings.ema_start_minibatches is not None:
        return -(-settings.ema_start_minibatches // settings.accumulation)
    return settings.ema_start


def run(settings: TrainSettings) -> Path:
    from ..diffusion.distributed import init_distributed, shutdown_distributed
    from ..diffusion.training import auto_ema_decay, train

    settings = training_options(settings)
    out = Path(settings.output_model)
    work = Path(settings.work_dir) if settings.work_dir else out.parent / f"{out.name}_work"
    if settings.nthreads:
        import torch

        torch.set_num_threads(settings.nthreads)

    ema_decay = settings.ema_decay if settings.ema_decay is not None else auto_ema_decay(settings.steps,
                                                                                         settings.ema_every)
    ema_start = ema_start_step(settings)
    init_weights, init_cfg, init_record = load_init(settings)
    config = model_config_for(settings, {}, init_cfg)
    pairs = prepare_pairs(settings, config, work / "cache")
    from ..bids.inputs import participant_key

    train_ids, val_ids = split(sorted(pairs, key=lambda p: participant_key(*p)), settings.validation_label)
    train_keys, val_keys = [participant_key(*p) for p in train_ids], [participant_key(*p) for p in val_ids]
    # the process group is joined after the caches exist: building them may take longer than its timeout
    par, device = init_distributed(settings.device, settings.dist_timeout)
    if par.rank:  # from here on rank 0 speaks for all; the others report warnings and errors only
        logging.getLogger("cor2vox_bids").setLevel(logging.WARNING)
    try:
        summary = {"dataset": str(Path(settings.bids_dir).name), "participants_train": train_keys,
                   "participants_validation": val_keys, "steps": settings.steps, "batch_size": settings.batch_size,
                   "accumulation": settings.accumulation, "lr": settings.lr, "ema_decay": ema_decay,
                   "seed": settings.random_seed}
        config = model_config_for(settings, summary, init_cfg)
        LOGGER.info("training on %d participant(s), validating on %d: %s", len(train_keys), len(val_keys),
                    val_keys)
        t0 = time.perf_counter()
        folder = train(config, [pairs[p] for p in train_ids], [pairs[p] for p in val_ids], work / "train",
                       steps=settings.steps, batch_size=settings.batch_size, accumulation=settings.accumulation,
                       lr=settings.lr, plateau_patience=settings.plateau_patience,
                       plateau_cooldown=settings.plateau_cooldown, plateau_on=settings.plateau_on,
                       ema_decay=ema_decay, ema_every=settings.ema_every, ema_start=ema_start,
                       val_every=settings.val_every, seed=settings.random_seed, device=device,
                       precision=settings.precision, grad_checkpointing=settings.grad_checkpointing,
                       resume=not settings.no_resume, init_weights=init_weights, init_info=init_record,
                       log=LOGGER.info)
        if par.is_main:
            out.mkdir(parents=True, exist_ok=True)
            for f in Path(folder).iterdir():
                shutil.copyfile(f, out / f.name)
            for extra in ("train_log.tsv", "loss_curve.png"):
                if (work / "train" / extra).is_file():
                    shutil.copyfile(work / "train" / extra, out / extra)
            (out / "training_run.json").write_text(json.dumps(
                {"settings": settings.model_dump(mode="json"), "world_size": par.world,
                 "wall_seconds_this_run": time.perf_counter() - t0}, indent=2) + "\n")
            LOGGER.info("model written to %s", out)
    finally:
        shutdown_distributed()
    return out


def _rank_logging(info) -> None:
    """Under torchrun every log line names its rank (ranks other than 0 go quiet once training starts)."""
    if not info.enabled:
        return
    for handler in logging.getLogger("cor2vox_bids").handlers:
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s [rank {info.rank}/{info.world}] %(name)s %(levelname)s: %(message)s", "%y%m%d-%H:%M:%S"))


def _lost_peer(exc: BaseException) -> bool:
    """Whether an exception of a data-parallel run means another process died, hung or cut the connection."""
    from torch.distributed import DistError

    if isinstance(exc, DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(m in text for m in (
        "gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out", "ProcessGroup"))


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(TrainSettings, argv, PROG, DESCRIPTION)
        info = env_world()
    except Cor2VoxError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    from .run import setup_logging

    setup_logging(settings.verbose)
    _rank_logging(info)
    try:
        run(settings)
    except Cor2VoxError as exc:
        LOGGER.error("%s", exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        LOGGER.error("interrupted; rerun the same command to resume")
        return 130
    except Exception as exc:
        if not (info.enabled and _lost_peer(exc)):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        LOGGER.error("lost contact with the other processes (one failed, was killed or did not answer within "
                     "--dist-timeout %g s): %s. Rerun the same command to resume from the last checkpoint",
                     settings.dist_timeout, first)
        return int(ExitCode.TEMPFAIL)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
