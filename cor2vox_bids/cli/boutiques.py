"""Generate ``boutiques.json`` (Boutiques schema 0.5) from the settings model.

    python -m cor2vox_bids.cli.boutiques [--output boutiques.json] [--check]

Every input comes from :func:`cor2vox_bids.cli.parser.iter_fields` over :class:`cor2vox_bids.settings.Settings`
(the same source as ``--help``), the error codes from :data:`cor2vox_bids.errors.EXIT_CODE_DESCRIPTIONS` and
the output names from :mod:`cor2vox_bids.bids.naming`: nothing is typed twice. ``--check`` exits 1 when
the file differs from a fresh generation (the committed descriptor must be regenerated after a settings change).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import EXIT_CODE_DESCRIPTIONS, ExitCode
from ..settings import Settings
from .parser import iter_fields

PROG = "cor2vox-bids"
DOCKER_REPOSITORY = "cor2vox/cor2vox-bids"
SCHEMA_VERSION = "0.5"


def docker_image(version: str = __version__) -> str:
    """The image name of this release (also in the Dockerfile's label and Singularity.def)."""
    return f"{DOCKER_REPOSITORY}:{version}"


def value_key(name: str) -> str:
    return f"[{name.upper()}]"


def long_flag(flags: list[str]) -> str:
    """The first ``--long`` option string (``-w, --work-dir`` → ``--work-dir``)."""
    return next((f for f in flags if f.startswith("--")), flags[0])


_ACRONYMS = {"bids": "BIDS", "fs": "FreeSurfer", "omp": "OpenMP", "slurm": "SLURM", "dir": "folder"}


def display_name(name: str) -> str:
    """``fs_subjects_dir`` → ``FreeSurfer subjects folder``."""
    words = [_ACRONYMS.get(w, w) for w in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def _number(value: Any, integer: bool) -> Any:
    return int(value) if integer else float(value)


def boutiques_input(spec: dict[str, Any]) -> dict[str, Any]:
    """One Boutiques input from one :func:`iter_fields` entry."""
    name = spec["name"]
    item: dict[str, Any] = {
        "id": name,
        "name": display_name(name),
        "description": spec["help"],
        "value-key": value_key(name),
        "optional": not spec["required"],
    }
    if spec["action"] == "count":
        # A repeatable flag (-v, -vv, -vvv): Boutiques has no counter, so the choices are the flag strings.
        short = next(f for f in spec["flags"] if not f.startswith("--"))
        top = int(spec["bounds"].get("le", 3))
        item.update(type="String", **{"value-choices": [short + short[1:] * (n - 1) for n in range(1, top + 1)]})
        return item
    item["type"] = spec["kind"]
    if not spec["positional"]:
        item["command-line-flag"] = long_flag(spec["flags"])
    if spec["kind"] == "Flag":
        return item
    if spec["list"]:
        item["list"] = True
    if spec["choices"]:
        item["value-choices"] = list(spec["choices"])
    if spec["kind"] == "Number":
        item["integer"] = bool(spec["integer"])
        bounds = spec["bounds"]
        for key, out, exclusive in (
            ("ge", "minimum", False),
            ("gt", "minimum", True),
            ("le", "maximum", False),
            ("lt", "maximum", True),
        ):
            if key in bounds:
                item[out] = _number(bounds[key], spec["integer"])
                if exclusive:
                    item[f"exclusive-{out}"] = True
    default = spec["default"]
    if default is not None and not spec["list"]:
        item["default-value"] = _number(default, spec["integer"]) if spec["kind"] == "Number" else str(default)
    return item


def output_files() -> list[dict[str, Any]]:
    """The main derivatives, named by :mod:`cor2vox_bids.bids.naming` (``*`` = any participant)."""
    from ..bids import naming

    synth = naming.synth_glob("*")
    sidecar = str(naming.sidecar_of(synth))
    out = value_key("output_dir")
    return [
        {
            "id": "synthetic_t1w",
            "name": "Synthetic T1w images",
            "description": "One synthetic T1-weighted image per participant and sample (participant level; "
            "sessions add a ses-<label> folder).",
            "path-template": f"{out}/{synth}",
            "list": True,
            "optional": True,
        },
        {
            "id": "synthetic_t1w_sidecar",
            "name": "Synthetic T1w sidecars",
            "description": "JSON sidecar of each synthetic image: sources (BIDS URIs), model sha256, seed, steps.",
            "path-template": f"{out}/{sidecar}",
            "list": True,
            "optional": True,
        },
        {
            "id": "report",
            "name": "Participant reports",
            "description": "HTML report per participant (QC of cortical thickness per Desikan-Killiany region).",
            "path-template": f"{out}/{naming.report_path('*', None)}",
            "list": True,
            "optional": True,
        },
        {
            "id": "dataset_description",
            "name": "Dataset description",
            "description": "dataset_description.json of the derivative dataset.",
            "path-template": f"{out}/dataset_description.json",
            "optional": False,
        },
        {
            "id": "group_qc_tsv",
            "name": "Group QC tables",
            "description": "Group-level QC tables (group analysis level).",
            "path-template": f"{out}/{naming.group_path('*', '.tsv')}",
            "list": True,
            "optional": True,
        },
        {
            "id": "group_harmonization_tsv",
            "name": "Harmonization table",
            "description": "Group level with --reference-dataset: per participant and tissue, the Wasserstein "
            "distance to the reference site before and after harmonization, and the thickness agreement.",
            "path-template": f"{out}/{naming.harmonization_table_path()}",
            "optional": True,
        },
        {
            "id": "group_report",
            "name": "Group QC report",
            "description": "Group-level HTML report (group analysis level).",
            "path-template": f"{out}/{naming.group_report_path()}",
            "optional": True,
        },
    ]


def description() -> str:
    from .run import DESCRIPTION

    return DESCRIPTION.split("\n\n")[0]


def build_descriptor() -> dict[str, Any]:
    fields = iter_fields(Settings)
    inputs = [boutiques_input(spec) for spec in fields]
    command = " ".join([PROG] + [item["value-key"] for item in inputs])
    demo_invocation = {
        "bids_dir": "demo/data/bids",
        "output_dir": "demo/out",
        "analysis_level": "participant",
        "participant_label": ["01"],
        "random_seed": 0,
        "nprocs": 2,
    }
    return {
        "name": PROG,
        "tool-version": __version__,
        "schema-version": SCHEMA_VERSION,
        "description": description(),
        "author": "cor2vox-bids developers",
        "command-line": command,
        "container-image": {"type": "docker", "image": docker_image(), "entrypoint": True},
        "inputs": inputs,
        "groups": _groups(fields),
        "output-files": output_files(),
        "error-codes": [
            {"code": int(code), "description": text}
            for code, text in EXIT_CODE_DESCRIPTIONS.items()
            if code != ExitCode.OK
        ],
        "suggested-resources": {"cpu-cores": 2, "ram": 8, "disk-space": 2, "walltime-estimate": 1800},
        "tags": {"domain": ["neuroinformatics", "mri", "bids-app", "image-synthesis"]},
        "tests": [
            {
                "name": "demo_participant",
                "invocation": demo_invocation,
                "assertions": {
                    "exit-code": 0,
                    "output-files": [{"id": "synthetic_t1w"}, {"id": "dataset_description"}],
                },
            }
        ],
        "custom": {"cor2vox:generated-by": "python -m cor2vox_bids.cli.boutiques --output boutiques.json"},
    }


def _groups(fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[str]] = {}
    for spec in fields:
        groups.setdefault(spec["group"], []).append(spec["name"])
    out = []
    for title, members in groups.items():
        gid = "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")
        out.append({"id": gid, "name": title[:1].upper() + title[1:], "members": members})
    return out


def render() -> str:
    return json.dumps(build_descriptor(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cor2vox_bids.cli.boutiques", description=__doc__.split("\n")[0])
    parser.add_argument("--output", "-o", type=Path, help="Write here instead of standard output.")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Compare --output (default boutiques.json) with a fresh generation; exit 1 if it differs.",
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        path = args.output or Path("boutiques.json")
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date: run python -m cor2vox_bids.cli.boutiques --output {path}", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
