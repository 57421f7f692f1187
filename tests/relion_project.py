"""Helpers for integration tests that run our jobs through the real RELION 3.1 pipeliner.

::

    from tests.relion_project import (requires_relion, make_project, write_launcher, add_external_job,
                                      run_jobs, job_statuses)

    @requires_relion
    def test_my_job(tmp_path):
        project = make_project(tmp_path)
        exe = write_launcher(project, "myjob", module="relion_cryopares.jobs.reconstruct")
        job = add_external_job(project, exe, inputs={"in_part": "data.star"}, params={"sym": "C1"})
        run_jobs(project, job)
        assert job_statuses(project)[job] == "Succeeded"

Facts (checked with Debian's RELION 3.1.3): ``relion_pipeliner --RunJobs`` is synchronous: it
launches the job, polls for its exit file and returns (exit code 0 even when the job failed) after
``--sec_wait_after`` seconds; it waits in 60-second steps for any input node file that does not
exist yet, so :func:`run_jobs` checks the inputs first. Process status ints in 3.1's
``default_pipeline.star``: 0 running, 1 scheduled, 2 succeeded, 3 failed, 4 aborted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

import pytest

REPO = Path(__file__).resolve().parents[1]

EXIT_FILES = ("RELION_JOB_EXIT_SUCCESS", "RELION_JOB_EXIT_FAILURE", "RELION_JOB_EXIT_ABORTED")

#: RELION 3.1 ``_rlnPipeLineProcessStatus`` ints -> the 4.0/5.x status labels.
STATUS_LABELS = {0: "Running", 1: "Scheduled", 2: "Succeeded", 3: "Failed", 4: "Aborted"}

_PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"


def relion_available() -> bool:
    """Whether the RELION pipeliner is on PATH."""
    return shutil.which("relion_pipeliner") is not None


#: Marks for a module that needs RELION: ``pytestmark = RELION_MARKS``.
RELION_MARKS = [pytest.mark.relion, pytest.mark.skipif(not relion_available(), reason="relion_pipeliner not on PATH")]


def requires_relion(test):
    """Decorator: mark a test ``relion`` and skip it when RELION is missing."""
    for mark in RELION_MARKS:
        test = mark(test)
    return test


def make_project(root: Path) -> Path:
    """Turn ``root`` into an empty RELION 3.1 project (a ``default_pipeline.star``) and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "default_pipeline.star").write_text(_PIPELINE_31)
    return root


def write_launcher(project: Path, name: str, *, script: Path | None = None, module: str | None = None,
                   env: Mapping[str, str] | None = None) -> str:
    """Write an executable ``<project>/<name>`` that runs a Python script or module with this Python.

    It is what the External job's ``fn_exe`` points at (``./<name>``). The repository is put on
    ``PYTHONPATH`` so tests' own modules import. Returns ``"./<name>"``.
    """
    if (script is None) == (module is None):
        raise ValueError("give exactly one of script= or module=")
    target = shlex.quote(str(script)) if script is not None else f"-m {shlex.quote(module)}"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in (env or {}).items())
    path = project / name
    path.write_text(
        "#!/bin/sh\n"
        f"export PYTHONPATH={shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f"{exports}exec {shlex.quote(sys.executable)} {target} \"$@\"\n"
    )
    path.chmod(0o755)
    return f"./{name}"


def _process_rows(project: Path) -> list[list[str]]:
    """Rows of the ``data_pipeline_processes`` loop of default_pipeline.star, as words."""
    rows: list[list[str]] = []
    in_block = in_loop = False
    for raw in (project / "default_pipeline.star").read_text().splitlines():
        line = raw.strip()
        if line.startswith("data_"):
            in_block, in_loop = line == "data_pipeline_processes", False
        elif not in_block or not line or line.startswith("#"):
            continue
        elif line.startswith("loop_"):
            in_loop = True
        elif line.startswith("_"):
            continue
        elif in_loop:
            rows.append(shlex.split(line))
    return rows


def job_statuses(project: Path) -> dict[str, str]:
    """``{"External/job001/": "Succeeded", ...}`` from default_pipeline.star (3.1 ints or 4/5 labels)."""
    out = {}
    for row in _process_rows(project):
        status = row[-1]
        out[row[0]] = STATUS_LABELS.get(int(status), status) if status.isdigit() else status
    return out


def pipeline_nodes(project: Path) -> dict[str, str]:
    """``{node name: type}`` from the ``data_pipeline_nodes`` loop (type is the 3.1 int as text)."""
    nodes: dict[str, str] = {}
    in_block = False
    for raw in (project / "default_pipeline.star").read_text().splitlines():
        line = raw.strip()
        if line.startswith("data_"):
            in_block = line == "data_pipeline_nodes"
        elif in_block and line and not line.startswith(("_", "#", "loop_")):
            words = shlex.split(line)
            nodes[words[0]] = words[1]
    return nodes


def _format_options(options: Mapping[str, str]) -> str:
    for key, value in options.items():
        if ";" in f"{key}{value}":
            raise ValueError(f"job option {key}: ';' cannot be passed through --addJobOptions")
    return ";".join(f"{k} == {v}" for k, v in options.items())


def add_external_job(project: Path, fn_exe: str, *, inputs: Mapping[str, str] | None = None,
                     params: Mapping[str, object] | None = None, threads: int = 1, other_args: str = "",
                     extra_options: Mapping[str, str] | None = None) -> str:
    """Add a scheduled External job with ``relion_pipeliner --addJob`` and return its name.

    ``inputs`` uses job.star keys (``in_part``, ``in_3dref``, ``in_mask``, ``in_mic``, ``in_mov``,
    ``in_coords``); ``params`` become param1..param10 label/value pairs, ``True`` a bare flag.
    """
    params = dict(params or {})
    if len(params) > 10:
        raise ValueError("an External job has at most 10 label/value pairs")
    options: dict[str, str] = {"fn_exe": fn_exe, "nr_threads": str(threads)}
    options.update(inputs or {})
    for i, (label, value) in enumerate(params.items(), start=1):
        options[f"param{i}_label"] = label
        if value is not True:
            options[f"param{i}_value"] = str(value)
    if other_args:
        options["other_args"] = other_args
    options.update(extra_options or {})
    before = set(job_statuses(project))
    _pipeliner(project, ["--addJob", "External", "--addJobOptions", _format_options(options)], timeout=60)
    added = sorted(set(job_statuses(project)) - before)
    if len(added) != 1:
        raise RuntimeError(f"relion_pipeliner --addJob added {added}")
    return added[0]


def _job_inputs(project: Path, job: str) -> list[str]:
    from relion_cryopares.relion import read_job_options

    options = read_job_options(project / job / "job.star")
    keys = ("in_mov", "in_mic", "in_part", "in_coords", "in_3dref", "in_mask")
    return [options[k] for k in keys if options.get(k)]


def run_jobs(project: Path, *jobs: str, timeout: float = 300, sec_wait_after: int = 0) -> subprocess.CompletedProcess:
    """Run scheduled jobs with ``relion_pipeliner --RunJobs`` and wait for it (it is synchronous).

    Fails at once when an input file is missing (RELION would wait for it in 60 s steps), and with
    the jobs' run.out/run.err when the pipeliner does not return within ``timeout`` seconds.
    """
    for job in jobs:
        missing = [p for p in _job_inputs(project, job) if not (project / p).exists()]
        if missing:
            raise FileNotFoundError(f"{job}: input files missing, RELION would wait for them: {missing}")
    names = "".join(f"{job} " for job in jobs)  # 3.1.3 drops the last job without a trailing space
    try:
        return _pipeliner(project, ["--RunJobs", names, "--sec_wait_after", str(sec_wait_after)], timeout)
    except subprocess.TimeoutExpired as exc:
        logs = "\n".join(f"--- {job}{f}:\n{read_text(project / job / f)}" for job in jobs for f in ("run.out", "run.err"))
        raise TimeoutError(f"relion_pipeliner --RunJobs {names!r} still running after {timeout} s\n{logs}") from exc


def _pipeliner(project: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    clear_locks(project)
    result = subprocess.run(["relion_pipeliner", *args], cwd=project, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"relion_pipeliner {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


def clear_locks(project: Path) -> None:
    """Remove ``.relion_lock*`` directories a crashed pipeliner left behind."""
    for lock in project.glob(".relion_lock*"):
        shutil.rmtree(lock, ignore_errors=True)


def exit_files(job_dir: Path) -> list[str]:
    """The RELION exit files present in ``job_dir``."""
    return [name for name in EXIT_FILES if (job_dir / name).exists()]


def wait_for_exit_file(job_dir: Path, timeout: float = 300, poll_s: float = 0.2) -> str:
    """Wait until an exit file appears in ``job_dir``; return its name (TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = exit_files(job_dir)
        if found:
            return found[0]
        time.sleep(poll_s)
    raise TimeoutError(f"no exit file in {job_dir} after {timeout} s")


def read_text(path: Path) -> str:
    """A file's text, or '' when it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def run_in_project(project: Path, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command in the project directory the way RELION does (cwd = project), capturing output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=timeout, env=env)


def run_job_in_project(module, project: Path, argv: list[str]) -> int:
    """``module.main(argv)`` with the project as the working directory (as RELION runs a job)."""
    cwd = os.getcwd()
    os.chdir(project)
    try:
        return module.main(argv)
    finally:
        os.chdir(cwd)
