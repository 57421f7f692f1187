"""``run_job``: the one entry point every External job goes through.

::

    SPEC = JobSpec("cryopares_reconstruct", ...)

    def _body(ctx: JobContext) -> list[OutputNode]:
        ...
        return [OutputNode(ctx.path("run_class001.mrc"), "map")]

    def main(argv: list[str] | None = None) -> int:
        return run_job(SPEC, _body, argv)

    def run() -> None:
        sys.exit(main())

It parses the command line, prepares ``<o>`` (stale exit files removed), sets up logging and torch
threads, writes ``<o>/cryopares_config.json``, runs the body, writes ``RELION_OUTPUT_NODES.star``
and, whatever happens, exactly one exit file. It returns the exit code (0 success, 1 failure,
2 aborted) and never calls ``sys.exit``, so tests can call ``main([...])`` in-process.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import platform
import shlex
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .. import __version__
from ..errors import InputError, JobAborted
from ._args import JobArgs, find_output_dir, parse_args
from ._atomic import read_json, write_json_atomic
from ._context import JobContext
from ._exitfiles import (ABORT_NOW, EXIT_ABORTED, EXIT_CODES, EXIT_FAILURE, EXIT_SUCCESS, clear_exit_files,
                         write_exit_file)
from ._jobstar import read_is_continue
from ._logs import LOG_FILE, PACKAGE_LOGGER, job_logging
from ._nodes import OUTPUT_NODES_FILE, OutputNode, detect_pipeline_version, write_output_nodes
from ._spec import JobSpec

CONFIG_FILE = "cryopares_config.json"

Body = Callable[[JobContext], Sequence[OutputNode]]


class _Terminated(Exception):
    """SIGTERM arrived (a queue time limit or ``scancel``)."""


def run_job(spec: JobSpec, body: Body, argv: Sequence[str] | None = None) -> int:
    """Run ``body`` as the External job ``spec`` with RELION's command line ``argv``.

    ``argv`` excludes the program name (default ``sys.argv[1:]``). Returns 0, 1 or 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        sys.stdout.write(spec.help_text())
        return 0
    output_dir = find_output_dir(argv)
    if output_dir is None:
        _stderr_line(f"--o <job directory>/ is required for {spec.name} (one value)")
        return EXIT_CODES[EXIT_FAILURE]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        clear_exit_files(output_dir)
        with contextlib.suppress(FileNotFoundError):  # present only after a successful run
            (output_dir / OUTPUT_NODES_FILE).unlink()
    except OSError as exc:
        _stderr_line(f"cannot use the job directory {output_dir}: {exc}")
        return EXIT_CODES[EXIT_FAILURE]

    verbose = "--verbose" in argv
    status = EXIT_FAILURE
    with job_logging(output_dir, verbose), _torch_threads() as set_threads, _sigterm_raises():
        log = logging.getLogger(f"{PACKAGE_LOGGER}.jobs.{spec.name}")
        log.debug("==== %s started: %s", spec.name, shlex.join([spec.name, *argv]))
        try:
            status = _run(spec, body, argv, output_dir, log, set_threads)
        except JobAborted as exc:
            log.warning("aborted on request (%s); finished work is kept for a continue", exc)
            with contextlib.suppress(FileNotFoundError):
                (output_dir / ABORT_NOW).unlink()
            status = EXIT_ABORTED
        except KeyboardInterrupt:
            log.warning("aborted by keyboard interrupt")
            status = EXIT_ABORTED
        except BaseException as exc:  # noqa: BLE001 - every failure must end in an exit file
            _report_failure(exc, log, output_dir, verbose)
            status = EXIT_FAILURE
        finally:
            try:
                write_exit_file(output_dir, status)
            except OSError as exc:
                _stderr_line(f"could not write {status} in {output_dir}: {exc}")
            log.info("%s: %s", spec.name, {EXIT_SUCCESS: "finished", EXIT_FAILURE: "FAILED",
                                           EXIT_ABORTED: "aborted"}[status])
    return EXIT_CODES[status]


def _run(spec: JobSpec, body: Body, argv: list[str], output_dir: Path, log: logging.Logger,
         set_threads: Callable[[int], None]) -> str:
    args = parse_args(spec, argv)
    set_threads(args.threads)
    for flag, path in args.inputs.items():
        if not path.exists():
            raise InputError(f"input file not found (--{flag})", path)
    is_continue = read_is_continue(output_dir / "job.star")
    pipeline_version = detect_pipeline_version("default_pipeline.star", output_dir / "default_pipeline.star")
    previous = read_json(output_dir / CONFIG_FILE)
    config = resolved_config(spec, args, is_continue, pipeline_version)
    write_json_atomic(output_dir / CONFIG_FILE, config)
    log.info("%s (relion-cryopares %s): %s in %s, %d thread(s)", spec.name, __version__,
             "continuing" if is_continue else "new run", output_dir, args.threads)
    if args.params:
        log.info("parameters: %s", ", ".join(f"{k}={v}" for k, v in args.params.items()))
    ctx = JobContext(spec=spec, args=args, output_dir=output_dir, project_dir=Path.cwd().resolve(),
                     is_continue=is_continue, log=log, pipeline_version=pipeline_version,
                     previous_config=previous if isinstance(previous, dict) else None)
    nodes = list(body(ctx) or ())
    rows = []
    for node in nodes:
        if not Path(node.path).exists():
            raise RuntimeError(f"output node {node.path} was declared but not written")
        rows.append((ctx.relative(node.path), node))
    write_output_nodes(output_dir, rows, pipeline_version)
    for name, node in rows:
        log.info("output node: %s (%s)", name, node.label(pipeline_version))
    return EXIT_SUCCESS


def resolved_config(spec: JobSpec, args: JobArgs, is_continue: bool, pipeline_version: str) -> dict:
    """What ``cryopares_config.json`` records about a run: versions, command line, inputs, params."""
    torch_info: dict = {}
    try:
        import torch

        torch_info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                      "torch_threads": torch.get_num_threads()}
    except ImportError:
        torch_info = {"torch": None}
    return {
        "job": spec.name,
        "package": "relion-cryopares",
        "version": __version__,
        "command_line": shlex.join([spec.name, *args.argv]),
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cwd": str(Path.cwd()),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        **torch_info,
        "relion_pipeline_version": pipeline_version,
        "is_continue": is_continue,
        "output_dir": str(args.output_dir),
        "threads": args.threads,
        "inputs": {k: str(v) for k, v in args.inputs.items()},
        "params": dict(args.params),
    }


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if isinstance(exc, InputError):
        return text or type(exc).__name__
    if isinstance(exc, _Terminated):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _report_failure(exc: BaseException, log: logging.Logger, output_dir: Path, verbose: bool) -> None:
    """One ``ERROR:`` line to stderr (run.err); the traceback to the log file (and stderr if verbose)."""
    message = _one_line(exc)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if not isinstance(exc, (InputError, _Terminated)):
        message += f" (traceback in {output_dir / LOG_FILE})" if not verbose else ""
    log.error("%s", message)
    log.debug("traceback:\n%s", tb)
    if verbose:
        sys.stderr.write(tb)
    _stderr_line(message)


def _stderr_line(message: str) -> None:
    sys.stderr.write(f"ERROR: {message}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _torch_threads() -> Iterator[Callable[[int], None]]:
    """Yield a setter for torch's intra-op threads; restore the previous count afterwards."""
    try:
        import torch
    except ImportError:
        yield lambda n: None
        return
    before = torch.get_num_threads()
    try:
        yield torch.set_num_threads
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so the ``finally`` still writes an exit file."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise _Terminated("terminated by SIGTERM (queue time limit or scancel?)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
