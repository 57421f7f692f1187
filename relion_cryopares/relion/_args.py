"""Parse the command line RELION gives an External job (see shared/RELION_CONTRACT.md §1).

::

    <fn_exe> --o External/job012/ [--in_parts F] [--in_3dref F] ... [--<label> <value>]... --j N [other args]

A value with spaces arrives as several words (they are joined with one space), an empty GUI value
arrives as a bare flag (``True`` for a bool parameter), ``--pipeline_control <dir>`` is accepted and
ignored, and anything the job does not declare is an error naming the known flags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from ..errors import InputError
from ._spec import INPUT_ALIASES, INPUT_FLAGS, JobSpec

log = logging.getLogger(__name__)


class ParameterError(InputError):
    """A command-line problem: unknown flag, missing or malformed value (one line)."""


@dataclass(frozen=True)
class JobArgs:
    """The parsed, typed command line of one run.

    ``output_dir`` is ``--o`` as a Path (project-relative when RELION runs the job);
    ``inputs`` maps the canonical input flag (``in_parts`` ...) to its Path, for the inputs given;
    ``params`` holds every declared parameter, converted, defaults filled in.
    """

    output_dir: Path
    threads: int = 1
    verbose: bool = False
    inputs: Mapping[str, Path] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ()

    def input(self, flag: str) -> Path | None:
        """The path given for an input flag (``"in_parts"``, ``"in_3dref"``, ...), or None."""
        return self.inputs.get(INPUT_ALIASES.get(flag, flag))

    @property
    def in_parts(self) -> Path | None:
        return self.input("in_parts")

    @property
    def in_3dref(self) -> Path | None:
        return self.input("in_3dref")

    @property
    def in_mask(self) -> Path | None:
        return self.input("in_mask")

    @property
    def in_mics(self) -> Path | None:
        return self.input("in_mics")

    @property
    def in_movies(self) -> Path | None:
        return self.input("in_movies")

    @property
    def in_coords(self) -> Path | None:
        return self.input("in_coords")


def _is_flag(word: str) -> bool:
    """``--name`` starts a new flag; ``-5``, ``-0.5`` or ``--`` are values."""
    return word.startswith("--") and len(word) > 2 and (word[2].isalpha() or word[2] == "_")


def split_flags(argv: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group ``argv`` into ``(name, words)`` pairs in order; ``--a=b`` counts as ``--a b``."""
    pairs: list[tuple[str, list[str]]] = []
    for word in argv:
        if _is_flag(word):
            name, eq, value = word[2:].partition("=")
            pairs.append((name.replace("-", "_"), [value] if eq else []))
        elif not pairs:
            raise ParameterError(f"unexpected argument {word!r}: arguments are --name value pairs")
        else:
            pairs[-1][1].append(word)
    return pairs


def find_output_dir(argv: Sequence[str]) -> Path | None:
    """``--o`` from a raw command line, before full parsing (so failures can still be reported)."""
    try:
        pairs = split_flags(argv)
    except ParameterError:
        return None
    values = [words for name, words in pairs if name == "o" and len(words) == 1]
    return Path(values[-1][0]) if values else None


def parse_args(spec: JobSpec, argv: Sequence[str]) -> JobArgs:
    """Convert and validate ``argv`` against ``spec``; raise :class:`ParameterError` on a problem."""
    seen: dict[str, list[str]] = {}
    for name, words in split_flags(argv):
        key = INPUT_ALIASES.get(name, name)
        if key in seen and key not in ("pipeline_control", "verbose"):
            log.warning("--%s given more than once; using the last value (%s)", name, " ".join(words))
        seen[key] = words

    def one_word(flag: str, words: list[str]) -> str:
        if len(words) != 1:
            raise ParameterError(f"--{flag} needs exactly one value, got {len(words)}: {' '.join(words)!r}")
        return words[0]

    if "o" not in seen:
        raise ParameterError(f"--o <job directory>/ is required for {spec.name}")
    output_dir = Path(one_word("o", seen.pop("o")))
    threads = 1
    if "j" in seen:
        text = one_word("j", seen.pop("j"))
        if not text.isdigit() or int(text) < 1:
            raise ParameterError(f"--j expects a positive number of threads, got {text!r}")
        threads = int(text)
    verbose_words = seen.pop("verbose", None)
    verbose = verbose_words is not None and not (verbose_words and verbose_words[0].lower() in ("no", "false", "0"))
    seen.pop("pipeline_control", None)

    inputs: dict[str, Path] = {}
    params: dict[str, Any] = {}
    for key, words in seen.items():
        if key in INPUT_FLAGS:
            if spec.input(key) is None:
                reads = ", ".join(f"--{i.flag}" for i in spec.inputs) or "no input files"
                raise ParameterError(f"{spec.name} does not read --{key}; leave that input empty (it reads: {reads})")
            if words:  # an empty input slot is "not given"
                inputs[key] = Path(" ".join(words))
            continue
        param = spec.param(key)
        if param is None:
            known = ", ".join(spec.known_flags()) or "(none)"
            raise ParameterError(f"unknown parameter --{key} for {spec.name}; known: {known}")
        if not words:
            if param.type != "bool":
                raise ParameterError(f"--{key} needs a value ({param.type}) for {spec.name}")
            params[key] = True
            continue
        try:
            params[key] = param.convert(" ".join(words))
        except ValueError as exc:
            raise ParameterError(f"--{key} {exc}") from None

    for item in spec.inputs:
        if item.required and item.flag not in inputs:
            raise ParameterError(f"{spec.name} needs --{item.flag} ({item.help or 'input file'})")
    for param in spec.params:
        if param.name not in params and param.required:
            raise ParameterError(f"{spec.name} needs --{param.name} ({param.help or param.type})")
    params = {p.name: params.get(p.name, p.default) for p in spec.params}  # declaration order
    return JobArgs(
        output_dir=output_dir,
        threads=threads,
        verbose=verbose,
        inputs=MappingProxyType(inputs),
        params=MappingProxyType(params),
        argv=tuple(argv),
    )
