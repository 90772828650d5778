"""Small readers of the container files (Dockerfile, .dockerignore) for the container tests."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str) -> str | None:
    """An executable of the test environment (beside this Python first, then PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        buffer = ""
    return out


def stages(items: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Instructions split per stage (each list starts with its FROM); ARGs before the first FROM dropped."""
    out: list[list[tuple[str, str]]] = []
    for keyword, args in items:
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def global_args(items: list[tuple[str, str]]) -> dict[str, str | None]:
    """ARGs declared before the first FROM."""
    out: dict[str, str | None] = {}
    for keyword, args in items:
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, sep, value = args.partition("=")
            out[name] = value if sep else None
    return out


def stage_args(stage: list[tuple[str, str]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for keyword, args in stage:
        if keyword == "ARG":
            name, sep, value = args.partition("=")
            out[name] = value if sep else None
    return out


def key_values(stage: list[tuple[str, str]], keyword: str) -> dict[str, str]:
    """Merged ``KEY=VALUE`` pairs of every ENV or LABEL instruction of a stage (shell-style quoting)."""
    out: dict[str, str] = {}
    for kw, args in stage:
        if kw != keyword:
            continue
        words = shlex.split(args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            out[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            out[key] = value
    return out


def substitute(value: str, variables: dict[str, str]) -> str:
    """Docker-style ``${VAR}``/``$VAR`` substitution (unknown variables stay as they are)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), value)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` (relative, with '/') is left out of the build context by .dockerignore ``patterns``."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if any(fnmatch.fnmatchcase(c, pat) and (c == path.strip("/") or not negate) for c in candidates):
            result = not negate
    return result


def dockerignore_patterns(path: Path = ROOT / ".dockerignore") -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
