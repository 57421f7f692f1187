"""Render a :class:`~._model.Scheme` to RELION files.

- RELION 4.0/5.x: ``Schemes/NAME/scheme.star`` (blocks ``scheme_general``, ``scheme_floats``,
  ``scheme_bools``, ``scheme_strings``, ``scheme_operators``, ``scheme_jobs``, ``scheme_edges``)
  and ``Schemes/NAME/JOB/job.star``.
- RELION 3.1: ``Schedules/NAME/schedule.star`` (the same blocks and labels with ``schedule``
  instead of ``scheme``), ``Schedules/NAME/schedule_pipeline.star`` (the jobs as scheduled
  processes with int types, and the job-to-job nodes: 3.1 maps ``Schedules/NAME/JOB/`` in an
  option to the job's current name only through this file) and the job dirs. Operators that 3.1
  lacks (``exit_maxtime``) are bypassed; options' ``Schemes/NAME/`` become ``Schedules/NAME/``.

The files are written the way RELION writes them (``# version 30001``, variables sorted by name as
RELION's maps hold them), so a freshly rendered scheme and one RELION rewrote differ only in values.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from relion_cryopares.relion import NODE_TYPES

from ._jobs import JOB_DEFAULTS
from ._model import Edge, Job, Scheme
from ._star import loop_block, pairs_block

FORMS = ("4", "3.1")


def _words(form: str) -> tuple[str, str, str]:
    """``(top directory, file stem, label stem)`` for a form."""
    return ("Schedules", "schedule", "Schedule") if form == "3.1" else ("Schemes", "scheme", "Scheme")


def scheme_dir(root: str | os.PathLike, name: str, form: str = "4") -> Path:
    """Where a scheme called ``name`` lives under a project ``root``."""
    return Path(root) / _words(form)[0] / name


def for_relion31(scheme: Scheme) -> Scheme:
    """The 3.1 view of a scheme: 4.0-only operators bypassed, option references under ``Schedules/``."""
    scheme.check()
    edges = list(scheme.edges)
    start = scheme.start
    operators = []
    for op in scheme.operators:
        if op.min_relion == "3.1":
            operators.append(op)
            continue
        leaving = [e for e in edges if e.source == op.name]
        if len(leaving) != 1 or leaving[0].is_fork:
            raise ValueError(f"{scheme.name}: cannot bypass {op.name} ({op.type}, RELION 4.0+) for RELION 3.1: "
                             "it needs exactly one plain outgoing edge")
        successor = leaving[0].target
        edges = [_redirect(e, op.name, successor) for e in edges if e.source != op.name]
        if start == op.name:
            start = successor
    first = [e for e in edges if e.source == start]
    edges = first + [e for e in edges if e.source != start]
    jobs = tuple(replace(j, options={k: v.replace(f"Schemes/{scheme.name}/", f"Schedules/{scheme.name}/")
                                     for k, v in j.options.items()}) for j in scheme.jobs)
    return replace(scheme, operators=tuple(operators), edges=tuple(edges), jobs=jobs, start=start)


def _redirect(edge: Edge, old: str, new: str) -> Edge:
    return replace(edge, target=new if edge.target == old else edge.target,
                   target_if_true=new if edge.target_if_true == old else edge.target_if_true)


def render_texts(scheme: Scheme, form: str = "4") -> dict[str, str]:
    """``{path relative to the project: text}`` of every file of the rendered scheme."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    scheme = for_relion31(scheme) if form == "3.1" else scheme
    scheme.check()
    top, stem, label = _words(form)
    base = f"{top}/{scheme.name}"
    files = {f"{base}/{stem}.star": _scheme_star(scheme, form)}
    for job in scheme.jobs:
        files[f"{base}/{job.name}/job.star"] = render_job_star(job, form)
    if form == "3.1":
        files[f"{base}/schedule_pipeline.star"] = _schedule_pipeline(scheme)
    return files


def render(scheme: Scheme, root: str | os.PathLike, form: str = "4", *, overwrite: bool = False) -> Path:
    """Write the scheme under project ``root`` (``Schemes/NAME`` or ``Schedules/NAME``) and return that dir.

    Refuses (``FileExistsError``) to replace an existing scheme dir unless ``overwrite``.
    """
    target = scheme_dir(root, scheme.name, form)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; remove it or pass overwrite (RELION keeps run state in it)")
    files = render_texts(scheme, form)
    for rel, text in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return target


def _scheme_star(scheme: Scheme, form: str) -> str:
    top, stem, label = _words(form)
    out = [pairs_block(f"{stem}_general", [(f"_rln{label}Name", f"{top}/{scheme.name}/"),
                                             (f"_rln{label}CurrentNodeName", scheme.start)])]
    for kind, word in (("float", "Float"), ("bool", "Boolean"), ("string", "String")):
        variables = sorted((v for v in scheme.variables if v.kind == kind), key=lambda v: v.name)
        if variables:
            labels = [f"_rln{label}{word}Variable{part}" for part in ("Name", "Value", "ResetValue")]
            out.append(loop_block(f"{stem}_{kind}s" if kind != "bool" else f"{stem}_bools", labels,
                                  [(v.name, v.value, v.value) for v in variables]))
    if scheme.operators:
        labels = [f"_rln{label}Operator{part}" for part in ("Name", "Type", "Output", "Input1", "Input2")]
        rows = [(o.name, o.type, o.output or "undefined", o.input1 or "undefined", o.input2 or "undefined")
                for o in sorted(scheme.operators, key=lambda o: o.name)]
        out.append(loop_block(f"{stem}_operators", labels, rows))
    if scheme.jobs:
        labels = [f"_rln{label}Job{part}" for part in ("NameOriginal", "Name", "Mode", "HasStarted")]
        rows = [(j.name, j.name, _mode(j, form), False) for j in sorted(scheme.jobs, key=lambda j: j.name)]
        out.append(loop_block(f"{stem}_jobs", labels, rows))
    labels = [f"_rln{label}Edge{part}" for part in
              ("InputNodeName", "OutputNodeName", "IsFork", "OutputNodeNameIfTrue", "BooleanVariable")]
    rows = [(e.source, e.target, e.is_fork, e.target_if_true or "undefined", e.bool_var or "undefined")
            for e in scheme.edges]
    out.append(loop_block(f"{stem}_edges", labels, rows))
    return "\n".join(out)


def _mode(job: Job, form: str) -> str:
    return "continue" if job.mode == "overwrite" and form != "3.1" else job.mode


def render_job_star(job: Job, form: str = "4") -> str:
    """A job.star: header with ``_rlnJobTypeLabel`` and ``_rlnJobType`` (3.1 reads the int, 4/5 the
    label) and every option of the job type (defaults, then this job's values)."""
    defaults = JOB_DEFAULTS.get(job.process)
    if defaults is None:
        raise ValueError(f"job {job.name}: no job.star defaults for process {job.process!r}")
    unknown = sorted(set(job.options) - set(defaults))
    if unknown:
        raise ValueError(f"job {job.name}: unknown {job.process} options {unknown}")
    header = [("_rlnJobTypeLabel", job.process), ("_rlnJobType", job.type_int), ("_rlnJobIsContinue", 0)]
    if form != "3.1":
        header.append(("_rlnJobIsTomo", 0))
    options = {**defaults, **job.options}
    return pairs_block("job", header) + "\n" + loop_block(
        "joboptions_values", ["_rlnJobOptionVariable", "_rlnJobOptionValue"], sorted(options.items()))


def referenced_outputs(scheme: Scheme, form: str = "3.1") -> list[tuple[str, str, str]]:
    """``(upstream job, file, downstream job)`` for every job option naming another job's output."""
    top = _words(form)[0]
    prefix = f"{top}/{scheme.name}/"
    refs = []
    for job in scheme.jobs:
        for value in job.options.values():
            for word in value.split():
                if word.startswith(prefix) and word.count("/") >= 3:
                    upstream, _, file = word[len(prefix):].partition("/")
                    refs.append((upstream, file, job.name))
    return refs


def node_kind(job: Job, file: str) -> str:
    """The node kind of an upstream job's output file: declared in ``job.outputs``, else guessed."""
    if file in job.outputs:
        return job.outputs[file]
    if file.endswith(".star"):
        return "particles"
    if "half1" in file:
        return "halfmap"
    return "map"


def _schedule_pipeline(scheme: Scheme) -> str:
    """RELION 3.1's ``schedule_pipeline.star`` for a (3.1-view) scheme."""
    base = f"Schedules/{scheme.name}/"
    jobs = {j.name: j for j in scheme.jobs}
    refs = [(up, file, down) for up, file, down in referenced_outputs(scheme) if up in jobs]
    nodes: dict[str, int] = {}
    for up, file, _ in refs:
        nodes[f"{base}{up}/{file}"] = NODE_TYPES[node_kind(jobs[up], file)][0]
    out = [pairs_block("pipeline_general", [("_rlnPipeLineJobCounter", len(scheme.jobs) + 1)])]
    out.append(loop_block("pipeline_processes", ["_rlnPipeLineProcessName", "_rlnPipeLineProcessAlias",
                                                 "_rlnPipeLineProcessType", "_rlnPipeLineProcessStatus"],
                          [(f"{base}{j.name}/", "None", j.type_int, 1) for j in scheme.jobs]))
    if nodes:
        out.append(loop_block("pipeline_nodes", ["_rlnPipeLineNodeName", "_rlnPipeLineNodeType"],
                              list(nodes.items())))
        seen_in = list(dict.fromkeys((f"{base}{up}/{file}", f"{base}{down}/") for up, file, down in refs))
        out.append(loop_block("pipeline_input_edges", ["_rlnPipeLineEdgeFromNode", "_rlnPipeLineEdgeProcess"],
                              seen_in))
        seen_out = list(dict.fromkeys((f"{base}{up}/", f"{base}{up}/{file}") for up, file, _ in refs))
        out.append(loop_block("pipeline_output_edges", ["_rlnPipeLineEdgeProcess", "_rlnPipeLineEdgeToNode"],
                              seen_out))
    return "\n".join(out)
