"""``--use-plugin FILE``: any Nipype plugin (SLURM, SGE, ...) with its arguments, from a YAML file."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..errors import MissingInputError, UsageError
from ..settings import Settings


def load_plugin_file(path: Path, settings: Settings, model) -> tuple[str, dict]:
    """Read ``plugin:`` and ``plugin_args:`` from a Nipype plugin YAML file."""
    if not Path(path).is_file():
        raise MissingInputError("the plugin file does not exist", path)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"the plugin file is not valid YAML: {exc}", path) from None
    if not isinstance(data, dict) or "plugin" not in data:
        raise UsageError("the plugin file must define 'plugin:' (e.g. SLURM, MultiProc)", path)
    args = dict(data.get("plugin_args") or {})
    plugin = str(data["plugin"])
    if plugin in ("MultiProc", "LegacyMultiProc"):
        args.setdefault("n_procs", settings.nprocs or os.cpu_count() or 1)
        if settings.mem is not None:
            args.setdefault("memory_gb", settings.mem)
    # Nipype's SLURM plugins read LOGNAME for job names; it is unset in many containers and cron jobs.
    os.environ.setdefault("LOGNAME", os.environ.get("USER", "cor2vox"))
    return plugin, args
