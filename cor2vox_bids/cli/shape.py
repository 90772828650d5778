"""``cor2vox-shape``: a statistical shape model of the cortex and virtual participants made from it.

    cor2vox-shape build BIDS_DIR MODEL_DIR [--fs-subjects-dir PATH | --derivatives smriprep=PATH]
                        [--participant-label ...] [--components K] [--template fsaverage5]
    cor2vox-shape sample MODEL_DIR OUT_BIDS --n N --seed S [--scale 1.0]
    cor2vox-shape interpolate MODEL_DIR OUT_BIDS --from sub-A --to sub-B --steps K [--mode slerp|lerp]
    cor2vox-shape evaluate BIDS_DIR [same inputs as build] [--output FILE.json]

Failures follow cor2vox_bids/errors.py: a message naming the file and problem, the documented exit code and
no traceback (an unexpected error leaves its traceback in a file whose path is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
import typing
from pathlib import Path

from .. import __version__
from ..errors import Cor2VoxError, ExitCode, UsageError

PROG = "cor2vox-shape"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def _positive(kind: type) -> typing.Callable[[str], typing.Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("bids_dir", type=Path, help="BIDS dataset whose participants train the model.")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--fs-subjects-dir", type=Path, help="FreeSurfer subjects folder (default: BIDS_DIR/derivatives/freesurfer)."
    )
    src.add_argument(
        "--derivatives",
        metavar="smriprep=PATH",
        help="sMRIPrep derivatives with GIFTI surfaces (needs *_desc-reg_sphere.surf.gii unless on the template mesh).",
    )
    p.add_argument("--participant-label", nargs="+", metavar="LABEL", help="Participants to use (01 or sub-01).")
    p.add_argument(
        "--template",
        default="fsaverage5",
        help="Template subject: an installed name or a FreeSurfer subject folder (default: fsaverage5).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Statistical shape model of cortical surfaces (per-hemisphere PCA of "
        "mid-thickness xyz and thickness on a template mesh) and virtual participants made from it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    b = sub.add_parser("build", help="Fit a shape model to a dataset's surfaces.")
    _inputs(b)
    b.add_argument("model_dir", type=Path, help="Folder to write the model into (shape_model.json + .npz).")
    b.add_argument("--components", type=_positive(int), help="Components per hemisphere (default: all, n - 1).")
    s = sub.add_parser("sample", help="Write a BIDS dataset of randomly sampled virtual participants.")
    s.add_argument("model_dir", type=Path)
    s.add_argument("out_bids", type=Path, help="New (or empty) folder for the virtual dataset.")
    s.add_argument("--n", type=_positive(int), required=True, help="Number of virtual participants.")
    s.add_argument("--seed", type=int, required=True, help="Random seed (same seed, same participants).")
    s.add_argument(
        "--scale",
        type=_positive(float),
        default=1.0,
        help="Standard deviation of the latent codes (default 1.0; smaller is closer to the mean).",
    )
    i = sub.add_parser("interpolate", help="Write a BIDS dataset interpolating between two training participants.")
    i.add_argument("model_dir", type=Path)
    i.add_argument("out_bids", type=Path, help="New (or empty) folder for the virtual dataset.")
    i.add_argument("--from", dest="src", required=True, help="Training participant at t = 0 (sub-A).")
    i.add_argument("--to", dest="dst", required=True, help="Training participant at t = 1 (sub-B).")
    i.add_argument(
        "--steps",
        type=_positive(int),
        required=True,
        help="Number of participants (ends included when >= 2; 1 gives the midpoint).",
    )
    i.add_argument("--mode", choices=("slerp", "lerp"), default="slerp", help="Spherical (default) or linear.")
    e = sub.add_parser("evaluate", help="Leave-one-out reconstruction error vs components; slerp vs lerp midpoints.")
    _inputs(e)
    e.add_argument("--output", type=Path, help="Write the measurements as JSON here.")
    return parser


def _smriprep(value: str | None) -> Path | None:
    if value is None:
        return None
    name, _, path = value.partition("=")
    if name != "smriprep" or not path:
        raise UsageError(f"--derivatives expects smriprep=PATH, got {value!r}")
    return Path(path)


def _log(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _evaluate(args: argparse.Namespace) -> dict:
    import numpy as np

    from ..errors import MissingInputError
    from ..shape.build import MIN_TRAINING, fit_model, holdout_errors, interpolation_stats, load_training
    from ..shape.data import load_template

    tpl = load_template(args.template)
    loaded, failed = load_training(
        args.bids_dir, args.fs_subjects_dir, _smriprep(args.derivatives), args.participant_label, tpl, _log
    )
    if len(loaded) < MIN_TRAINING + 1:
        raise MissingInputError(
            f"evaluation needs at least {MIN_TRAINING + 1} participants; {len(loaded)} usable", args.bids_dir
        )
    ks = sorted({0, 1, 2, 3, 5, 8, 13, len(loaded) - 2} & set(range(len(loaded) - 1)))
    _log(f"leave-one-out over {len(loaded)} participants, components {ks}")
    errors = holdout_errors(loaded, ks)
    for k in ks:
        _log(
            f"  k={k:2d}: held-out mid-surface RMS {errors[k]['mid_rms_mm']:.3f} mm, thickness RMS "
            f"{errors[k]['thickness_rms_mm']:.3f} mm"
        )
    model = fit_model(loaded, tpl, None)
    keys = model.training
    pairs = [(keys[i], keys[i + 1]) for i in range(0, len(keys) - 1, 2)]
    interp = interpolation_stats(model, pairs)
    for r in interp:
        _log(
            f"  {r['from']} -> {r['to']}: latent norm ends {r['from_norm']:.2f}/{r['to_norm']:.2f}, midpoint "
            f"slerp {r['slerp_norm']:.2f} lerp {r['lerp_norm']:.2f}; thickness std ends "
            f"{r['from_thickness_std']:.3f}/{r['to_thickness_std']:.3f}, slerp {r['slerp_thickness_std']:.3f} "
            f"lerp {r['lerp_thickness_std']:.3f} mm; deviation from mean thickness ends "
            f"{r['from_thickness_dev']:.3f}/{r['to_thickness_dev']:.3f}, slerp {r['slerp_thickness_dev']:.3f} "
            f"lerp {r['lerp_thickness_dev']:.3f} mm"
        )
    dims = sum(model.hemis[h].n_components for h in ("L", "R"))
    _log(f"  a sample z ~ N(0, I) in {dims} dimensions has norm about {np.sqrt(dims - 0.5):.2f}")
    thick = list(model.info["TrainingMeanThickness"].values())
    return {
        "participants": keys,
        "left_out": dict(failed),
        "holdout": {str(k): v for k, v in errors.items()},
        "interpolation_midpoints": interp,
        "latent_dimensions": dims,
        "typical_sample_norm": float(np.sqrt(dims - 0.5)),
        "training_mean_thickness_mm": {"min": float(np.min(thick)), "max": float(np.max(thick))},
    }


def run(args: argparse.Namespace) -> int:
    """Dispatch one subcommand; returns the exit code."""
    from ..shape import build as shape_build
    from ..shape.model import load_model

    if args.command == "build":
        _, failed = shape_build.build(
            args.bids_dir,
            args.model_dir,
            args.fs_subjects_dir,
            _smriprep(args.derivatives),
            args.participant_label,
            args.components,
            args.template,
            _log,
        )
        if failed:
            _log(f"{len(failed)} participant(s) left out: {', '.join(k for k, _ in failed)}")
            return int(ExitCode.SOME_PARTICIPANTS_FAILED)
        return 0
    if args.command == "evaluate":
        result = _evaluate(args)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=2) + "\n")
            _log(f"wrote {args.output}")
        return 0
    model = load_model(args.model_dir)
    if args.command == "sample":
        shape_build.sample(model, args.model_dir, args.out_bids, args.n, args.seed, args.scale, _log)
    else:
        shape_build.interpolate(model, args.model_dir, args.out_bids, args.src, args.dst, args.steps, args.mode, _log)
    _log(f"wrote {args.out_bids} (run: cor2vox-bids {args.out_bids} OUTPUT_DIR participant)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cor2vox-shape``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except Cor2VoxError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"{PROG}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.IO)
    except Exception as exc:  # unexpected: the traceback goes to a file, not the console
        with tempfile.NamedTemporaryFile("w", prefix="cor2vox-shape-crash-", suffix=".txt", delete=False) as fh:
            fh.write(traceback.format_exc())
        print(f"{PROG}: unexpected error: {exc}; details in {fh.name}", file=sys.stderr)
        return int(ExitCode.ERROR)


if __name__ == "__main__":
    sys.exit(main())
