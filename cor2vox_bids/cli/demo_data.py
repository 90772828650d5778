"""``cor2vox-demo-data OUTDIR``: build the demo BIDS dataset from fsaverage5 (see cor2vox_bids.demodata)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..errors import Cor2VoxError, ExitCode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cor2vox-demo-data",
        description="Build a small BIDS dataset (raw T1w + FreeSurfer surfaces) of pseudo-participants derived "
        "from FreeSurfer's fsaverage5 by random smooth deformations, plus a second-site copy.",
    )
    parser.add_argument("outdir", type=Path, help="Folder to write bids/ and bids-site2/ into.")
    parser.add_argument("--participants", type=int, default=2, help="Number of pseudo-participants (default: 2).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--first", type=int, default=1, help="Label of the first participant (default: 1).")
    parser.add_argument("--no-site2", action="store_true", help="Do not write the second-site copy.")
    parser.add_argument("--version", action="version", version=f"cor2vox-demo-data {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.participants < 1 or args.first < 1 or args.first + args.participants - 1 > 99:
        print("cor2vox-demo-data: participants must be labelled between 1 and 99", file=sys.stderr)
        return int(ExitCode.USAGE)
    from ..demodata import build_demo_dataset

    try:
        paths = build_demo_dataset(args.outdir, args.participants, args.seed, site2=not args.no_site2,
                                   first=args.first)
    except Cor2VoxError as exc:
        print(f"cor2vox-demo-data: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except OSError as exc:
        print(f"cor2vox-demo-data: error: cannot write {args.outdir}: {exc}", file=sys.stderr)
        return int(ExitCode.CANT_CREATE)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
