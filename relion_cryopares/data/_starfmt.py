"""Write STAR text the way RELION 3.1 reads it: ``# version 30001``, loops, integers as integers.

Floats are written with 6 decimals (RELION's own fixed format) unless a column holds values that
would lose precision that way (|x| < 0.001 or huge), which are written in scientific notation.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Labels RELION stores as integers (or booleans written as 0/1).
INT_LABELS = {
    "rlnOpticsGroup", "rlnRandomSubset", "rlnImageSize", "rlnImageDimensionality", "rlnClassNumber",
    "rlnGroupNumber", "rlnNrOfSignificantSamples", "rlnNrOfFrames", "rlnHelicalTubeID",
    "rlnCtfDataArePhaseFlipped", "rlnCtfDataAreCtfPremultiplied", "rlnImageId", "rlnMicrographId",
    "rlnBeamTiltClass", "rlnOriginalImageSize", "rlnTomoSubtomogramBinning",
}


def _kind(values: pd.Series, label: str) -> tuple[str, np.ndarray]:
    """Classify a column for writing: ``("int"|"fixed"|"sci"|"text", values)``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return "int", values.to_numpy().astype(np.int64)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return "int", values.to_numpy().astype(np.int64)
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(arr)
        if not finite.all():
            log.warning("column %s has missing values; written as 'nan'", label)
            return "sci", arr
        if label in INT_LABELS and np.all(arr == np.round(arr)):
            return "int", arr.astype(np.int64)
        mag = np.abs(arr)
        if ((mag > 0) & (mag < 1e-3)).any() or (mag >= 1e12).any():
            return "sci", arr
        return "fixed", arr
    return "text", np.array([str(v) for v in values.tolist()], dtype=object)


def _number_matrix(values: np.ndarray, decimals: int) -> np.ndarray:
    """Right-aligned ASCII of ``values / 10**decimals`` as a ``(n, width)`` uint8 matrix.

    ``values`` are int64 (a float scaled by ``10**decimals`` and rounded): pure integer arithmetic,
    no per-value Python formatting, identical to ``'%.{decimals}f'``.
    """
    n = values.shape[0]
    negative = values < 0
    rest = np.abs(values).astype(np.uint64)
    digits, length = [], np.zeros(n, dtype=np.int64)
    j = 0
    while True:
        digit = (rest % 10).astype(np.uint8)
        rest //= 10
        digits.append(digit)
        j += 1
        alive = (rest > 0) | (j <= decimals)
        length[alive] = j + 1
        if not alive.any():
            break
    length = np.maximum(length, decimals + 1)
    dot = 1 if decimals else 0
    widths = length + dot + negative
    width = int(widths.max())
    out = np.full((n, width), ord(" "), dtype=np.uint8)
    rows = np.arange(n)
    for j, digit in enumerate(digits):
        column = width - 1 - j - (dot if j >= decimals else 0)
        keep = j < length
        out[rows[keep], column] = ord("0") + digit[keep]
    if dot:
        out[:, width - 1 - decimals] = ord(".")
    out[rows[negative], width - widths[negative]] = ord("-")
    return out


def _text_matrix(text: np.ndarray, quote: bool = True) -> np.ndarray:
    """Left-aligned UTF-8 of strings as a ``(n, width)`` uint8 matrix padded with spaces.

    Empty strings and strings with white space are written in double quotes.
    """
    encoded = np.array([v.encode() for v in text], dtype=bytes)
    width = max(encoded.dtype.itemsize, 1)
    out = np.frombuffer(encoded.tobytes(), dtype=np.uint8).reshape(len(text), width).copy()
    blank = (out == 0) | (out == ord(" ")) | (out == ord("\t")) | (out == ord("\n"))
    inside = np.arange(width) < np.char.str_len(encoded)[:, None]
    needs_quotes = (blank & inside).any(axis=1) | (out[:, 0] == 0)
    if quote and needs_quotes.any():
        quoted = text.copy()
        quoted[needs_quotes] = ['"%s"' % " ".join(str(v).split()) for v in text[needs_quotes]]
        return _text_matrix(quoted, quote=False)
    out[out == 0] = ord(" ")
    return out


def _column_matrix(kind: str, arr: np.ndarray) -> np.ndarray:
    if kind == "int":
        return _number_matrix(arr, 0)
    if kind == "fixed":
        whole = np.trunc(arr)  # split so that large values keep all six decimals exactly
        micro = np.round((arr - whole) * 1e6).astype(np.int64)
        return _number_matrix(whole.astype(np.int64) * 1_000_000 + micro, 6)
    if kind == "sci":
        return _text_matrix(np.array(["%.9e" % v for v in arr], dtype=object))
    return _text_matrix(arr)


def _rows_bytes(table: pd.DataFrame) -> bytes:
    """The loop's rows: columns separated by spaces, one particle per line (vectorised)."""
    n = len(table)
    if n == 0:
        return b""
    columns = [_column_matrix(*_kind(table[label], label)) for label in table.columns]
    out = np.full((n, sum(c.shape[1] + 1 for c in columns)), ord(" "), dtype=np.uint8)
    start = 0
    for col in columns:
        out[:, start:start + col.shape[1]] = col
        start += col.shape[1] + 1
    out[:, -1] = ord("\n")
    return out.tobytes()


def _loop_bytes(name: str, table: pd.DataFrame) -> bytes:
    head = io.StringIO()
    head.write(f"\n# version 30001\n\ndata_{name}\n\nloop_ \n")
    for i, label in enumerate(table.columns, start=1):
        head.write(f"_{label} #{i} \n")
    return head.getvalue().encode() + _rows_bytes(table) + b" \n"


def _pairs_text(name: str, values: dict) -> str:
    out = io.StringIO()
    out.write(f"\n# version 30001\n\ndata_{name}\n\n")
    for label, value in values.items():
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            value = "%.6f" % value
        out.write(f"_{label}    {value}\n")
    out.write(" \n")
    return out.getvalue()


def write_star_blocks(path: str | Path, blocks: dict) -> None:
    """Write data blocks (``name -> DataFrame`` loop or ``name -> dict`` pairs) atomically."""
    path = Path(path)
    data = b"".join(_loop_bytes(k, v) if isinstance(v, pd.DataFrame) else _pairs_text(k, dict(v)).encode()
                    for k, v in blocks.items())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.lstrip(b"\n"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
