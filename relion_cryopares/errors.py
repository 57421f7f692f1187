"""Errors a user can act on.

An :class:`InputError` carries one readable line naming the file and the problem; jobs print exactly
that line to ``run.err`` and end in ``RELION_JOB_EXIT_FAILURE``.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input: a missing file, a missing column, an unknown symmetry, ... (one line)."""

    def __init__(self, problem: str, path: object | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class JobAborted(Exception):
    """Raised between batches when ``RELION_JOB_ABORT_NOW`` appears in the job directory."""
