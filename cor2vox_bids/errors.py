"""Exception types and their exit codes: the one table of how cor2vox-bids fails.

Two families are kept apart:

* ``RunError`` subclasses concern the whole run (bad flags, missing dataset, corrupt model,
  unavailable device). They are raised before any work starts and end the process with their code.
* ``ParticipantError`` concerns one participant's files. It fails that participant only; the run goes
  on and finally exits 16 (some failed) or 17 (all failed).

This module imports nothing beyond the standard library so every layer may use it.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes (BIDS-App / sysexits style)."""

    OK = 0
    ERROR = 1
    SOME_PARTICIPANTS_FAILED = 16
    ALL_PARTICIPANTS_FAILED = 17
    USAGE = 64
    DATA = 65
    NO_INPUT = 66
    CANT_CREATE = 73
    IO = 74
    TEMPFAIL = 75
    INTERRUPTED = 130


EXIT_CODE_DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "Success.",
    ExitCode.ERROR: "Unexpected internal error (please report it with the log).",
    ExitCode.SOME_PARTICIPANTS_FAILED: "Some participants failed; the others finished.",
    ExitCode.ALL_PARTICIPANTS_FAILED: "All participants failed.",
    ExitCode.USAGE: "Usage error: bad flags, unknown participant or session label, bad filter file, output folder "
    "refused (inside the input dataset outside derivatives/, derivatives/ itself, or holding another dataset), "
    "--reference-dataset at the participant level or naming the output folder.",
    ExitCode.DATA: "Bad data for the whole run: a corrupt or incompatible model or model config (grid, channels, "
    "memory above --mem); at group level a corrupt participant QC table (named, left out, the rest written).",
    ExitCode.NO_INPUT: "A required input (dataset, subjects directory, file) is missing; at group level also a "
    "--reference-dataset that does not exist, is not a BIDS dataset, has no surfaces in derivatives/freesurfer or "
    "derivatives/smriprep, or no participant with a T1w and surfaces.",
    ExitCode.CANT_CREATE: "The output or work directory cannot be created or written.",
    ExitCode.IO: "Input/output error while reading or writing files.",
    ExitCode.TEMPFAIL: "Temporary failure, e.g. the requested device is unavailable.",
    ExitCode.INTERRUPTED: "Interrupted (Ctrl-C, SIGTERM or SIGHUP); the workers are ended first; rerun with the same "
    "-w/--work-dir to resume.",
}


class Cor2VoxError(Exception):
    """Base class of every error cor2vox-bids reports to a user (never with a traceback)."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class RunError(Cor2VoxError):
    """A problem of the whole run; stops before any participant starts."""


class UsageError(RunError):
    exit_code = ExitCode.USAGE


class ModelError(RunError):
    """The model (weights/config) is unusable: checksum mismatch, truncated, incompatible."""

    exit_code = ExitCode.DATA


class MissingInputError(RunError):
    exit_code = ExitCode.NO_INPUT


class OutputError(RunError):
    exit_code = ExitCode.CANT_CREATE


class CorruptTableError(RunError):
    """Group level: a participant's QC table is corrupt. That participant is left out of the group outputs (a
    warning names the file), the others are written, and the run ends with 65."""

    exit_code = ExitCode.DATA


class IOFailure(RunError):
    exit_code = ExitCode.IO


class DeviceUnavailableError(RunError):
    exit_code = ExitCode.TEMPFAIL


class ParticipantError(Cor2VoxError):
    """A problem with one participant's files; fails that participant alone."""


class SurfaceError(ParticipantError):
    """A surface file is unreadable, truncated, invalid or in the wrong frame."""


class MissingParticipantFileError(ParticipantError):
    """A file a participant needs does not exist."""


class ImageError(ParticipantError):
    """A participant's image (T1w) is unreadable, truncated, not 3D, not finite or has a singular affine."""
