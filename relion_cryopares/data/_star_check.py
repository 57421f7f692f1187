"""Naming the line of a malformed STAR file: a row with too few or too many values, text in a
numeric column, a required value that is missing.

Reading stays vectorised (starfile/pandas parse every loop in one go). Only when that fails, or
when the parsed tables look wrong (a missing value, a numeric column holding text), is the file
scanned line by line (:func:`scan_loops`) to find the first bad row and name its line (1-based,
counted in the file) in one :class:`~relion_cryopares.errors.InputError`::

    Extract/job007/particles.star: line 57: 5 values for 7 columns of data_particles
    Extract/job007/particles.star: line 57: rlnDefocusU 'abc' is not a number
    Extract/job007/particles.star: line 57: rlnOpticsGroup has no value

Why a row-level message matters: pandas pads a short row with NaN (or shifts its values into the
wrong columns) and fails much later, far from the cause (``IntCastingNaNError``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from relion_cryopares.errors import InputError

#: RELION labels that always hold numbers: text there is an error even when the whole column is text.
NUMERIC_LABELS = frozenset({
    "rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize", "rlnImageDimensionality", "rlnVoltage",
    "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnCtfDataArePhaseFlipped",
    "rlnCtfDataAreCtfPremultiplied", "rlnMagnification", "rlnDetectorPixelSize", "rlnPixelSize",
    "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
    "rlnOriginX", "rlnOriginY", "rlnOriginZ", "rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst",
    "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor", "rlnCtfScalefactor",
    "rlnRandomSubset", "rlnClassNumber", "rlnGroupNumber", "rlnMaxValueProbDistribution",
    "rlnParticleFigureOfMerit", "rlnNrOfSignificantSamples", "rlnLogLikeliContribution",
    "rlnNormCorrection", "rlnHelicalTubeID", "rlnBeamTiltX", "rlnBeamTiltY",
})

#: Columns every row needs a value in (reading cannot go on without them).
REQUIRED_VALUES = ("rlnImageName", "rlnOpticsGroup", "rlnImagePixelSize")


@dataclass
class LoopRows:
    """Where the rows of one loop block are: ``lines[i]`` is the 1-based file line of data row ``i``
    and ``n_values[i]`` how many values it has (``columns`` is the header)."""

    block: str
    columns: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    n_values: list[int] = field(default_factory=list)
    pair_errors: list[tuple[int, str]] = field(default_factory=list)


def _count_values(line: str) -> int:
    """Values of a data line as starfile/pandas split them (white space, ``'``/``"`` quotes, ``#``)."""
    if '"' in line or "'" in line:
        try:
            return len(shlex.split(line.replace("'", '"'), comments=True))
        except ValueError:  # an unclosed quote: count words
            pass
    return len(line.split("#", 1)[0].split())


def scan_loops(path: Path) -> dict[str, LoopRows]:
    """Every data block of a STAR file with the lines of its loop rows (slow: Python per line;
    called only once a problem is known to exist). Pair blocks (``_label value``) get an entry
    with ``pair_errors`` for lines that are not one label and one value."""
    blocks: dict[str, LoopRows] = {}
    current: LoopRows | None = None
    state = None  # "block" (after data_), "header" (after loop_), "rows", "pairs"
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if line.startswith("data_"):
                current, state = LoopRows(line[5:]), "block"
                blocks[current.block] = current
                continue
            if current is None:
                continue
            if state == "block":
                if line.startswith("loop_"):
                    state = "header"
                    continue
                if line.startswith("_"):
                    state = "pairs"
            if state == "pairs":
                if line.startswith("_") and _count_values(line) != 2:
                    current.pair_errors.append((number, line))
                continue
            if state == "header":
                if line.startswith("_"):
                    current.columns.append(line.split()[0][1:])
                    continue
                state = "rows"
            if state == "rows" and line and not line.startswith("#"):
                current.lines.append(number)
                current.n_values.append(_count_values(line))
    return blocks


def _first_wrong_count(loop: LoopRows) -> tuple[int, str] | None:
    counts = np.asarray(loop.n_values, dtype=np.int64)
    wrong = np.flatnonzero(counts != len(loop.columns))
    if wrong.size == 0:
        return None
    i = int(wrong[0])
    return loop.lines[i], (f"line {loop.lines[i]}: {counts[i]} values for {len(loop.columns)} columns "
                           f"of data_{loop.block}")


def parse_error(path: Path, exc: Exception) -> InputError:
    """The InputError for a file starfile could not parse: the first malformed line when the scan
    finds it, else the parser's own message."""
    try:
        scanned = scan_loops(path)
    except OSError:
        scanned = {}
    found = []
    for loop in scanned.values():
        wrong = _first_wrong_count(loop)
        if wrong is not None:
            found.append(wrong)
        found += [(n, f"line {n}: expected one label and one value, got {text[:60]!r}")
                  for n, text in loop.pair_errors[:1]]
    if found:
        return InputError(min(found)[1], path)
    text = " ".join(f"cannot parse STAR file ({type(exc).__name__}: {exc})".split())
    return InputError(text, path)


def _text_in_numbers(values: pd.Series, label: str) -> np.ndarray | None:
    """Bool mask of the values of a text column that should be numbers (None when it is a real text
    column: mostly text and not a known numeric RELION label)."""
    numbers = pd.to_numeric(values, errors="coerce")
    text = (numbers.isna() & values.notna()).to_numpy()
    if not text.any():
        return None
    if label in NUMERIC_LABELS or 2 * int(text.sum()) < len(text):
        return text
    return None


def check_tables(path: Path, blocks: dict, string_labels) -> None:
    """InputError naming the line of the first malformed row of any loop of ``blocks`` (as parsed
    from ``path``): a row with a wrong number of values, text in a numeric column, no value in a
    required column (:data:`REQUIRED_VALUES`). Vectorised checks; the file is scanned only when
    one of them finds something."""
    string_labels = set(string_labels)
    scanned: dict[str, LoopRows] | None = None
    for name, table in blocks.items():
        if not isinstance(table, pd.DataFrame) or table.empty:
            continue
        text_cols = {}
        for label in table.columns:
            values = table[label]
            if label in string_labels or pd.api.types.is_numeric_dtype(values.dtype):
                continue
            mask = _text_in_numbers(values, str(label))
            if mask is not None:
                text_cols[label] = mask
        if not text_cols and not table.isna().to_numpy().any():
            continue
        if scanned is None:
            scanned = scan_loops(path)
        loop = scanned.get(name)
        aligned = loop is not None and len(loop.lines) == len(table)
        found: list[tuple[int, int, str]] = []  # (line or row, priority, problem)
        if loop is not None:
            wrong = _first_wrong_count(loop)
            if wrong is not None:
                found.append((wrong[0] if aligned else 0, 0, wrong[1]))

        def where(row: int) -> tuple[int, str]:
            return (loop.lines[row], f"line {loop.lines[row]}") if aligned else (row + 1, f"data_{name} row {row + 1}")

        for label, mask in text_cols.items():
            row = int(np.flatnonzero(mask)[0])
            key, at = where(row)
            found.append((key, 1, f"{at}: {label} {str(table[label].iloc[row])!r} is not a number"))
        for label in REQUIRED_VALUES:
            if label in table.columns and table[label].isna().any():
                row = int(np.flatnonzero(table[label].isna().to_numpy())[0])
                key, at = where(row)
                found.append((key, 2, f"{at}: {label} has no value"))
        if found:
            raise InputError(min(found)[2], path)
