"""Training loop of the Brownian-bridge UNet (Adam + ReduceLROnPlateau + EMA), resumable and deterministic.

Output folder layout (``out_dir``)::

    state/            training state for resume: state.safetensors (model, EMA, Adam moments, RNG states)
                      + state.json (step, lr scheduler, smoothed loss, arguments, sha256) — no pickle
    train_log.tsv     step, loss, loss_smooth, lr, seconds, steps_per_s, val_ssim, val_mae
    loss_curve.png    training loss (raw and smoothed) and validation SSIM over steps
    val/step-NNNNNN.png  mid slices (3 axes) of y, the EMA model's sample and the target per val pair
    model/            the final EMA weights as a model folder (save_model) — returned

Determinism: the network initialisation, the timesteps/noise (one seeded ``torch.Generator``) and the data
order (a permutation per epoch from ``numpy.random.default_rng([seed, epoch])``) depend only on ``seed``;
``torch.use_deterministic_algorithms(True)`` is on during training. On the CPU an interrupted run resumed
from ``state/`` reaches bit-identical weights to an uninterrupted one.

Validation SSIM/MAE compare the EMA model's ``val_steps``-step sample (seed ``seed``) with the target,
both mapped to [0, 1] (SSIM with data_range 1; note SSIM is not shift-invariant, so it differs from SSIM
on [−1, 1] with data_range 2).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError, OutputError, UsageError
from .checkpoint import load_training_state, save_model, save_training_state
from .conditioning import bridge_channel, image_to_output
from .distributed import all_mean, barrier, current, rank_indices
from .inference import resolve_device, synthesize
from .metrics import mae, ssim
from .precision import autocast, resolve_precision, uses_channels_last
from .schedule import BridgeSchedule, l1_loss
from .unet import UNet3D, UNetConfig

__all__ = ["train", "TrainingPair", "auto_ema_decay"]

TrainingPair = tuple[np.ndarray, np.ndarray]
LOG_COLUMNS = ("step", "loss", "loss_smooth", "lr", "seconds", "steps_per_s", "val_ssim", "val_mae",
               "val_ssim_raw")


def auto_ema_decay(steps: int, ema_every: int) -> float:
    """EMA decay whose averaging horizon ``ema_every / (1 − decay)`` is min(1600, steps / 10) steps."""
    horizon = max(min(1600.0, steps / 10.0), float(ema_every) * 2.0)
    return 1.0 - ema_every / horizon


def _quiet(message: str) -> None:
    """The log of ranks other than 0."""


def _check_ranks_agree(model: torch.nn.Module, ema: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
                       device: torch.device) -> None:
    """Under DDP every rank must hold the same weights, EMA and learning rate (rank 0 saves them for all):
    compare a fingerprint across ranks before each checkpoint; a mismatch is a bug, reported as one."""
    import torch.distributed as dist

    with torch.no_grad():
        fp = torch.stack([sum(p.double().sum() for p in model.parameters()),
                          sum(p.double().square().sum() for p in model.parameters()),
                          sum(p.double().sum() for p in ema.parameters()),
                          torch.tensor(float(opt.param_groups[0]["lr"]), dtype=torch.float64, device=device)
                          ]).to(device)
    lo, hi = fp.clone(), fp.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    # float64 sums of identical weights may differ in the last bits between GPU models; a real divergence does not
    if not torch.allclose(lo, hi, rtol=1e-8, atol=0.0):
        raise RuntimeError(f"data-parallel ranks diverged at step {step} (weights/EMA/lr fingerprints differ: "
                           f"{lo.tolist()} vs {hi.tolist()}); please report this")


def _resume_differences(saved: Mapping, now: Mapping) -> list[str]:
    """Why a saved state cannot be continued with these arguments (empty: it can).

    The architecture is compared after normalising (configs written before a field existed get its default);
    the global batch may be split over another number of processes, and batch × accumulation may be traded
    as long as the samples per optimizer step stay the same (the data stream continues where it stopped).
    """
    out = []
    for k in ("seed", "n_train", "schedule", "precision"):
        if saved.get(k) != now[k]:
            out.append(f"{k} ({saved.get(k)} saved, {now[k]} now)")
    try:
        same = UNetConfig.from_dict(saved.get("architecture", {})).to_dict() == now["architecture"]
    except (TypeError, ValueError):
        same = False
    if not same:
        out.append("architecture")
    per_step = int(saved.get("batch_size", 0)) * int(saved.get("accumulation", 0))
    if per_step != now["batch_size"] * now["accumulation"]:
        out.append(f"samples per optimizer step (global batch × accumulation: {per_step} saved, "
                   f"{now['batch_size']} × {now['accumulation']} now)")
    return out


def _check_pairs(pairs: Sequence[TrainingPair], n_cond: int, shape: tuple[int, ...], what: str) -> None:
    for i, (c, x) in enumerate(pairs):
        if tuple(np.shape(c)) != (n_cond, *shape) or tuple(np.shape(x)) != (1, *shape):
            raise UsageError(f"{what} pair {i}: condition {np.shape(c)} / image {np.shape(x)} do not match "
                             f"({n_cond}, *{shape}) / (1, *{shape})")


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                            groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


class _Log:
    """Training log TSV (rewritten up to the resumed step, then appended to line by line)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows: list[dict] = []
        if resume_step and path.is_file():
            lines = path.read_text().splitlines()[1:]
            for line in lines:
                vals = line.split("\t")
                row = dict(zip(LOG_COLUMNS, vals))
                if int(row["step"]) <= resume_step:
                    self.rows.append({k: (float(v) if v else math.nan) for k, v in row.items()})
        with open(path, "w") as f:
            f.write("\t".join(LOG_COLUMNS) + "\n")
            for r in self.rows:
                f.write(self._fmt(r))

    @staticmethod
    def _fmt(r: Mapping) -> str:
        out = []
        for k in LOG_COLUMNS:
            v = r.get(k, math.nan)
            out.append(str(int(v)) if k == "step" else ("" if v is None or math.isnan(v) else f"{v:.6g}"))
        return "\t".join(out) + "\n"

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(self._fmt(row))

    def set_val(self, step: int, val_ssim: float, val_mae: float, val_ssim_raw: float) -> None:
        for r in reversed(self.rows):
            if int(r["step"]) == step:
                r["val_ssim"], r["val_mae"], r["val_ssim_raw"] = val_ssim, val_mae, val_ssim_raw
        with open(self.path, "w") as f:
            f.write("\t".join(LOG_COLUMNS) + "\n")
            for r in self.rows:
                f.write(self._fmt(r))


def _plot_loss(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a project dependency
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], lw=0.5, alpha=0.5, label="L1 loss")
    ax.plot(steps, [r["loss_smooth"] for r in rows], lw=1.5, label="smoothed")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("L1 loss (y − x0)")
    ax.set_yscale("log")
    val = [(r["step"], r["val_ssim"]) for r in rows if not math.isnan(r.get("val_ssim", math.nan))]
    if val:
        ax2 = ax.twinx()
        ax2.plot(*zip(*val), "o-", color="C3", label="val SSIM (EMA)")
        raw = [(r["step"], r["val_ssim_raw"]) for r in rows if not math.isnan(r.get("val_ssim_raw", math.nan))]
        if raw:
            ax2.plot(*zip(*raw), "s--", color="C2", label="val SSIM (raw weights)")
        ax2.set_ylabel("validation SSIM")
    # one legend for both axes, below the plot, where it covers no curve
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="lower center", ncol=len(handles), frameon=False,
               fontsize="small")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path)
    plt.close(fig)


def _plot_val(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], step: int, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return
    rows = 3 * len(panels)
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), dpi=80, squeeze=False)
    for p, (y, sample, target) in enumerate(panels):
        for r, (name, vol) in enumerate((("y (cortex SDF)", y), ("sample (EMA)", sample), ("target", target))):
            c = [s // 2 for s in vol.shape]
            for a, sl in enumerate((vol[c[0]], vol[:, c[1]], vol[:, :, c[2]])):
                ax = axes[3 * p + r, a]
                ax.imshow(np.rot90(sl), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if a == 0:
                    ax.set_ylabel(f"{p}: {name}", fontsize=7)
    fig.suptitle(f"step {step}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def train(model_config: Mapping, train_set: Sequence[TrainingPair], val_set: Sequence[TrainingPair],
          out_dir: str | Path, *, steps: int, batch_size: int = 1, accumulation: int = 1, lr: float = 1e-4,
          plateau_patience: int = 3000, plateau_factor: float = 0.5, min_lr: float = 5e-7,
          loss_smoothing: float = 0.98, ema_decay: float = 0.995, ema_every: int = 8,
          plateau_cooldown: int = 0, plateau_on: str = "smoothed",
          ema_start: int | None = None, val_every: int | None = None, val_samples: int = 2,
          val_steps: int = 10, checkpoint_every: int | None = None, seed: int = 0, device: str = "auto",
          precision: str = "auto", resume: bool = True, grad_checkpointing: bool = False,
          init_weights: Mapping[str, torch.Tensor] | None = None, init_info: Mapping | None = None,
          progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Train (or resume training) a bridge UNet on cached pairs; returns the EMA model folder.

    ``model_config`` is a complete model config (``checkpoint.make_model_config``); pairs are
    ``(condition float32 (C, D, H, W) in [−1, 1], image float32 (1, D, H, W) in [−1, 1])``.
    ``steps`` counts optimizer steps (each ``accumulation`` micro-batches of ``batch_size``).
    The plateau scheduler sees the exponentially smoothed training loss (factor ``loss_smoothing``; the
    demo choice) or, with ``plateau_on="raw"``, the raw loss of each step (the paper's) after every optimizer
    step; ``plateau_patience`` and ``plateau_cooldown`` are in optimizer steps. EMA weights are updated every
    ``ema_every`` steps, plain copies of the weights before ``ema_start`` (default ``steps // 10``).
    Validation (and its PNG) runs every ``val_every`` steps and at the end; the training state is saved
    every ``checkpoint_every`` steps (default: at validations) and at the end.

    ``init_weights`` (a state dict of the same architecture, e.g. from ``checkpoint.load_init_weights``)
    starts a fresh run from those weights instead of a random initialisation (fine-tuning): new optimizer,
    step 0, EMA starting from the loaded weights. ``init_info`` (e.g. name and sha256 of the source model)
    is kept in the training state and written to the model config as ``training.init_from``. A saved state
    to resume from wins over ``init_weights``.

    Data parallel: when a ``torch.distributed`` process group is initialised (``distributed.init_distributed``)
    the model is wrapped in ``DistributedDataParallel``; ``batch_size`` is per process, the global batch is
    ``world × batch_size``, and the run equals a single-process run with the global batch (same samples, same
    timesteps and noise; see ``distributed``). Only rank 0 validates and writes logs, figures, the training
    state and the model folder; every rank returns the model folder's path once it is written.
    """
    if steps < 1 or batch_size < 1 or accumulation < 1 or ema_every < 1:
        raise UsageError("steps, batch_size, accumulation and ema_every must be positive")
    if plateau_on not in ("smoothed", "raw"):
        raise UsageError(f"plateau_on must be 'smoothed' or 'raw', not {plateau_on!r}")
    if not train_set:
        raise UsageError("the training set is empty")
    cfg = copy.deepcopy(dict(model_config))
    arch = UNetConfig.from_dict(cfg["architecture"])
    schedule = BridgeSchedule.from_dict(cfg["schedule"])
    shape = tuple(int(s) for s in cfg["grid"]["shape"])
    n_cond = len(cfg["conditions"]["channels"])
    if arch.in_channels != n_cond + 1:
        raise UsageError(f"architecture expects {arch.in_channels} input channels, conditions give {n_cond + 1}")
    _check_pairs(train_set, n_cond, shape, "training")
    _check_pairs(val_set, n_cond, shape, "validation")
    yi = bridge_channel(cfg)
    ema_start = steps // 10 if ema_start is None else int(ema_start)
    horizon = ema_every / max(1.0 - ema_decay, 1e-12)  # steps over which the EMA averages (1/e weight)
    if steps > ema_start and horizon > 0.5 * (steps - ema_start):
        log(f"warning: the EMA averages over about {horizon:.0f} steps (ema_every / (1 − ema_decay)), more than "
            f"half of the {steps - ema_start} steps after ema_start; the EMA weights will lag the trained ones "
            f"(lower ema_decay or raise ema_every/steps)")
    val_every = val_every or steps
    checkpoint_every = checkpoint_every or val_every

    par = current()
    main = par.is_main
    if not main:
        progress = False
        log = _quiet
    out = Path(out_dir)
    try:
        (out / "val").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the training folder ({exc})", out) from exc

    dev = resolve_device(device)
    try:
        prec = resolve_precision(precision, dev)
    except ValueError as exc:
        raise UsageError(f"--precision {precision}: {exc}") from exc
    memfmt = torch.channels_last_3d if uses_channels_last(prec, dev) else torch.contiguous_format
    gbatch = batch_size * par.world  # the global batch of one micro-step
    # "batch_size" is the global batch (== the batch of a single-process run, as in earlier states)
    args = {"architecture": arch.to_dict(), "seed": seed, "batch_size": gbatch, "accumulation": accumulation,
            "n_train": len(train_set), "schedule": schedule.to_dict(), "precision": prec,
            "world_size": par.world, "batch_per_process": batch_size}
    if par.enabled:
        log(f"data parallel: {par.world} processes ({par.backend}) × batch {batch_size} = global batch {gbatch}"
            f"{f' × {accumulation} accumulation' if accumulation > 1 else ''} = {gbatch * accumulation} samples "
            f"per optimizer step")

    det_before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        model = UNet3D(arch).to(dev).to(memory_format=memfmt)
        model.grad_checkpointing = grad_checkpointing
        ema = copy.deepcopy(model).eval().requires_grad_(False)
        opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999))
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=plateau_factor, patience=plateau_patience, min_lr=min_lr,
            cooldown=plateau_cooldown)
        scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
        gen = torch.Generator(device=dev).manual_seed(seed)
        step, loss_smooth, seconds = 0, math.nan, 0.0

        saved = load_training_state(out / "state") if resume else None
        if saved is not None:
            tensors, meta = saved
            diff = _resume_differences(meta["args"], args)
            if diff:
                raise UsageError(f"cannot resume: {'; '.join(diff)} differ from the saved training state; use "
                                 f"another output folder or resume=False", out / "state")
            if meta["args"].get("batch_size") != gbatch:
                log(f"resuming with global batch {gbatch} × {accumulation} instead of "
                    f"{meta['args']['batch_size']} × {meta['args'].get('accumulation')} (same samples per step)")
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            model.to(memory_format=memfmt)
            ema.to(memory_format=memfmt)
            _optimizer_from_tensors(opt, tensors, meta["optimizer_groups"])
            plateau.load_state_dict(meta["plateau"])
            if meta.get("scaler"):
                scaler.load_state_dict(meta["scaler"])
            gen.set_state(tensors["rng.generator"].to(torch.uint8))
            torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
            if dev.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"].to(torch.uint8), dev)
            step, loss_smooth, seconds = int(meta["step"]), float(meta["loss_smooth"]), float(meta["seconds"])
            saved_world = int(meta["args"].get("world_size", 1))
            log(f"resuming from step {step} in {out / 'state'}"
                + (f" (saved by a run of {saved_world} process(es), now {par.world})"
                   if saved_world != par.world else ""))
            if init_weights is not None:
                log("the saved training state wins: the initial weights given (--init-from) are ignored")
            args["init_from"] = meta["args"].get("init_from")
        else:
            if resume is False and (out / "state").exists():
                log(f"resume=False: starting afresh, the state in {out / 'state'} will be overwritten")
            if init_weights is not None:
                try:
                    model.load_state_dict(dict(init_weights), strict=True)
                except RuntimeError as exc:
                    raise ModelError(f"the initial weights do not fit the architecture ({exc})") from exc
                ema.load_state_dict(model.state_dict())  # the EMA starts from the loaded weights
                args["init_from"] = dict(init_info) if init_info is not None else {}
                log(f"starting from the weights of {dict(init_info or {}).get('name', 'the given model')} "
                    f"(fresh optimizer, step 0, EMA from these weights)")
        if par.rank:
            # every rank draws the same timesteps/noise stream (and takes its slice); the global RNG (dropout)
            # differs per rank and step
            torch.manual_seed(int(np.random.default_rng([seed, par.rank, step]).integers(2**62)))
        net: torch.nn.Module = model
        if par.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # the UNet has no buffers (GroupNorm); DDP broadcasts rank 0's parameters once here
            net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

        logf = _Log(out / "train_log.tsv", step) if main else None

        def save_state() -> None:
            if not main:
                return
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
            otensors, groups = _optimizer_to_tensors(opt)
            tensors.update(otensors)
            tensors["rng.generator"] = gen.get_state()
            tensors["rng.torch"] = torch.get_rng_state()
            if dev.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(dev)
            meta = {"step": step, "loss_smooth": loss_smooth, "seconds": seconds, "args": args,
                    "optimizer_groups": groups, "plateau": plateau.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None}
            save_training_state(out / "state", tensors, meta)

        def validate() -> tuple[float, float, float]:
            """Mean SSIM/MAE of the EMA model's samples and mean SSIM of the raw (training) weights' samples."""
            panels, ss, ms, raw = [], [], [], []
            for c, x in list(val_set)[:val_samples]:
                cond_t = torch.from_numpy(np.ascontiguousarray(c))[None].to(dev)
                sample = synthesize(ema, cfg, cond_t, [seed], steps=val_steps, precision=prec)[0]
                target = image_to_output(torch.from_numpy(x))
                ss.append(ssim(sample, target, data_range=1.0))
                ms.append(mae(sample, target))
                raw.append(ssim(synthesize(model, cfg, cond_t, [seed], steps=val_steps, precision=prec)[0],
                                target, data_range=1.0))
                panels.append((image_to_output(torch.from_numpy(c[yi])), sample, target))
            if panels:
                _plot_val(panels, step, out / "val" / f"step-{step:06d}.png")
            if not ss:
                return math.nan, math.nan, math.nan
            return float(np.mean(ss)), float(np.mean(ms)), float(np.mean(raw))

        bar = _progress_bar(steps, step, progress)
        say = bar.write if bar is not None and log is print else log  # keep the bar intact
        micro = gbatch * accumulation
        n = len(train_set)
        lo, hi = par.rank * batch_size, (par.rank + 1) * batch_size
        t_last = time.perf_counter()
        while step < steps:
            net.train()
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for a in range(accumulation):
                idx = rank_indices(seed, n, step * micro + a * gbatch, par.rank, batch_size)
                cond = torch.from_numpy(np.stack([train_set[i][0] for i in idx])).to(dev, torch.float32)
                x0 = torch.from_numpy(np.stack([train_set[i][1] for i in idx])).to(dev, torch.float32)
                y = cond[:, yi:yi + 1]
                # the global micro-batch's timesteps and noise, of which this rank takes its slice
                t = torch.randint(0, schedule.num_timesteps, (gbatch,), generator=gen, device=dev)[lo:hi]
                noise = torch.randn((gbatch, *x0.shape[1:]), generator=gen, device=dev,
                                    dtype=torch.float32)[lo:hi]
                xt = schedule.q_sample(x0, y, t, noise)
                inp = torch.cat([xt, cond], dim=1).contiguous(memory_format=memfmt)
                sync = contextlib.nullcontext() if (a == accumulation - 1 or not par.enabled) else net.no_sync()
                with sync:
                    with autocast(prec, dev):
                        pred = net(inp, t)
                    loss = l1_loss(pred, schedule.target(x0, y))
                    scaler.scale(loss / accumulation).backward()
                total += float(loss.detach()) / accumulation
            scaler.step(opt)
            scaler.update()
            step += 1
            total = all_mean(total, dev)  # every rank logs and schedules on the global batch's loss
            loss_smooth = total if math.isnan(loss_smooth) else (
                loss_smoothing * loss_smooth + (1.0 - loss_smoothing) * total)
            plateau.step(total if plateau_on == "raw" else loss_smooth)
            if step % ema_every == 0:
                with torch.no_grad():
                    e_params, m_params = list(ema.parameters()), list(model.parameters())
                    if step < ema_start:
                        torch._foreach_copy_(e_params, m_params)
                    else:
                        torch._foreach_lerp_(e_params, m_params, 1.0 - ema_decay)
            now = time.perf_counter()
            dt, t_last = now - t_last, now
            seconds += dt
            lr_now = opt.param_groups[0]["lr"]
            if logf is not None:
                logf.add({"step": step, "loss": total, "loss_smooth": loss_smooth, "lr": lr_now,
                          "seconds": seconds, "steps_per_s": 1.0 / max(dt, 1e-9)})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_smooth:.4f}", lr=f"{lr_now:.1e}", sps=f"{1.0 / max(dt, 1e-9):.2f}")
            if step % val_every == 0 or step == steps:
                if step == steps and step < ema_start:  # EMA never started: use the final weights
                    with torch.no_grad():
                        torch._foreach_copy_(list(ema.parameters()), list(model.parameters()))
                if main:
                    vs, vm, vr = validate()
                    logf.set_val(step, vs, vm, vr)
                    _plot_loss(logf.rows, out / "loss_curve.png")
                    say(f"step {step}: loss {loss_smooth:.4f}, lr {lr_now:.2e}, val SSIM {vs:.4f} (raw weights "
                        f"{vr:.4f}), val MAE {vm:.4f}")
                t_last = time.perf_counter()  # validation time is not training time
            if step % checkpoint_every == 0 or step == steps:
                if par.enabled:
                    _check_ranks_agree(model, ema, opt, step, dev)
                save_state()
                t_last = time.perf_counter()
        if bar is not None:
            bar.close()
    finally:
        torch.use_deterministic_algorithms(det_before, warn_only=warn_before)

    folder = out / "model"
    if main:
        last = logf.rows[-1] if logf.rows else {}
        cfg["training"] = {**cfg.get("training", {}), "steps": step, "batch_size": gbatch,
                           "accumulation": accumulation, "lr": lr, "seed": seed, "precision": prec,
                           "ema_decay": ema_decay, "ema_every": ema_every, "ema_start": ema_start,
                           "n_train": len(train_set), "n_val": len(val_set),
                           "final_loss_smooth": last.get("loss_smooth"), "val_ssim": last.get("val_ssim"),
                           "val_mae": last.get("val_mae"), "val_ssim_raw": last.get("val_ssim_raw"),
                           "train_seconds": seconds}
        if par.enabled:
            cfg["training"].update(world_size=par.world, batch_per_process=batch_size)
        if plateau_cooldown or plateau_on != "smoothed":
            cfg["training"].update(plateau_cooldown=plateau_cooldown, plateau_on=plateau_on)
        if args.get("init_from") is not None:
            cfg["training"]["init_from"] = args["init_from"]
        cfg["training"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                           for k, v in cfg["training"].items()}
        save_model(folder, ema.to("cpu").to(memory_format=torch.contiguous_format), cfg)
    barrier()  # the other ranks return once the model folder is complete
    return folder
