"""Job nodes of schemes: RELION job.star defaults, builders for our External jobs and PostProcess,
and the command-line specs of our jobs (to check External param labels against).

An External job passes ``--<label> <value>`` for each GUI label/value pair (at most 10) and the
input slots as ``--in_parts`` etc. (shared/RELION_CONTRACT.md §1), so a scheme's External job is
checked against the job's :class:`~relion_cryopares.relion.JobSpec`.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Mapping

from relion_cryopares.relion import JobSpec

from ._model import Job


EXTERNAL = "relion.external"
POSTPROCESS = "relion.postprocess"

#: process label -> RELION 3.1 ``_rlnJobType``.
JOB_TYPE_INTS = {EXTERNAL: 99, POSTPROCESS: 15}

_QUEUE_DEFAULTS = {"do_queue": "No", "queuename": "openmpi", "qsub": "qsub", "qsubscript": "",
                   "min_dedicated": "1", "other_args": ""}

#: Every job.star option of the job types we use, with RELION's default (3.1.3 and 4/5 agree).
JOB_DEFAULTS: dict[str, dict[str, str]] = {
    EXTERNAL: {
        "fn_exe": "", "in_mov": "", "in_mic": "", "in_part": "", "in_coords": "", "in_3dref": "", "in_mask": "",
        **{f"param{i}_{part}": "" for i in range(1, 11) for part in ("label", "value")},
        "nr_threads": "1", **_QUEUE_DEFAULTS,
    },
    POSTPROCESS: {
        "fn_in": "", "fn_mask": "", "angpix": "-1", "do_auto_bfac": "Yes", "autob_lowres": "10",
        "do_adhoc_bfac": "No", "adhoc_bfac": "-1000", "fn_mtf": "", "mtf_angpix": "1",
        "do_skip_fsc_weighting": "No", "low_pass": "5", **_QUEUE_DEFAULTS,
    },
}

#: Options RELION declares as booleans (a ``$$`` bool variable may go only there) ...
BOOLEAN_OPTIONS = {
    EXTERNAL: {"do_queue"},
    POSTPROCESS: {"do_queue", "do_auto_bfac", "do_adhoc_bfac", "do_skip_fsc_weighting"},
}
#: ... and as sliders (no ``$$`` string variable there).
SLIDER_OPTIONS = {
    EXTERNAL: {"nr_threads", "min_dedicated"},
    POSTPROCESS: {"angpix", "autob_lowres", "adhoc_bfac", "mtf_angpix", "low_pass", "min_dedicated"},
}

#: External job.star input keys -> the flag our jobs receive.
INPUT_KEYS = {"in_mov": "in_movies", "in_mic": "in_mics", "in_part": "in_parts", "in_coords": "in_coords",
              "in_3dref": "in_3dref", "in_mask": "in_mask"}

#: Our External jobs: command -> module (exposing ``SPEC``).
JOB_MODULES = {
    "cryopares_train": "relion_cryopares.jobs.train",
    "cryopares_infer": "relion_cryopares.jobs.infer",
    "cryopares_localrefine": "relion_cryopares.jobs.localrefine",
    "cryopares_reconstruct": "relion_cryopares.jobs.reconstruct",
}

@lru_cache(maxsize=None)
def job_spec(command: str) -> tuple[JobSpec | None, str]:
    """``(spec, source)`` for one of our commands: the module's SPEC (``source="module"``), or
    ``(None, "unknown")`` for another command. A job module that cannot be imported is an error of
    the installation, raised as it is (there is no second copy of the specs to fall back on)."""
    module_name = JOB_MODULES.get(command)
    if module_name is None:
        return None, "unknown"
    return importlib.import_module(module_name).SPEC, "module"


def command_name(fn_exe: str) -> str:
    """The command of an ``fn_exe`` value: the last path component of its first word."""
    first = fn_exe.strip().split(" ")[0] if fn_exe.strip() else ""
    return first.rstrip("/").rsplit("/", 1)[-1]


def external_job(name: str, command: str, *, mode: str = "new", inputs: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, threads: str = "1", other_args: str = "",
                 queue: bool = True, outputs: Mapping[str, str] | None = None, help: str = "") -> Job:
    """An External job running one of our commands.

    ``inputs`` uses job.star keys (``in_part``, ``in_3dref``, ``in_mask``); ``params`` become the
    param1..param10 label/value pairs in order; ``queue=True`` takes the queue options from the
    scheme variables ``do_queue``, ``queue_name``, ``qsub`` and ``qsub_script``.
    """
    params = dict(params or {})
    if len(params) > 10:
        raise ValueError(f"job {name}: an External job has at most 10 label/value pairs, got {len(params)}")
    options: dict[str, str] = {"fn_exe": command, "nr_threads": threads}
    for key, value in (inputs or {}).items():
        if key not in INPUT_KEYS:
            raise ValueError(f"job {name}: unknown input key {key!r}; use one of {sorted(INPUT_KEYS)}")
        options[key] = value
    for i, (label, value) in enumerate(params.items(), start=1):
        options[f"param{i}_label"] = label
        options[f"param{i}_value"] = value
    if other_args:
        options["other_args"] = other_args
    if queue:
        options.update(queue_options())
    return Job(name, EXTERNAL, JOB_TYPE_INTS[EXTERNAL], mode, options, outputs or {}, help)


def queue_options() -> dict[str, str]:
    """Queue options taken from the scheme variables (see :func:`queue_variables`)."""
    return {"do_queue": "$$do_queue", "queuename": "$$queue_name", "qsub": "$$qsub",
            "qsubscript": "$$qsub_script"}


def postprocess_job(name: str, *, half1: str, mask: str, mode: str = "continue", angpix: str = "-1",
                    auto_bfac: str = "Yes", adhoc_bfac: str = "-1000", queue: bool = False,
                    outputs: Mapping[str, str] | None = None, help: str = "") -> Job:
    """A RELION PostProcess job on a half1 map (RELION finds half2 by name)."""
    options = {"fn_in": half1, "fn_mask": mask, "angpix": angpix, "do_auto_bfac": auto_bfac,
               "adhoc_bfac": adhoc_bfac}
    if queue:
        options.update(queue_options())
    return Job(name, POSTPROCESS, JOB_TYPE_INTS[POSTPROCESS], mode, options, outputs or {}, help)


def external_params(options: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ``(label, value)`` pairs of an External job's options (labels that are set)."""
    pairs = []
    for i in range(1, 11):
        label = options.get(f"param{i}_label", "").strip()
        if label:
            pairs.append((label, options.get(f"param{i}_value", "")))
    return pairs
