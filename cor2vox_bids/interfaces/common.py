"""What the publishing interfaces share: the inputs naming one participant's derivatives, and reading optional
Nipype inputs (undefined or empty → ``None`` or ``[]``)."""

from __future__ import annotations

from typing import Any

from nipype.interfaces.base import BaseInterfaceInputSpec, File, isdefined, traits


def optional(value: Any) -> Any | None:
    """An optional input's value; ``None`` when it is undefined or empty (``""`` is how a graph passes "none")."""
    return value if isdefined(value) and value else None


def optional_session(inputs: Any) -> str | None:
    """The ``session`` input of a participant's node: its label, or ``None`` for a dataset without sessions."""
    return optional(inputs.session)


def listed(value: Any) -> list:
    """An optional list input as a list (``[]`` when undefined)."""
    return list(value) if isdefined(value) else []


class PublishInputSpec(BaseInterfaceInputSpec):
    """Inputs of every node that writes one participant's files into the derivatives folder."""

    output_dir = traits.Str(mandatory=True, desc="the derivatives folder")
    subject = traits.Str(mandatory=True, desc="participant label (without sub-)")
    session = traits.Str(desc="session label (optional)")
    run_json = File(exists=True, mandatory=True, desc="model, seeds, steps, device, settings of the run")
