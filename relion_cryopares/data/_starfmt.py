"""Write STAR text the way RELION 3.1 reads it: ``# version 30001``, loops, integers as integers.

Floats are written with 6 decimals (RELION's own fixed format) unless a column holds values that
would lose precision that way (|x| < 0.001 or huge), which are written in scientific notation.
"""

from __future__ import annotations

import csv
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


def _column_text(values: pd.Series, label: str) -> pd.Series | np.ndarray:
    """One column ready for ``to_csv``: ints stay ints, floats in RELION's format, text as text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(np.int64)
    if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
        return values.astype(np.int64)
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(arr)
        if not finite.all():
            log.warning("column %s has missing values; written as 'nan'", label)
        if label in INT_LABELS and finite.all() and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        mag = np.abs(arr[finite])
        if ((mag > 0) & (mag < 1e-3)).any() or (mag >= 1e12).any():
            return pd.Series(["%.9e" % v for v in arr], index=values.index)
        return arr
    text = values.astype(str)
    empty = text.str.len() == 0
    if empty.any():
        text = text.where(~empty, '""')
    return text


def _loop_text(name: str, table: pd.DataFrame) -> str:
    out = io.StringIO()
    out.write(f"\n# version 30001\n\ndata_{name}\n\nloop_ \n")
    for i, label in enumerate(table.columns, start=1):
        out.write(f"_{label} #{i} \n")
    formatted = pd.DataFrame({label: _column_text(table[label], label) for label in table.columns},
                             index=table.index)
    formatted.to_csv(out, sep=" ", header=False, index=False, float_format="%.6f", na_rep="nan",
                     quoting=csv.QUOTE_MINIMAL, quotechar='"', lineterminator="\n")
    out.write(" \n")
    return out.getvalue()


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
    text = "".join(_loop_text(k, v) if isinstance(v, pd.DataFrame) else _pairs_text(k, dict(v))
                   for k, v in blocks.items())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(text.lstrip("\n"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
