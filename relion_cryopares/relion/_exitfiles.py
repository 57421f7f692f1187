"""RELION's job-status files (shared/RELION_CONTRACT.md §2).

RELION judges a job only by these files in ``<o>``: exactly one of ``RELION_JOB_EXIT_SUCCESS``,
``RELION_JOB_EXIT_FAILURE``, ``RELION_JOB_EXIT_ABORTED`` must appear at the end of every run. The
GUI (or a Scheme) asks for an abort by creating ``RELION_JOB_ABORT_NOW``.

Policy: at the start of a run the stale exit files *and* a stale ``RELION_JOB_ABORT_NOW`` of a
previous run are removed (a continue re-runs in the same directory and must not be aborted by an
old request); after an abort has been honoured ``RELION_JOB_ABORT_NOW`` is removed as well.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
ABORT_NOW = "RELION_JOB_ABORT_NOW"
EXIT_FILES = (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED)

#: Process exit codes that go with the exit files (the CCP-EM pipeliner reads exit codes).
EXIT_CODES = {EXIT_SUCCESS: 0, EXIT_FAILURE: 1, EXIT_ABORTED: 2}


def clear_exit_files(output_dir: str | os.PathLike, include_abort_request: bool = True) -> None:
    """Remove exit files (and, by default, ``RELION_JOB_ABORT_NOW``) left in ``output_dir``."""
    names = EXIT_FILES + ((ABORT_NOW,) if include_abort_request else ())
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (Path(output_dir) / name).unlink()


def write_exit_file(output_dir: str | os.PathLike, name: str) -> Path:
    """Leave exactly one exit file, ``name``, in ``output_dir`` and return its path."""
    if name not in EXIT_FILES:
        raise ValueError(f"not an exit file: {name!r}")
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    clear_exit_files(directory, include_abort_request=False)
    path = directory / name
    path.touch()
    return path


def abort_requested(output_dir: str | os.PathLike) -> bool:
    """Whether RELION asked this job to stop (``RELION_JOB_ABORT_NOW`` exists)."""
    return (Path(output_dir) / ABORT_NOW).exists()


def existing_exit_files(output_dir: str | os.PathLike) -> list[str]:
    """The exit files present in ``output_dir`` (for checks and tests)."""
    return [name for name in EXIT_FILES if (Path(output_dir) / name).exists()]
