"""Starting poses of cryopares_localrefine: the particle's pose and the network's next poses.

``cryopares_infer --top_k K`` writes the network's poses 2..K as ``rlnCryoparesTop<k>AngleRot/Tilt/Psi``;
``cryopares_localrefine --top_k K`` searches around each of them (see that job's docstring).
"""

from __future__ import annotations

import numpy as np

from relion_cryopares.data import ParticleStar
from relion_cryopares.errors import InputError
from relion_cryopares.jobs._infer_outputs import top_k_columns

#: The largest number of starting poses (cryopares_infer writes at most 10).
MAX_TOP_K = 10


def resolve_top_k(star: ParticleStar, top_k: int | None, path) -> int:
    """The number of starting poses: ``top_k`` (one clear error when the particles do not carry
    that many network poses), or by default all the network poses they carry (1 without any)."""
    if top_k is None:
        top_k = 1
        while top_k < MAX_TOP_K and all(c in star.particles.columns for c in top_k_columns(top_k + 1)):
            top_k += 1
        return top_k
    for k in range(2, top_k + 1):
        missing = [c for c in top_k_columns(k) if c not in star.particles.columns]
        if missing:
            raise InputError(f"--top_k {top_k} needs column {missing[0]} (run cryopares_infer with "
                             f"--top_k {top_k} or more)", path)
    return top_k


def starting_angles(star: ParticleStar, rows: np.ndarray, top_k: int) -> np.ndarray:
    """``(b, K, 3)`` Euler angles: the particles' poses, then their network poses 2..K (a row whose
    k-th pose is missing searches its first pose again)."""
    first = star.angles_deg()[rows]
    out = np.repeat(first[:, None], top_k, axis=1)
    table = star.particles
    for k in range(2, top_k + 1):  # the batch's rows only: this runs once per batch
        values = table.iloc[rows, table.columns.get_indexer(top_k_columns(k))].to_numpy(dtype=np.float64,
                                                                                         na_value=np.nan)
        ok = np.isfinite(values).all(axis=1)
        out[ok, k - 1] = values[ok]
    return out
