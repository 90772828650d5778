"""No traceback on the console, ever.

Nipype logs a failed node as several ERROR records, one of them the whole traceback. The crash file (Nipype's, in
``sub-<label>/log/<run-id>/``) keeps it; the console shows the run's own summary, one line per failed participant
(``execution.local.summarize``). With ``-v`` Nipype's error records stay on the console, cut to their first line.
"""

from __future__ import annotations

import logging


class NoTracebacks(logging.Filter):
    """Drops Nipype ERROR records (``verbose`` 0) or cuts them to their first line (``verbose`` >= 1)."""

    def __init__(self, verbose: int = 0):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.name.startswith("nipype"):
            return True
        if self.verbose < 1:
            return False
        message = record.getMessage()
        if "\n" in message:
            record.msg, record.args = message.splitlines()[0] + " (traceback in the crash file)", ()
        return True


def keep_tracebacks_off_console(verbose: int = 0) -> None:
    """Install :class:`NoTracebacks` on every console handler Nipype's loggers write to (idempotent)."""
    import nipype  # noqa: F401  (Nipype adds its console handler when imported)

    for name in ("nipype", "nipype.workflow", "nipype.interface", "nipype.utils", "nipype.filemanip"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
                continue
            handler.filters = [f for f in handler.filters if not isinstance(f, NoTracebacks)]
            handler.addFilter(NoTracebacks(verbose))
