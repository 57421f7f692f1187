"""The scheme model: variables, operators, jobs and edges of a RELION Scheme (4.0/5.x) or Schedule (3.1).

One :class:`Scheme` renders to both forms (:mod:`._render`). Node names are operator and job names;
an :class:`Edge` either always goes to ``target`` or, as a fork, to ``target_if_true`` when its
boolean variable is true and to ``target`` otherwise. RELION follows the *last* edge leaving a node
and starts (after ``--reset``) at the input node of the *first* edge, so a scheme lists the edge
leaving :attr:`Scheme.start` first and gives every node at most one outgoing edge.

RELION quirks the model encodes (shared/RELION_CONTRACT.md §5):

- a literal number as an operator input evaluates to 0: constants are float variables;
- ``exit_maxtime`` (and ``bool=set``/``string=set``) do not exist in RELION 3.1: such operators
  carry ``min_relion="4.0"`` and are bypassed in the 3.1 rendering;
- job modes are ``new`` and ``continue``; 3.1 also knows ``overwrite`` (rendered as ``continue``
  for 4.0/5.x).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Mapping

VARIABLE_KINDS = ("float", "bool", "string")
JOB_MODES = ("new", "continue", "overwrite")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: Operator types of RELION 3.1's scheduler (src/scheduler.h) -> the kind of variable each input
#: and the output must be (None: unused, "any": any variable, "number": a float variable).
OPERATOR_TYPES_31: dict[str, tuple[str | None, str | None, str | None]] = {
    # type: (input1, input2, output)
    "bool=and": ("bool", "bool", "bool"), "bool=or": ("bool", "bool", "bool"),
    "bool=not": ("bool", None, "bool"),
    "bool=gt": ("float", "number", "bool"), "bool=lt": ("float", "number", "bool"),
    "bool=eq": ("float", "number", "bool"), "bool=ge": ("float", "number", "bool"),
    "bool=le": ("float", "number", "bool"),
    "bool=file_exists": ("string", None, "bool"), "bool=read_star": ("string", "number?", "bool"),
    "float=set": ("float", None, "float"), "float=plus": ("float", "number", "float"),
    "float=minus": ("float", "number", "float"), "float=mult": ("float", "number", "float"),
    "float=divide": ("float", "number", "float"), "float=round": ("float", None, "float"),
    "float=count_images": ("string", "string?", "float"), "float=count_words": ("string", None, "float"),
    "float=read_star": ("string", "number?", "float"), "float=star_table_max": ("string", None, "float"),
    "float=star_table_min": ("string", None, "float"), "float=star_table_avg": ("string", None, "float"),
    "float=star_table_sort_idx": ("string", "number", "float"),
    "string=join": ("string", "string", "string"), "string=before_first": ("string", "string", "string"),
    "string=after_first": ("string", "string", "string"), "string=before_last": ("string", "string", "string"),
    "string=after_last": ("string", "string", "string"), "string=read_star": ("string", "number?", "string"),
    "string=glob": ("string", None, "string"), "string=nth_word": ("string", "number", "string"),
    "touch_file": ("string", None, None), "copy_file": ("string", "string", None),
    "move_file": ("string", "string", None), "delete_file": ("string", None, None),
    "wait": ("float", None, "float?"), "email": ("any", "any?", None), "exit": (None, None, None),
}

#: RELION 4.0/5.x (src/schemer.h) adds these.
OPERATOR_TYPES_4: dict[str, tuple[str | None, str | None, str | None]] = {
    **OPERATOR_TYPES_31,
    "bool=set": ("bool", None, "bool"), "string=set": ("string", None, "string"),
    "exit_maxtime": ("float", None, None),
}

#: Operators that end the scheme (RELION stops when one returns false).
EXIT_TYPES = ("exit", "exit_maxtime")


@dataclass(frozen=True)
class Variable:
    """A scheme variable (``$$name`` in job options). ``setting=True`` marks a user setting:
    documented, and what ``cryopares_install_scheme --set`` is meant for."""

    name: str
    kind: str
    value: float | bool | str
    help: str = ""
    setting: bool = False

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"variable name {self.name!r}: letters, digits and '_', starting with a letter")
        if self.kind not in VARIABLE_KINDS:
            raise ValueError(f"variable {self.name}: kind must be one of {VARIABLE_KINDS}")
        object.__setattr__(self, "value", convert_value(self.kind, self.value, self.name))

    def with_value(self, value: object) -> "Variable":
        """A copy holding ``value`` (converted to this variable's kind)."""
        return replace(self, value=convert_value(self.kind, value, self.name))


def convert_value(kind: str, value: object, name: str = "value") -> float | bool | str:
    """Convert ``value`` to a float, bool or string variable value (``ValueError`` if it cannot)."""
    if kind == "float":
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{name} is a float variable: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{name}: {value!r} is not a finite number")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "y", "on"):
            return True
        if text in ("0", "false", "no", "n", "off"):
            return False
        raise ValueError(f"{name} is a boolean variable: {value!r} is not true/false")
    text = str(value)
    if '"' in text or "\n" in text:
        raise ValueError(f"{name}: a string variable cannot hold a double quote or a newline")
    return text


@dataclass(frozen=True)
class Operator:
    """An operator node. ``type`` is RELION's (``"bool=file_exists"``, ``"wait"``, ``"exit"`` ...);
    inputs and output name variables (``None``: unused, written as ``undefined``)."""

    name: str
    type: str
    input1: str | None = None
    input2: str | None = None
    output: str | None = None
    min_relion: str = "3.1"
    help: str = ""

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"operator name {self.name!r}: letters, digits and '_', starting with a letter")
        if self.type not in OPERATOR_TYPES_4:
            raise ValueError(f"operator {self.name}: unknown type {self.type!r}")
        if self.min_relion == "3.1" and self.type not in OPERATOR_TYPES_31:
            object.__setattr__(self, "min_relion", "4.0")


@dataclass(frozen=True)
class Job:
    """A job node: its RELION process (``relion.external`` ...), the 3.1 int type, the mode, and the
    job.star option values that differ from the defaults (``$$var`` and ``Schemes/NAME/JOB/file``
    references allowed). ``outputs`` maps files this job writes, that other jobs of the scheme
    read, to their node kind (:data:`relion_cryopares.relion.NODE_TYPES`)."""

    name: str
    process: str
    type_int: int
    mode: str = "new"
    options: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    help: str = ""

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"job name {self.name!r}: letters, digits and '_', starting with a letter")
        if self.mode not in JOB_MODES:
            raise ValueError(f"job {self.name}: mode must be one of {JOB_MODES}, not {self.mode!r}")
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "outputs", dict(self.outputs))


@dataclass(frozen=True)
class Edge:
    """``source -> target``; a fork when ``bool_var`` is set: true -> ``target_if_true``, false -> ``target``."""

    source: str
    target: str
    bool_var: str | None = None
    target_if_true: str | None = None

    def __post_init__(self) -> None:
        if (self.bool_var is None) != (self.target_if_true is None):
            raise ValueError(f"edge {self.source}: a fork needs both bool_var and target_if_true")

    @property
    def is_fork(self) -> bool:
        return self.bool_var is not None

    def targets(self) -> tuple[str, ...]:
        return (self.target,) if self.target_if_true is None else (self.target_if_true, self.target)


@dataclass(frozen=True)
class Scheme:
    """A whole scheme; :meth:`check` raises ``ValueError`` on a structural problem."""

    name: str
    description: str
    variables: tuple[Variable, ...]
    operators: tuple[Operator, ...]
    jobs: tuple[Job, ...]
    edges: tuple[Edge, ...]
    start: str

    def __post_init__(self) -> None:
        for attr in ("variables", "operators", "jobs", "edges"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if not NAME_RE.match(self.name):
            raise ValueError(f"scheme name {self.name!r}: letters, digits and '_', starting with a letter")

    # lookups -------------------------------------------------------------------------------
    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)

    def node_names(self) -> list[str]:
        return [o.name for o in self.operators] + [j.name for j in self.jobs]

    def job(self, name: str) -> Job | None:
        return next((j for j in self.jobs if j.name == name), None)

    def settings(self) -> list[Variable]:
        """The user settings, in declaration order."""
        return [v for v in self.variables if v.setting]

    # edits ---------------------------------------------------------------------------------
    def with_values(self, values: Mapping[str, object]) -> "Scheme":
        """A copy with variables set (value and reset value); ``KeyError`` for an unknown name."""
        unknown = sorted(set(values) - {v.name for v in self.variables})
        if unknown:
            known = ", ".join(v.name for v in self.settings()) or "(none)"
            raise KeyError(f"{self.name} has no variable {', '.join(unknown)}; its settings: {known}")
        return replace(self, variables=tuple(v.with_value(values[v.name]) if v.name in values else v
                                             for v in self.variables))

    def renamed(self, name: str) -> "Scheme":
        """The same scheme under another name (job options follow: ``Schemes/OLD/`` -> ``Schemes/NEW/``)."""
        if not NAME_RE.match(name):
            raise ValueError(f"scheme name {name!r}: letters, digits and '_', starting with a letter")
        jobs = tuple(replace(j, options={k: rename_scheme_refs(v, self.name, name) for k, v in j.options.items()})
                     for j in self.jobs)
        return replace(self, name=name, jobs=jobs)

    def check(self) -> None:
        """Structural checks that need no files: unique names, edges between known nodes, start first."""
        names = self.node_names()
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"{self.name}: duplicate node names {sorted(duplicates)}")
        var_names = [v.name for v in self.variables]
        if len(set(var_names)) != len(var_names):
            raise ValueError(f"{self.name}: duplicate variable names")
        clash = set(var_names) & set(names)
        if clash:
            raise ValueError(f"{self.name}: names used for both a variable and a node: {sorted(clash)}")
        if not self.edges or self.edges[0].source != self.start:
            raise ValueError(f"{self.name}: the first edge must leave the start node {self.start}")
        sources = [e.source for e in self.edges]
        if len(set(sources)) != len(sources):
            raise ValueError(f"{self.name}: a node has more than one outgoing edge (RELION follows only the last)")
        for edge in self.edges:
            for node in (edge.source, *edge.targets()):
                if node not in names:
                    raise ValueError(f"{self.name}: edge {edge.source} -> {node}: unknown node {node}")


SCHEME_DIRS = ("Schemes/", "Schedules/")


def scheme_ref(scheme: str, job: str, file: str, form: str = "Schemes") -> str:
    """``Schemes/<scheme>/<job>/<file>``: how a job option names another job's output."""
    return f"{form}/{scheme}/{job}/{file}"


def rename_scheme_refs(value: str, old: str, new: str) -> str:
    """Replace ``Schemes/<old>/`` and ``Schedules/<old>/`` by the new scheme name in a value."""
    for base in SCHEME_DIRS:
        value = value.replace(f"{base}{old}/", f"{base}{new}/")
    return value
