"""What a job body receives: :class:`JobContext`."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from ..errors import JobAborted
from ._args import JobArgs
from ._exitfiles import ABORT_NOW, abort_requested
from .._progress import Progress
from ._spec import JobSpec

T = TypeVar("T")


@dataclass(frozen=True)
class JobContext:
    """One run of a job, as seen by its body.

    ``output_dir`` is ``--o`` (project-relative when run by RELION), ``project_dir`` the absolute
    working directory RELION started the job in, ``is_continue`` the ``_rlnJobIsContinue`` of
    ``<o>/job.star``, ``previous_config`` the ``cryopares_config.json`` of the previous run in the
    same directory (None for a first run), ``log`` the job's logger (to ``run.out`` and
    ``<o>/cryopares.log``).
    """

    spec: JobSpec
    args: JobArgs
    output_dir: Path
    project_dir: Path
    is_continue: bool
    log: logging.Logger
    pipeline_version: str = "unknown"
    previous_config: Mapping[str, Any] | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        """Typed parameter values by name, defaults filled in."""
        return self.args.params

    @property
    def threads(self) -> int:
        """``--j`` (1 when absent)."""
        return self.args.threads

    def params_as(self, config_type: type[T], **overrides: Any) -> T:
        """Build a (frozen dataclass) config from the parameters whose names match its fields.

        ``ctx.params_as(ReconstructConfig, pixel_size_angstrom=px)``; fields without a matching
        parameter keep their defaults unless given in ``overrides``.
        """
        names = {f.name for f in dataclasses.fields(config_type)}
        values = {k: v for k, v in self.params.items() if k in names}
        return config_type(**{**values, **overrides})

    def path(self, name: str | os.PathLike) -> Path:
        """``output_dir / name``: where the job writes its file ``name``."""
        return self.output_dir / name

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the project directory, with ``/`` (a RELION node name).

        Raises ``ValueError`` for a path outside the project.
        """
        target = Path(path)
        if not target.is_absolute():
            target = self.project_dir / target
        rel = os.path.relpath(os.path.normpath(target), self.project_dir)
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            raise ValueError(f"{path} is outside the project directory {self.project_dir}")
        return Path(rel).as_posix()

    def abort_requested(self) -> bool:
        """Whether ``RELION_JOB_ABORT_NOW`` exists in the job directory."""
        return abort_requested(self.output_dir)

    def check_abort(self) -> None:
        """Raise :class:`~relion_cryopares.errors.JobAborted` if RELION asked the job to stop.

        Call it between batches; keep finished work on disk before calling it.
        """
        if self.abort_requested():
            raise JobAborted(f"{ABORT_NOW} found in {self.output_dir}")

    def progress(self, total: int, *, unit: str = "particles", done: int = 0, interval_s: float = 10.0) -> Progress:
        """A :class:`Progress` that logs to this job's log."""
        return Progress(total, self.log, unit=unit, done=done, interval_s=interval_s)
