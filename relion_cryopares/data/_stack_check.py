"""Before any work starts: is every particle's image in its stack?

A particle whose ``rlnImageName`` points past the end of its stack (or into a stack that is not
there) would otherwise end a job hours in, in a data-loading worker. :func:`check_image_indices`
reads the header of each distinct stack once (:func:`stack_shape`, no pixel data) and raises one
:class:`~relion_cryopares.errors.InputError` naming the first such particle, its stack and how many
images the stack has::

    Extract/job007/particles.star: row 57: particle 000251@Extract/job007/m1.mrcs is past the end
    of its stack Extract/job007/m1.mrcs (250 images) (and 3 more particles past the end of their stacks)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from relion_cryopares.data._stacks import _strip_type, parse_image_name, stack_shape
from relion_cryopares.data._star import ParticleStar
from relion_cryopares.errors import InputError

log = logging.getLogger(__name__)


def _split_names(names: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(index0 (n,) int64, stack path (n,) object)`` of RELION image names, vectorised; a bad
    name raises the InputError of :func:`parse_image_name`."""
    text = names.astype(str).str.strip()
    parts = text.str.partition("@")
    has_at = (parts[1] == "@").to_numpy()
    number = pd.to_numeric(parts[0].where(has_at, "1"), errors="coerce").to_numpy(dtype=np.float64)
    paths = np.where(has_at, parts[2].to_numpy(dtype=object), text.to_numpy(dtype=object))
    bad = ~np.isfinite(number) | (number < 1) | (number != np.round(number)) | (paths == "")
    if bad.any():
        parse_image_name(text.iloc[int(np.flatnonzero(bad)[0])])  # raises with the name
    if any(":" in p for p in pd.unique(paths)):
        paths = np.array([_strip_type(p) for p in paths], dtype=object)
    return number.astype(np.int64) - 1, paths


def _more(n: int, one: str, many: str) -> str:
    return "" if n <= 0 else f" (and {n} more {one if n == 1 else many})"


def check_image_indices(star: ParticleStar, root: str | Path = ".") -> None:
    """InputError unless every particle's image exists: its stack (resolved against ``root``, the
    RELION project directory) is there and holds at least its image number. One header read per
    distinct stack."""
    if len(star) == 0:
        return
    t0 = time.perf_counter()
    source = star.path.name if star.path is not None else "particles"
    where = star.path if star.path is not None else None
    names = star.particles["rlnImageName"]
    index, paths = _split_names(names)
    codes, stacks = pd.factorize(paths)
    largest = np.full(len(stacks), -1, dtype=np.int64)
    np.maximum.at(largest, codes, index)
    root = Path(root)
    n_images = np.zeros(len(stacks), dtype=np.int64)
    missing = np.zeros(len(stacks), dtype=bool)
    for k, stack in enumerate(stacks):
        file = Path(stack) if Path(stack).is_absolute() else root / stack
        if not file.is_file():
            missing[k] = True
            continue
        try:
            n_images[k] = stack_shape(file)[0]
        except InputError as exc:
            raise InputError(f"{exc.problem} (stack of particle {names.iloc[int(np.argmax(codes == k))]}, "
                             f"{source} row {int(np.argmax(codes == k)) + 1})", stack) from None
    if missing.any():
        rows = np.flatnonzero(missing[codes])
        first = int(rows[0])
        more = _more(int(missing.sum()) - 1, "missing stack", "missing stacks")
        raise InputError(f"row {first + 1}: stack {stacks[codes[first]]} of particle {names.iloc[first]} "
                         f"not found{more}", where if where is not None else stacks[codes[first]])
    past = np.flatnonzero(index >= n_images[codes])
    if past.size:
        first = int(past[0])
        k = codes[first]
        more = _more(past.size - 1, "particle past the end of its stack", "particles past the end of their stacks")
        raise InputError(f"row {first + 1}: particle {names.iloc[first]} is past the end of its stack "
                         f"{stacks[k]} ({n_images[k]} images){more}", where)
    log.debug("%s: %d particles in %d stacks checked in %.2f s", source, len(star), len(stacks),
              time.perf_counter() - t0)
