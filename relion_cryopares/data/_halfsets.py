"""Gold-standard half sets (``rlnRandomSubset``) that stay stable when a STAR file grows.

A particle's half set is a hash of the seed and its image name (SHA-256, not Python's salted
``hash``), so the same particle lands in the same half set in every run, every process and every
continue of an on-the-fly job, however many particles arrive later.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence, TYPE_CHECKING

import numpy as np

from relion_cryopares import conventions

if TYPE_CHECKING:  # pragma: no cover
    from relion_cryopares.data._star import ParticleStar

log = logging.getLogger(__name__)


def assign_random_subsets(image_names: Sequence[str],
                          seed: int = conventions.HALF_SET_SEED) -> np.ndarray:
    """Half set ``(n,)`` int64 in ``{1, 2}`` per image name, deterministic in ``(seed, name)``."""
    prefix = f"{int(seed)}:".encode()
    out = np.empty(len(image_names), dtype=np.int64)
    for i, name in enumerate(image_names):
        digest = hashlib.sha256(prefix + str(name).strip().encode()).digest()
        out[i] = 1 + (digest[0] & 1)
    return out


def ensure_random_subsets(star: "ParticleStar",
                          seed: int = conventions.HALF_SET_SEED) -> "ParticleStar":
    """A copy of ``star`` whose every particle has ``rlnRandomSubset`` 1 or 2.

    Existing values 1/2 are kept; missing ones (no column, empty after a concat, or any other value)
    are filled by :func:`assign_random_subsets`.
    """
    n = len(star)
    if "rlnRandomSubset" in star.particles.columns:
        current = np.asarray(star.particles["rlnRandomSubset"].to_numpy(dtype=np.float64, na_value=np.nan))
    else:
        current = np.full(n, np.nan)
    valid = np.isin(current, conventions.HALF_SETS)
    subsets = np.where(valid, np.nan_to_num(current), 0).astype(np.int64)
    missing = np.flatnonzero(~valid)
    if missing.size:
        names = star.image_names()
        subsets[missing] = assign_random_subsets([names[i] for i in missing], seed=seed)
        log.info("assigned half sets to %d of %d particles", missing.size, n)
    return star.with_columns(rlnRandomSubset=subsets)
