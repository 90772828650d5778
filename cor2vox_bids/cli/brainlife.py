"""Brainlife-style wrapper: ``config.json`` → a one-participant BIDS dataset → the BIDS-App call.

    python -m cor2vox_bids.cli.brainlife [config.json] [--outdir .] [--dry-run]

(``brainlife/main`` runs this inside the container.) ``config.json`` keys:

``freesurfer``  (required) a FreeSurfer subject folder (``neuro/freesurfer``: ``surf/``, ``mri/``, ``label/``)
``t1``          (optional) the participant's T1w NIfTI (``neuro/anat/t1w``); default: ``mri/orig.mgz`` converted
``subject``     (optional) the participant label; default: ``_inputs[*].meta.subject``, else ``01``
any option of ``cor2vox-bids`` by its settings name (``random_seed``, ``num_samples``, ``steps``, ``device``,
``save_conditioning``, ``nprocs``, ...): the value is passed with the option's flag. Keys starting with ``_``
(Brainlife's own) are ignored; other unknown keys are reported and ignored.

Outputs in ``--outdir`` (Brainlife datatypes): ``output/`` the BIDS derivatives, ``t1/t1.nii.gz`` the
synthetic T1w (first sample), ``html/index.html`` the participant report, ``product.json`` a summary.
The exit code is the BIDS App's.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from ..bids import naming
from ..errors import ExitCode, MissingInputError, UsageError
from ..settings import Settings
from .parser import iter_fields

LOGGER = logging.getLogger("cor2vox_bids.brainlife")
# Set by the wrapper itself, never from config.json.
RESERVED = {
    "bids_dir",
    "output_dir",
    "analysis_level",
    "participant_label",
    "session_label",
    "fs_subjects_dir",
    "derivatives",
    "bids_filter_file",
}
WRAPPER_KEYS = {"freesurfer", "t1", "subject"}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def options_from_config(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """CLI arguments for the settings named in ``config`` (by field name) and the keys that were ignored."""
    specs = {spec["name"]: spec for spec in iter_fields(Settings)}
    argv: list[str] = []
    ignored: list[str] = []
    for key, value in config.items():
        if key.startswith("_") or key in WRAPPER_KEYS:
            continue
        spec = specs.get(key)
        if spec is None or key in RESERVED or spec["positional"]:
            ignored.append(key)
            continue
        if value is None or value == "" or value == []:
            continue
        flag = next((f for f in spec["flags"] if f.startswith("--")), spec["flags"][0])
        if spec["action"] == "count":
            count = int(value)
            if count > 0:
                short = next(f for f in spec["flags"] if not f.startswith("--"))
                argv.append(short + short[1:] * (count - 1))
        elif spec["kind"] == "Flag":
            if _truthy(value):
                argv.append(flag)
        elif spec["list"]:
            items = value if isinstance(value, list) else str(value).split()
            argv += [flag, *(str(v) for v in items)]
        else:
            argv += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return argv, ignored


def subject_label(config: dict[str, Any]) -> str:
    """``subject`` or the first input's ``meta.subject``, reduced to a BIDS label (letters and digits)."""
    raw = config.get("subject")
    if not raw:
        for item in config.get("_inputs") or []:
            raw = (item.get("meta") or {}).get("subject")
            if raw:
                break
    label = re.sub(r"[^A-Za-z0-9]", "", str(raw or "").removeprefix("sub-"))
    return label or "01"


def prepare_dataset(config: dict[str, Any], root: Path, label: str) -> tuple[Path, Path]:
    """A minimal BIDS dataset and a subjects folder (links to the Brainlife inputs) under ``root``."""
    if not config.get("freesurfer"):
        raise UsageError("config.json needs 'freesurfer' (a FreeSurfer subject folder)")
    fs_subject = Path(config["freesurfer"]).resolve()
    if not fs_subject.is_dir():
        raise MissingInputError("the FreeSurfer subject folder does not exist", fs_subject)
    bids = root / "bids"
    subjects_dir = root / "freesurfer"
    subjects_dir.mkdir(parents=True, exist_ok=True)
    bids.mkdir(parents=True, exist_ok=True)
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "Brainlife input for cor2vox-bids", "BIDSVersion": "1.9.0", "DatasetType": "raw"}, indent=2)
        + "\n"
    )
    t1w = bids / naming.raw_t1w_path(label)
    t1w.parent.mkdir(parents=True, exist_ok=True)
    if config.get("t1"):
        source = Path(config["t1"]).resolve()
        if not source.is_file():
            raise MissingInputError("the T1w image does not exist", source)
        if source.name.endswith(naming.IMAGE_EXTENSION):
            _link(source, t1w)
        else:
            _convert(source, t1w)
    else:
        orig = fs_subject / "mri" / "orig.mgz"
        if not orig.is_file():
            raise MissingInputError("no 't1' in config.json and no mri/orig.mgz in the FreeSurfer folder", orig)
        _convert(orig, t1w)
    _link(fs_subject, subjects_dir / f"sub-{label}")
    return bids, subjects_dir


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source)


def _convert(source: Path, target: Path) -> None:
    import nibabel as nib

    image = nib.load(str(source))
    nib.save(nib.Nifti1Image(image.get_fdata(dtype="float32"), image.affine), str(target))


def collect_outputs(output: Path, outdir: Path, label: str) -> dict[str, str]:
    """Copy the first synthetic T1w and the report to Brainlife's datatype folders."""
    found: dict[str, str] = {}
    synth = output / naming.synth_path(label, None, 0, 1)
    if not synth.is_file():
        candidates = sorted(output.glob(naming.synth_glob(label)))
        synth = candidates[0] if candidates else synth
    if synth.is_file():
        t1 = outdir / naming.BRAINLIFE_T1
        t1.parent.mkdir(exist_ok=True)
        shutil.copyfile(synth, t1)
        found["t1"] = str(t1)
    report = output / naming.report_path(label, None)
    if report.is_file():
        index = outdir / naming.BRAINLIFE_HTML
        index.parent.mkdir(exist_ok=True)
        shutil.copyfile(report, index)
        figures = output / naming.figure_dir(label)
        if figures.is_dir():
            shutil.copytree(figures, index.parent / naming.figure_dir(label), dirs_exist_ok=True)
        found["html"] = str(index)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cor2vox_bids.cli.brainlife", description="Run cor2vox-bids on a Brainlife config.json."
    )
    parser.add_argument("config", nargs="?", default="config.json", type=Path)
    parser.add_argument("--outdir", type=Path, default=Path("."), help="Where output/, t1/, html/ go (default: .)")
    parser.add_argument("--dry-run", action="store_true", help="Print the cor2vox-bids call and stop.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s: %(message)s")
    try:
        config = json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        print(f"brainlife: cannot read {args.config}: {exc}", file=sys.stderr)
        return int(ExitCode.NO_INPUT if isinstance(exc, OSError) else ExitCode.USAGE)
    outdir = args.outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    label = subject_label(config)
    options, ignored = options_from_config(config)
    for key in ignored:
        LOGGER.warning("config.json key %r is not a cor2vox-bids option here: ignored", key)
    try:
        bids, subjects_dir = prepare_dataset(config, outdir / "bl_inputs", label)
    except (UsageError, MissingInputError) as exc:
        print(f"brainlife: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    output = outdir / "output"
    call = [
        str(bids),
        str(output),
        "participant",
        "--participant-label",
        label,
        "--fs-subjects-dir",
        str(subjects_dir),
        "--skip-bids-validation",
        *options,
    ]
    print("cor2vox-bids " + " ".join(call))
    if args.dry_run:
        return 0
    from .run import main as run_main

    code = run_main(call)
    found = collect_outputs(output, outdir, label) if code == 0 else {}
    message = f"cor2vox-bids exited {code}" + (f"; outputs: {', '.join(found)}" if found else "")
    product = {
        "brainlife": [{"type": "info" if code == 0 else "error", "msg": message}],
        "cor2vox": {"exit_code": code, "subject": label, "outputs": found},
    }
    (outdir / naming.BRAINLIFE_PRODUCT).write_text(json.dumps(product, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
