"""Which particles train which model: half sets, weights, train/validation split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from relion_cryopares.data import ParticleStar, particle_weights


@dataclass(frozen=True)
class HalfSplit:
    """STAR rows of one half set: ``train`` and ``val`` (disjoint, sorted), ``dropped`` (weight
    below the minimum)."""

    half: int
    train: np.ndarray
    val: np.ndarray
    dropped: np.ndarray


def split_half(star: ParticleStar, half: int, val_fraction: float, min_weight: float, seed: int
               ) -> HalfSplit:
    """Rows of half set ``half`` (``rlnRandomSubset``, which must be present), without particles of
    weight < ``min_weight``, split ``1 - val_fraction`` / ``val_fraction`` by a permutation seeded
    with ``(seed, half)``. At least one particle goes to each side when there are two or more."""
    subsets = star.random_subset()
    if subsets is None:
        raise ValueError("every particle needs rlnRandomSubset 1 or 2 (use ensure_random_subsets)")
    rows = np.flatnonzero(subsets == half)
    w = particle_weights(star)[rows]
    keep = w >= min_weight
    dropped, rows = rows[~keep], rows[keep]
    perm = np.random.default_rng([int(seed), int(half), 7]).permutation(len(rows))
    n_val = int(round(val_fraction * len(rows)))
    if len(rows) >= 2:
        n_val = min(max(n_val, 1), len(rows) - 1)
    val = np.sort(rows[perm[:n_val]])
    train = np.sort(rows[perm[n_val:]])
    return HalfSplit(half, train, val, dropped)


def split_junk(image_names, holdout_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows of known junk particles ``(exposure, holdout)``: each image name is hashed to a number
    in [0, 1); names below ``holdout_fraction`` are held out (they set the pruning threshold), the
    rest are shown to the network in training. Stable whatever the order or number of particles."""
    u = np.array([int.from_bytes(hashlib.sha256(b"junk:" + str(n).strip().encode()).digest()[:6], "little")
                  for n in image_names], dtype=np.float64) / float(1 << 48)
    held = u < holdout_fraction
    return np.flatnonzero(~held), np.flatnonzero(held)
