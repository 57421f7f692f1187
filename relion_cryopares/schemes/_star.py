"""A small STAR reader/writer for Scheme, Schedule, pipeline and job.star files.

These files are small and their blocks differ from particle STAR files (key/value lists and
loops of text), so they get their own dependency-free code rather than pandas/starfile.
Values are written the way RELION writes them: ``""`` for an empty string, double quotes around
text with spaces, floats with six decimals, booleans of Scheme variables as ``0``/``1``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

VERSION_LINE = "# version 30001"


def format_value(value: object) -> str:
    """One STAR word: ``""`` when empty, quoted when it has spaces, ``%.6f`` for floats."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6f}"
    text = str(value)
    if text == "":
        return '""'
    if any(c.isspace() for c in text) or text.startswith(("_", "#", "data_", "loop_")):
        if '"' in text:
            raise ValueError(f"STAR value {text!r} has both spaces and a double quote")
        return f'"{text}"'
    return text


def pairs_block(name: str, pairs: Sequence[tuple[str, object]]) -> str:
    """A ``data_<name>`` block of ``_label value`` lines."""
    width = max((len(label) for label, _ in pairs), default=0) + 8
    lines = [VERSION_LINE, "", f"data_{name}", ""]
    lines += [f"{label:<{width}}{format_value(value)}" for label, value in pairs]
    return "\n".join(lines) + "\n \n\n"


def loop_block(name: str, labels: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A ``data_<name>`` block with one ``loop_`` of ``labels``."""
    lines = [VERSION_LINE, "", f"data_{name}", "", "loop_ "]
    lines += [f"{label} #{i}" for i, label in enumerate(labels, start=1)]
    for row in rows:
        if len(row) != len(labels):
            raise ValueError(f"data_{name}: row {row!r} does not have {len(labels)} values")
        lines.append(" ".join(format_value(v) for v in row))
    return "\n".join(lines) + "\n \n\n"


@dataclass
class StarBlock:
    """One ``data_`` block: its ``pairs`` (label -> value) and the rows of its loop (label -> value)."""

    name: str
    pairs: dict[str, str] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)

    def has_label(self, label: str) -> bool:
        return label in self.pairs or label in self.labels


class StarSyntaxError(ValueError):
    """A STAR file this reader cannot parse (with the line number)."""


def parse_star(text: str, source: str = "<text>") -> dict[str, StarBlock]:
    """Parse STAR text into ``{block name: StarBlock}`` (block names without ``data_``)."""
    blocks: dict[str, StarBlock] = {}
    block: StarBlock | None = None
    in_loop = header_done = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            block = StarBlock(line[5:].strip())
            blocks[block.name] = block
            in_loop = header_done = False
            continue
        if block is None:
            raise StarSyntaxError(f"{source}:{number}: text before the first data_ block")
        if line.startswith("loop_"):
            in_loop, header_done = True, False
            continue
        try:
            words = shlex.split(line, posix=True)
        except ValueError as exc:
            raise StarSyntaxError(f"{source}:{number}: {exc}") from None
        if in_loop and line.startswith("_") and not header_done:
            block.labels.append(words[0])
            continue
        if in_loop:
            header_done = True
            if len(words) != len(block.labels):
                raise StarSyntaxError(f"{source}:{number}: {len(words)} values for {len(block.labels)} labels "
                                      f"in data_{block.name}")
            block.rows.append(dict(zip(block.labels, words)))
            continue
        if not line.startswith("_") or len(words) > 2:
            raise StarSyntaxError(f"{source}:{number}: expected '_label value' in data_{block.name}")
        block.pairs[words[0]] = words[1] if len(words) == 2 else ""
    return blocks


def read_star(path: str | os.PathLike) -> dict[str, StarBlock]:
    """Parse the STAR file at ``path``."""
    return parse_star(Path(path).read_text(encoding="utf-8", errors="replace"), str(path))
