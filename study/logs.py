"""The ``lossweep`` logger: warnings and diagnostics of the command-line tools, on stderr.

Quiet by default apart from warnings; ``LOSSWEEP_LOG_LEVEL=debug`` (or ``info``) shows the
diagnostics too. Messages are written through ``tqdm.write`` so a progress bar on the same terminal
stays intact, and to the ``sys.stderr`` of the moment (tests and callers may replace it).
"""

from __future__ import annotations

import logging
import os
import sys

NAME = "lossweep"
LEVEL_ENV = "LOSSWEEP_LOG_LEVEL"


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def logger() -> logging.Logger:
    """The ``lossweep`` logger, given its stderr handler the first time."""
    log = logging.getLogger(NAME)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))  # messages name their program themselves
        log.addHandler(handler)
        log.propagate = False
        level = os.environ.get(LEVEL_ENV, "warning").upper()
        log.setLevel(level if level in logging.getLevelNamesMapping() else logging.WARNING)
    return log
