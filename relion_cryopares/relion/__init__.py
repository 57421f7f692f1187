"""The RELION External-job contract (shared/RELION_CONTRACT.md), used by every job.

A job declares a :class:`JobSpec` (typed :class:`Param` s and the :class:`Input` slots it reads),
writes a body ``(JobContext) -> list[OutputNode]`` and exposes
``main(argv=None) -> int: return run_job(SPEC, body, argv)``. :func:`run_job` does the rest:
command-line parsing, exit files, output-node file, logging, resolved config, torch threads.
All outputs are written with :func:`atomic_write` / :func:`atomic_path`.
"""

from ._args import JobArgs, ParameterError, parse_args
from ._atomic import (RELION_OWNED_FILES, atomic_path, atomic_write, read_json, write_bytes_atomic,
                      write_json_atomic, write_text_atomic)
from ._context import JobContext
from ._exitfiles import (ABORT_NOW, EXIT_ABORTED, EXIT_FAILURE, EXIT_FILES, EXIT_SUCCESS, abort_requested,
                         existing_exit_files)
from ._jobstar import read_is_continue, read_job_options
from ._logs import LOG_FILE
from ._nodes import NODE_TYPES, OUTPUT_NODES_FILE, OutputNode, detect_pipeline_version, format_output_nodes
from .._progress import Progress
from ._runner import CONFIG_FILE, run_job
from ._spec import INPUT_FLAGS, Input, JobSpec, Param

__all__ = [
    "ABORT_NOW", "CONFIG_FILE", "EXIT_ABORTED", "EXIT_FAILURE", "EXIT_FILES", "EXIT_SUCCESS", "INPUT_FLAGS",
    "LOG_FILE", "NODE_TYPES", "OUTPUT_NODES_FILE", "RELION_OWNED_FILES", "Input", "JobArgs", "JobContext",
    "JobSpec", "OutputNode", "Param", "ParameterError", "Progress", "abort_requested", "atomic_path",
    "atomic_write", "detect_pipeline_version", "existing_exit_files", "format_output_nodes", "parse_args",
    "read_is_continue", "read_job_options", "read_json", "run_job", "write_bytes_atomic", "write_json_atomic",
    "write_text_atomic",
]
