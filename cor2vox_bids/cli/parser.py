"""Build an argparse parser from a pydantic settings model (no option is typed twice)."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from .. import __version__
from ..errors import UsageError


def _unwrap_optional(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def field_cli(name: str, info: FieldInfo) -> dict[str, Any]:
    """Describe one field the way the CLI (and boutiques) sees it: kind, choices, list-ness, flags."""
    extra = dict(info.json_schema_extra or {})
    annotation = _unwrap_optional(info.annotation)
    is_list = typing.get_origin(annotation) is list
    base = typing.get_args(annotation)[0] if is_list else annotation
    choices = list(typing.get_args(base)) if typing.get_origin(base) is Literal else None
    if choices is not None:
        kind = "String"
    elif base is bool:
        kind = "Flag"
    elif base in (int, float):
        kind = "Number"
    elif base is Path:
        kind = "File"
    else:
        kind = "String"
    bounds = {}
    for meta in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(meta, key, None) is not None:
                bounds[key] = getattr(meta, key)
    return {
        "name": name,
        "kind": kind,
        "integer": base is int,
        "list": is_list,
        "choices": choices,
        "flags": extra.get("flags", []),
        "positional": bool(extra.get("positional")),
        "group": extra.get("group", "Options"),
        "metavar": extra.get("metavar"),
        "action": extra.get("action"),
        "default": None if info.is_required() else info.default,
        "required": info.is_required(),
        "help": info.description or "",
        "bounds": bounds,
    }


def iter_fields(model: type[BaseModel]) -> list[dict[str, Any]]:
    """CLI descriptions of every field of ``model``, in declaration order."""
    return [field_cli(name, info) for name, info in model.model_fields.items()]


def _help(spec: dict[str, Any]) -> str:
    text = spec["help"]
    if spec["bounds"]:
        text += " [" + ", ".join(f"{k} {v}" for k, v in spec["bounds"].items()) + "]"
    if not spec["required"] and spec["kind"] != "Flag" and spec["default"] not in (None, [], 0, False):
        text += f" (default: {spec['default']})"
    return text


class UsageRaisingParser(argparse.ArgumentParser):
    """argparse parser whose errors raise :class:`UsageError` (exit 64) instead of exiting with 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def build_parser(model: type[BaseModel], prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser whose arguments are generated from ``model``'s fields.

    Values are not converted here (everything stays a string or list of strings); pydantic validates them.
    """
    parser = UsageRaisingParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in iter_fields(model):
        if spec["positional"]:
            kwargs: dict[str, Any] = {"help": spec["help"], "metavar": spec["metavar"]}
            if spec["choices"]:
                kwargs = {"help": spec["help"], "choices": spec["choices"]}
            parser.add_argument(spec["name"], **kwargs)
            continue
        group = groups.setdefault(spec["group"], parser.add_argument_group(spec["group"]))
        kwargs = {"dest": spec["name"], "help": _help(spec)}
        if spec["action"] == "count":
            kwargs["action"] = "count"
        elif spec["kind"] == "Flag":
            kwargs["action"] = "store_true"
        else:
            if spec["list"]:
                kwargs["nargs"] = "+"
                kwargs["action"] = "extend"
            if spec["choices"]:
                kwargs["choices"] = spec["choices"]
            if spec["metavar"]:
                kwargs["metavar"] = spec["metavar"]
        group.add_argument(*spec["flags"], **kwargs)
    return parser


def parse_settings(model: type[BaseModel], argv: list[str] | None, prog: str, description: str) -> BaseModel:
    """Parse ``argv`` into a validated ``model`` instance; bad values raise :class:`UsageError`."""
    parser = build_parser(model, prog, description)
    namespace = parser.parse_args(argv)
    try:
        return model(**vars(namespace))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            flag = next((s["flags"][-1] for s in iter_fields(model) if s["name"] == loc and s["flags"]), loc)
            lines.append(f"{flag}: {err['msg']}")
        raise UsageError("invalid arguments:\n  " + "\n  ".join(lines)) from None


# Options the array tasks do not inherit (each task sets its own, or they only concern the submission).
_NOT_FORWARDED = {"participant_label", "work_dir", "slurm_array", "slurm_wait", "dry_run", "use_plugin",
                  "bids_dir", "output_dir", "analysis_level"}


def task_arguments(settings: BaseModel) -> list[str]:
    """Settings back to command-line options: those that differ from their defaults, without the ones an array
    task sets itself (``--slurm-array`` gives every task these)."""
    args: list[str] = []
    for spec in iter_fields(type(settings)):
        name = spec["name"]
        if spec["positional"] or name in _NOT_FORWARDED or not spec["flags"]:
            continue
        value = getattr(settings, name)
        if value == spec["default"] or value is None:
            continue
        flag = next((f for f in spec["flags"] if f.startswith("--")), spec["flags"][0])
        if spec["action"] == "count":
            args += [spec["flags"][0]] * int(value)
        elif spec["kind"] == "Flag":
            args.append(flag)
        elif spec["list"]:
            args += [flag, *[_as_arg(v) for v in value]]
        else:
            args += [flag, _as_arg(value)]
    return args


def _as_arg(value) -> str:
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, str) and "=" in value:  # NAME=PATH (--derivatives): make the path absolute
        name, _, path = value.partition("=")
        return f"{name}={Path(path).resolve()}" if path and not path.startswith("/") else value
    return str(value)
