"""Check rendered Schemes (4.0/5.x) and Schedules (3.1) before RELION runs them.

:func:`validate_scheme_dir` returns a list of readable problems (empty when the scheme is fine):

- the files parse, have RELION's blocks and labels, and ``_rlnSchemeName`` matches the directory;
- every variable an operator or job option uses (``$$name``) is defined, with the right kind
  (a boolean only into a Yes/No option, no string into a slider);
- no operator input is a literal number (RELION evaluates it as 0: constants are float variables);
  operator types exist in that RELION version (``exit_maxtime`` is 4.0+);
- edges join known nodes, every node is reachable from the start node (the first edge's input
  node: where ``--reset`` restarts), no node has two outgoing edges, only exits end; the current
  node (``_rln...CurrentNodeName``: the start node of a fresh scheme, but after a run the node where
  RELION stopped, often ``exit``, as RELION 5.0.1 writes it back) is a known node;
- External jobs run one of our commands, their param labels and input slots match the job's
  argument parser (its ``SPEC``), required ones are given, literal values convert;
- 3.1: ``schedule_pipeline.star`` lists every job and every job-to-job file.
"""

from __future__ import annotations

import os
import re
from collections import deque
from pathlib import Path

from ._jobs import (BOOLEAN_OPTIONS, EXTERNAL, INPUT_KEYS, JOB_DEFAULTS, JOB_MODULES, JOB_TYPE_INTS,
                    SLIDER_OPTIONS, command_name, external_params, job_spec)
from ._model import EXIT_TYPES, OPERATOR_TYPES_4, OPERATOR_TYPES_31
from ._star import StarBlock, StarSyntaxError, read_star

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_VAR_REF = re.compile(r"\$\$(\S*)")


def _words(form: str) -> tuple[str, str, str]:
    return ("Schedules", "schedule", "Schedule") if form == "3.1" else ("Schemes", "scheme", "Scheme")


def find_scheme_dirs(path: str | os.PathLike) -> list[Path]:
    """Scheme/Schedule dirs at or below ``path`` (a dir holding ``scheme.star`` or ``schedule.star``)."""
    root = Path(path)
    found = sorted({p.parent for pattern in ("scheme.star", "schedule.star") for p in root.rglob(pattern)})
    return found


def validate_tree(path: str | os.PathLike) -> list[str]:
    """Problems of every scheme below ``path`` (or of ``path`` itself), each prefixed with its dir."""
    dirs = find_scheme_dirs(path)
    if not dirs:
        return [f"{path}: no scheme.star or schedule.star found"]
    return [problem for d in dirs for problem in validate_scheme_dir(d)]


def validate_scheme_dir(path: str | os.PathLike) -> list[str]:
    """Problems of one ``Schemes/NAME`` or ``Schedules/NAME`` directory (empty list: fine)."""
    return _Checker(Path(path)).run()


class _Checker:
    def __init__(self, directory: Path):
        self.dir = directory
        self.problems: list[str] = []
        self.form = "3.1" if (directory / "schedule.star").exists() else "4"
        self.top, self.stem, self.label = _words(self.form)
        self.vars: dict[str, str] = {}  # name -> kind
        self.operators: dict[str, dict[str, str]] = {}
        self.jobs: dict[str, dict[str, str]] = {}
        self.job_options: dict[str, dict[str, str]] = {}
        self.job_types: dict[str, int] = {}

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.dir}: {text}")

    def run(self) -> list[str]:
        star = self.dir / f"{self.stem}.star"
        if not star.exists():
            self.problem("no scheme.star (RELION 4.0/5.x) or schedule.star (RELION 3.1)")
            return self.problems
        try:
            blocks = read_star(star)
        except (OSError, StarSyntaxError) as exc:
            self.problem(f"cannot read {star.name}: {exc}")
            return self.problems
        start = self._general(blocks)
        self._variables(blocks)
        self._operators(blocks)
        self._jobs(blocks)
        self._edges(blocks, start)
        if self.form == "3.1":
            self._schedule_pipeline()
        return self.problems

    # blocks ------------------------------------------------------------------------------
    def _block(self, blocks: dict[str, StarBlock], kind: str, labels: list[str], required: bool) -> StarBlock | None:
        name = f"{self.stem}_{kind}"
        block = blocks.get(name)
        if block is None:
            if required:
                self.problem(f"missing block data_{name}")
            return None
        missing = [lbl for lbl in labels if not block.has_label(lbl)]
        if missing:
            self.problem(f"data_{name} lacks {', '.join(missing)}")
            return None
        return block

    def _general(self, blocks: dict[str, StarBlock]) -> str | None:
        name_label, node_label = f"_rln{self.label}Name", f"_rln{self.label}CurrentNodeName"
        block = self._block(blocks, "general", [name_label, node_label], True)
        if block is None:
            return None
        expected = f"{self.top}/{self.dir.name}/"
        if block.pairs[name_label] != expected:
            self.problem(f"{name_label} is {block.pairs[name_label]!r}; RELION needs {expected!r} "
                         f"(the directory name) to find the jobs")
        if self.dir.parent.name != self.top:
            self.problem(f"a {self.stem}.star must be in {self.top}/{self.dir.name}/, not in {self.dir.parent.name}/")
        return block.pairs[node_label]

    def _variables(self, blocks: dict[str, StarBlock]) -> None:
        for kind, word in (("float", "Float"), ("bool", "Boolean"), ("string", "String")):
            labels = [f"_rln{self.label}{word}Variable{part}" for part in ("Name", "Value", "ResetValue")]
            block = self._block(blocks, "floats" if kind == "float" else f"{kind}s", labels, False)
            for row in block.rows if block else []:
                name = row[labels[0]]
                if name in self.vars:
                    self.problem(f"variable {name} is defined twice")
                self.vars[name] = kind
                for label in labels[1:]:
                    value = row[label]
                    if kind == "float" and not _NUMBER.match(value):
                        self.problem(f"float variable {name}: {value!r} is not a number")
                    if kind == "bool" and value not in ("0", "1"):
                        self.problem(f"boolean variable {name}: {value!r} is not 0 or 1")

    def _operators(self, blocks: dict[str, StarBlock]) -> None:
        parts = ("Name", "Type", "Output", "Input1", "Input2")
        labels = [f"_rln{self.label}Operator{p}" for p in parts]
        block = self._block(blocks, "operators", labels, False)
        known = OPERATOR_TYPES_31 if self.form == "3.1" else OPERATOR_TYPES_4
        for row in block.rows if block else []:
            name, type_, output, in1, in2 = (row[label] for label in labels)
            self.operators[name] = {"type": type_}
            if type_ not in known:
                extra = " (RELION 4.0+ only)" if type_ in OPERATOR_TYPES_4 else ""
                self.problem(f"operator {name}: unknown type {type_!r}{extra}")
                continue
            for role, value, want in zip(("input1", "input2", "output"), (in1, in2, output), known[type_]):
                self._operand(name, type_, role, value, want)

    def _operand(self, op: str, type_: str, role: str, value: str, want: str | None) -> None:
        unused = value in ("", "undefined")
        if _NUMBER.match(value):
            self.problem(f"operator {op} ({type_}): {role} is the literal number {value}; RELION reads it as 0 "
                         f"- define a float variable with that value and use its name")
            return
        if want is None:
            if not unused:
                self.problem(f"operator {op} ({type_}) does not use {role}, but it is {value!r}")
            return
        optional = want.endswith("?")
        want = want.rstrip("?")
        if unused:
            if not optional:
                self.problem(f"operator {op} ({type_}) needs {role}")
            return
        kind = self.vars.get(value)
        if kind is None:
            self.problem(f"operator {op} ({type_}): {role} {value!r} is not a defined variable")
        elif want == "number" and kind != "float":
            self.problem(f"operator {op} ({type_}): {role} {value!r} must be a float variable, it is a {kind}")
        elif want in ("float", "bool", "string") and kind != want:
            self.problem(f"operator {op} ({type_}): {role} {value!r} must be a {want} variable, it is a {kind}")

    def _jobs(self, blocks: dict[str, StarBlock]) -> None:
        labels = [f"_rln{self.label}Job{p}" for p in ("NameOriginal", "Name", "Mode", "HasStarted")]
        block = self._block(blocks, "jobs", labels, False)
        modes = ("new", "continue", "overwrite") if self.form == "3.1" else ("new", "continue")
        rows = block.rows if block else []
        self.jobs = {row[labels[0]]: row for row in rows}
        for name, row in self.jobs.items():
            if row[labels[2]] not in modes:
                self.problem(f"job {name}: mode {row[labels[2]]!r} is not one of {', '.join(modes)}")
            self._job_star(name)

    def _job_star(self, name: str) -> None:
        path = self.dir / name / "job.star"
        if not path.exists():
            self.problem(f"job {name}: {name}/job.star is missing")
            return
        try:
            blocks = read_star(path)
        except (OSError, StarSyntaxError) as exc:
            self.problem(f"job {name}: cannot read job.star: {exc}")
            return
        header = blocks.get("job")
        values = blocks.get("joboptions_values")
        if header is None or values is None or not values.has_label("_rlnJobOptionVariable"):
            self.problem(f"job {name}: job.star needs data_job and a data_joboptions_values loop")
            return
        process = header.pairs.get("_rlnJobTypeLabel", "")
        type_int = header.pairs.get("_rlnJobType", "")
        if not process or not type_int.isdigit():
            self.problem(f"job {name}: job.star needs both _rlnJobTypeLabel (RELION 4/5) and _rlnJobType (3.1)")
            return
        if JOB_TYPE_INTS.get(process, int(type_int)) != int(type_int):
            self.problem(f"job {name}: _rlnJobType {type_int} does not match {process}")
        self.job_types[name] = int(type_int)
        options = {row["_rlnJobOptionVariable"]: row.get("_rlnJobOptionValue", "") for row in values.rows}
        self.job_options[name] = options
        defaults = JOB_DEFAULTS.get(process)
        if defaults is not None:
            unknown = sorted(set(options) - set(defaults))
            if unknown:
                self.problem(f"job {name}: unknown {process} options {', '.join(unknown)}")
        for key, value in options.items():
            self._option_refs(name, process, key, value)
        if process == EXTERNAL:
            self._external(name, options)

    def _option_refs(self, job: str, process: str, key: str, value: str) -> None:
        for ref in _VAR_REF.findall(value):
            kind = self.vars.get(ref)
            if kind is None:
                self.problem(f"job {job}: option {key} uses $${ref}, which is not a defined variable")
            elif kind == "bool" and key not in BOOLEAN_OPTIONS.get(process, ()):
                self.problem(f"job {job}: boolean variable $${ref} can only go into a Yes/No option, not {key}")
            elif kind != "bool" and key in BOOLEAN_OPTIONS.get(process, ()):
                self.problem(f"job {job}: Yes/No option {key} needs a boolean variable, $${ref} is a {kind}")
            elif kind == "string" and key in SLIDER_OPTIONS.get(process, ()):
                self.problem(f"job {job}: string variable $${ref} cannot go into the number option {key}")
        for word in value.split():
            for top in ("Schemes/", "Schedules/"):
                if not word.startswith(top):
                    continue
                parts = word[len(top):].split("/")
                if top != f"{self.top}/":
                    self.problem(f"job {job}: option {key} refers to {word}; this is a {self.top} directory")
                elif parts[0] != self.dir.name:
                    self.problem(f"job {job}: option {key} refers to another scheme: {word}")
                elif len(parts) < 3 or parts[1] not in self.jobs:
                    self.problem(f"job {job}: option {key} refers to {word}, not a file of a job of this scheme")
                elif parts[1] == job:
                    self.problem(f"job {job}: option {key} refers to its own output {word}")

    def _external(self, job: str, options: dict[str, str]) -> None:
        command = command_name(options.get("fn_exe", ""))
        if command not in JOB_MODULES:
            self.problem(f"job {job}: fn_exe {options.get('fn_exe', '')!r} is not one of our jobs "
                         f"({', '.join(JOB_MODULES)})")
            return
        spec, _ = job_spec(command)
        if spec is None:
            return
        given_inputs = {INPUT_KEYS[k] for k in INPUT_KEYS if options.get(k, "").strip()}
        for flag in sorted(given_inputs):
            if spec.input(flag) is None:
                self.problem(f"job {job}: {command} does not read --{flag} (leave that input empty)")
        for item in spec.inputs:
            if item.required and item.flag not in given_inputs:
                self.problem(f"job {job}: {command} needs --{item.flag}")
        labels: list[str] = []
        for label, value in external_params(options):
            param = spec.param(label)
            if label in labels:
                self.problem(f"job {job}: param label {label} is given twice")
            labels.append(label)
            if param is None:
                known = ", ".join(p.name for p in spec.params)
                self.problem(f"job {job}: {command} has no parameter --{label} (known: {known})")
                continue
            if not value.strip() and param.type != "bool":
                self.problem(f"job {job}: --{label} has an empty value; {command} needs a {param.type}")
            elif value.strip() and "$$" not in value:
                try:
                    param.convert(value)
                except ValueError as exc:
                    self.problem(f"job {job}: --{label} {exc}")
        for param in spec.params:
            if param.required and param.name not in labels:
                self.problem(f"job {job}: {command} needs --{param.name}")

    def _edges(self, blocks: dict[str, StarBlock], start: str | None) -> None:
        parts = ("InputNodeName", "OutputNodeName", "IsFork", "OutputNodeNameIfTrue", "BooleanVariable")
        labels = [f"_rln{self.label}Edge{p}" for p in parts]
        block = self._block(blocks, "edges", labels, True)
        if block is None:
            return
        nodes = set(self.operators) | set(self.jobs)
        both = set(self.operators) & set(self.jobs)
        if both:
            self.problem(f"names used for both an operator and a job: {', '.join(sorted(both))}")
        graph: dict[str, list[str]] = {}
        for row in block.rows:
            source, target, fork, if_true, var = (row[label] for label in labels)
            targets = [target] + ([if_true] if fork == "1" else [])
            for node in (source, *targets):
                if node not in nodes:
                    self.problem(f"edge {source} -> {node}: {node!r} is neither an operator nor a job")
            if fork == "1" and self.vars.get(var) != "bool":
                self.problem(f"fork at {source}: {var!r} is not a boolean variable")
            if source in graph:
                self.problem(f"node {source} has more than one outgoing edge; RELION follows only the last")
            graph[source] = targets
        if not block.rows:
            self.problem("no edges")
            return
        current, start = start, block.rows[0][labels[0]]  # --reset starts at the first edge's input node
        if current not in nodes:
            self.problem(f"the current node {current!r} is neither an operator nor a job")
        if start not in nodes:
            return
        reached, todo = {start}, deque([start])
        while todo:
            for nxt in graph.get(todo.popleft(), []):
                if nxt in nodes and nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        for node in sorted(nodes - reached):
            self.problem(f"node {node} cannot be reached from the start node {start}")
        for node in sorted(nodes - set(graph)):
            if self.operators.get(node, {}).get("type") not in EXIT_TYPES:
                self.problem(f"node {node} has no outgoing edge: the scheme would stop there without an exit")

    def _schedule_pipeline(self) -> None:
        path = self.dir / "schedule_pipeline.star"
        if not path.exists():
            self.problem("schedule_pipeline.star is missing (RELION 3.1 needs the jobs listed there)")
            return
        try:
            blocks = read_star(path)
        except (OSError, StarSyntaxError) as exc:
            self.problem(f"cannot read schedule_pipeline.star: {exc}")
            return
        base = f"Schedules/{self.dir.name}/"
        processes = {r["_rlnPipeLineProcessName"]: r.get("_rlnPipeLineProcessType", "")
                     for r in (blocks.get("pipeline_processes") or StarBlock("")).rows}
        for job, type_int in self.job_types.items():
            got = processes.get(f"{base}{job}/")
            if got is None:
                self.problem(f"schedule_pipeline.star does not list the job {base}{job}/")
            elif got != str(type_int):
                self.problem(f"schedule_pipeline.star: {base}{job}/ has type {got}, its job.star {type_int}")
        inputs = {(r["_rlnPipeLineEdgeFromNode"], r["_rlnPipeLineEdgeProcess"])
                  for r in (blocks.get("pipeline_input_edges") or StarBlock("")).rows}
        outputs = {(r["_rlnPipeLineEdgeProcess"], r["_rlnPipeLineEdgeToNode"])
                   for r in (blocks.get("pipeline_output_edges") or StarBlock("")).rows}
        for job, options in self.job_options.items():
            for word in " ".join(options.values()).split():
                parts = word[len(base):].split("/") if word.startswith(base) else []
                if len(parts) >= 2 and parts[0] in self.jobs:
                    if (word, f"{base}{job}/") not in inputs or (f"{base}{parts[0]}/", word) not in outputs:
                        self.problem(f"schedule_pipeline.star lacks the node {word} from {parts[0]} to {job} "
                                     "(RELION 3.1 would not replace it by the job's real directory)")
