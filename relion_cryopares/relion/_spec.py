"""What a job declares: its typed parameters and the RELION input slots it reads.

A :class:`JobSpec` is a frozen description; :func:`relion_cryopares.relion.parse_args` converts and
validates a RELION command line against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Parameter types a job can declare.
PARAM_TYPES = ("float", "int", "str", "bool", "choice")

#: RELION's input flags (what ``--in_*`` an External job gets), canonical spelling first.
INPUT_FLAGS = ("in_parts", "in_3dref", "in_mask", "in_mics", "in_movies", "in_coords")

#: Other spellings accepted for the input flags (CCP-EM pipeliner, job.star keys typed by hand).
INPUT_ALIASES = {
    "in_3Dref": "in_3dref",
    "in_part": "in_parts",
    "in_mic": "in_mics",
    "in_mov": "in_movies",
    "in_movie": "in_movies",
}

#: Flags the contract itself handles; no job parameter may use these names.
RESERVED_FLAGS = frozenset({"o", "j", "verbose", "pipeline_control", "help", "h"})

_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "off"})


@dataclass(frozen=True)
class Param:
    """One ``--<name> <value>`` parameter (a GUI label/value pair of the External job).

    ``type`` is one of :data:`PARAM_TYPES`; a ``bool`` is switched on by a bare flag or takes
    yes/no/true/false/1/0; a ``choice`` takes one of ``choices``. ``minimum``/``maximum`` bound
    numbers (inclusive). ``default=None`` with ``required=False`` means "not set".
    """

    name: str
    type: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: type must be one of {PARAM_TYPES}, not {self.type!r}")
        if not self.name.replace("_", "").isalnum() or self.name in RESERVED_FLAGS:
            raise ValueError(f"parameter name {self.name!r} is not allowed")
        if self.name in INPUT_FLAGS or self.name in INPUT_ALIASES:
            raise ValueError(f"parameter name {self.name!r} is an input flag")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"parameter {self.name}: a choice needs choices")
        if self.type == "bool" and self.default is None:
            object.__setattr__(self, "default", False)
        if self.default is not None:
            object.__setattr__(self, "default", self.convert(self.default))

    def convert(self, value: Any) -> Any:
        """Convert a command-line word (or a Python default) to this parameter's type.

        Raises ``ValueError`` with a readable reason.
        """
        text = str(value).strip()
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(f"expects yes/no (or true/false, 1/0), got {text!r}")
        if self.type == "str":
            return text
        if self.type == "choice":
            if text not in self.choices:
                lowered = {c.lower(): c for c in self.choices}
                if text.lower() not in lowered:
                    raise ValueError(f"expects one of {', '.join(self.choices)}, got {text!r}")
                text = lowered[text.lower()]
            return text
        try:
            number = int(text) if self.type == "int" else float(text)
        except ValueError:
            kind = "an integer" if self.type == "int" else "a number"
            raise ValueError(f"expects {kind}, got {text!r}") from None
        if self.type == "float" and not math.isfinite(number):
            raise ValueError(f"expects a finite number, got {text!r}")
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"must be >= {self.minimum:g}, got {text}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"must be <= {self.maximum:g}, got {text}")
        return number

    def usage(self) -> str:
        """One help line: ``--sym <choice> (default C1): point-group symmetry``."""
        kind = "|".join(self.choices) if self.type == "choice" else self.type
        default = "required" if self.required else f"default {self.default}"
        return f"  --{self.name} <{kind}> ({default}): {self.help}".rstrip(": ")


@dataclass(frozen=True)
class Input:
    """A RELION input slot the job reads, e.g. ``Input("in_parts", required=True, help=...)``."""

    flag: str
    required: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if self.flag not in INPUT_FLAGS:
            raise ValueError(f"input flag must be one of {INPUT_FLAGS}, not {self.flag!r}")


@dataclass(frozen=True)
class JobSpec:
    """A job's name (as in messages, e.g. ``cryopares_reconstruct``), description, inputs, params."""

    name: str
    description: str = ""
    params: tuple[Param, ...] = ()
    inputs: tuple[Input, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate parameter names in {names}")

    def param(self, name: str) -> Param | None:
        """The declared parameter called ``name``, or None."""
        return next((p for p in self.params if p.name == name), None)

    def input(self, flag: str) -> Input | None:
        """The declared input for ``flag`` (canonical spelling), or None."""
        return next((i for i in self.inputs if i.flag == flag), None)

    def known_flags(self) -> list[str]:
        """Declared parameter and input flags, in declaration order, with ``--``."""
        return [f"--{p.name}" for p in self.params] + [f"--{i.flag}" for i in self.inputs]

    def help_text(self) -> str:
        """A usage text for ``--help``."""
        lines = [f"{self.name}: {self.description}".rstrip(": "), "", "Inputs:"]
        lines += [f"  --{i.flag} <file> ({'required' if i.required else 'optional'}): {i.help}" for i in self.inputs]
        lines += ["", "Parameters (External job label/value pairs):"]
        lines += [p.usage() for p in self.params]
        lines += ["", "Always: --o <job dir>/ [--j <threads>] [--verbose] [--pipeline_control <dir>]"]
        return "\n".join(lines) + "\n"
