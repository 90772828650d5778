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


def bounds_text(bounds: dict[str, Any]) -> str:
    """Pydantic bounds in words: ``{"ge": 1, "le": 1000}`` → ``1 to 1000``; ``{"gt": 0}`` → ``greater than 0``."""
    lo = bounds.get("ge", bounds.get("gt"))
    hi = bounds.get("le", bounds.get("lt"))
    if "ge" in bounds and "le" in bounds:
        return f"{lo} to {hi}"
    parts = []
    if lo is not None:
        parts.append(f"at least {lo}" if "ge" in bounds else f"greater than {lo}")
    if hi is not None:
        parts.append(f"at most {hi}" if "le" in bounds else f"less than {hi}")
    return ", ".join(parts)


def _help(spec: dict[str, Any]) -> str:
    text = spec["help"]
    extra = []
    show_default = (not spec["required"] and spec["kind"] != "Flag" and spec["action"] != "count"
                    and spec["default"] is not None and spec["default"] != [])
    if show_default:
        extra.append(f"Default: {spec['default']}.")
    if spec["bounds"] and spec["action"] != "count":
        words = bounds_text(spec["bounds"])
        extra.append(f"Range: {words}." if " to " in words else words[:1].upper() + words[1:] + ".")
    return " ".join([text, *extra]) if extra else text


class UsageRaisingParser(argparse.ArgumentParser):
    """argparse parser whose errors raise :class:`UsageError` (exit 64) instead of exiting with 2; an unknown
    option gets the closest known ones suggested."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        hint = self._suggestion(message)
        raise UsageError(f"{message}{hint}\n{self.format_usage().strip()}")

    def _suggestion(self, message: str) -> str:
        import difflib

        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        hints = []
        for token in message.split(":", 1)[1].split():
            if token.startswith("-"):
                close = difflib.get_close_matches(token.split("=", 1)[0], known, n=2, cutoff=0.6)
                if close:
                    hints.append(f"{token}: did you mean {' or '.join(close)}?")
        return ("\n" + "\n".join(hints)) if hints else ""


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
