"""Logging of one job run: progress to stdout (``run.out``), everything to ``<o>/cryopares.log``.

RELION appends the job's stdout to ``run.out`` and its stderr to ``run.err``. The library logs
under the ``relion_cryopares`` logger; during a run it gets two handlers, which are removed again
afterwards (so jobs can run in-process, e.g. in tests). Python warnings (``warnings.warn`` from
torch, e3nn, ...) are routed to the same handlers for the run, so ``run.err`` is reserved for the
one-line error message the runner writes itself.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Iterator

LOG_FILE = "cryopares.log"
PACKAGE_LOGGER = "relion_cryopares"


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS message``; ``WARNING:``/``ERROR:`` prefixes; never a traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not message.startswith(record.levelname):
            message = f"{record.levelname}: {message}"
        return f"{self.formatTime(record, self.datefmt)} {message}"


@contextlib.contextmanager
def job_logging(output_dir: Path, verbose: bool) -> Iterator[logging.Logger]:
    """Attach the stdout and log-file handlers to the package logger for the ``with`` block."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbose else logging.INFO)
    console.setFormatter(_ConsoleFormatter())
    logfile = logging.FileHandler(output_dir / LOG_FILE, mode="a", encoding="utf-8")
    logfile.setLevel(logging.DEBUG)
    logfile.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    warnings_logger = logging.getLogger("py.warnings")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    for target in (logger, warnings_logger):
        target.addHandler(console)
        target.addHandler(logfile)
    logging.captureWarnings(True)
    try:
        yield logger
    finally:
        logging.captureWarnings(False)
        for target in (logger, warnings_logger):
            target.removeHandler(console)
            target.removeHandler(logfile)
        logger.setLevel(old_level)
        console.flush()
        logfile.close()
