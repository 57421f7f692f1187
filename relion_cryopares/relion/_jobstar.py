"""Read what RELION wrote into ``<o>/job.star`` (read only: RELION owns the file)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _read_blocks(path: Path) -> dict:
    import starfile  # pandas import is slow; only pay for it when a job.star exists

    return starfile.read(path, always_dict=True)


def read_is_continue(job_star: str | os.PathLike) -> bool:
    """``_rlnJobIsContinue`` of a job.star (``data_job`` block); False when the file is missing.

    An unreadable file gives False with a warning: a fresh start never loses finished work,
    since jobs are incremental either way.
    """
    path = Path(job_star)
    if not path.is_file():
        return False
    try:
        job = _read_blocks(path).get("job", {})
        value = job.get("rlnJobIsContinue", 0) if isinstance(job, dict) else job["rlnJobIsContinue"].iloc[0]
        return str(value).strip().lower() in ("1", "true", "yes")
    except Exception as exc:  # noqa: BLE001 - a damaged job.star must not stop the job
        log.warning("could not read _rlnJobIsContinue from %s (%s); assuming a new run", path, exc)
        return False


def read_job_options(job_star: str | os.PathLike) -> dict[str, str]:
    """The ``data_joboptions_values`` loop of a job.star as ``{variable: value}`` strings ({} if missing)."""
    path = Path(job_star)
    if not path.is_file():
        return {}
    table = _read_blocks(path).get("joboptions_values")
    if table is None or not hasattr(table, "itertuples"):
        return {}
    return {
        str(row.rlnJobOptionVariable): "" if str(row.rlnJobOptionValue) == "nan" else str(row.rlnJobOptionValue)
        for row in table.itertuples(index=False)
    }
