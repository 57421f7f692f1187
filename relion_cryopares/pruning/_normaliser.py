"""Directional normalisation of pruning scores: robust z-scores per viewing-direction cone.

The network's confidence (``PosePrediction.score``, the sum of the top-10 pose probabilities)
depends on the view: some directions are easier than others. So the score of a particle is compared
with the scores of good (validation) particles seen from the same direction: per HEALPix cone of
the projection direction (RELION's ``(rot, tilt)``, :func:`relion_cryopares.geometry.viewing_direction_cone`,
order 2 = 192 cones of ~15 degrees), the median and the MAD (scaled by 1.4826, so it estimates the
standard deviation of a normal distribution) of the validation scores::

    z = (score - median_cone) / MAD_cone

A cone with fewer than ``min_count`` validation particles takes its statistics from its own
particles pooled with those of its HEALPix neighbours; if that pool is still too small, the global
median and MAD are used. A MAD of 0 (constant scores) is floored at ``mad_floor`` times the global
MAD (or 1e-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import cone_neighbours, n_cones, viewing_direction_cone

MAD_SCALE = 1.4826


def _median_mad(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    return med, float(MAD_SCALE * np.median(np.abs(values - med)))


@dataclass(frozen=True)
class DirectionalNormaliser:
    """Per-cone medians and MADs of the validation pruning scores (see the module docstring).

    ``medians``/``mads`` ``(n_cones,)`` float64 numpy arrays; ``counts`` the validation particles
    per cone; ``source`` per cone: 0 own particles, 1 pooled with neighbours, 2 global.
    """

    order: int
    medians: np.ndarray
    mads: np.ndarray
    counts: np.ndarray
    source: np.ndarray
    global_median: float
    global_mad: float
    min_count: int

    @staticmethod
    def fit(scores: torch.Tensor, matrices: torch.Tensor, order: int = 2, min_count: int = 10,
            mad_floor: float = 0.05) -> "DirectionalNormaliser":
        """Fit on validation particles: ``scores`` ``(n,)``, pose matrices ``(n, 3, 3)`` (the poses
        whose viewing direction defines the cone; at inference the predicted ones)."""
        s = torch.as_tensor(scores).detach().cpu().double().reshape(-1).numpy()
        if s.size == 0:
            raise InputError("cannot fit the pruning normaliser on zero particles")
        if matrices.shape[0] != s.size:
            raise InputError(f"{s.size} scores but {matrices.shape[0]} pose matrices")
        cones = viewing_direction_cone(matrices.detach().cpu().double(), order).numpy()
        nc = n_cones(order)
        gmed, gmad = _median_mad(s)
        floor = max(mad_floor * gmad, 1e-6)
        gmad = max(gmad, 1e-6)
        counts = np.bincount(cones, minlength=nc)
        order_idx = np.argsort(cones, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        by_cone = [s[order_idx[starts[c]:starts[c + 1]]] for c in range(nc)]
        nbrs = cone_neighbours(order, torch.arange(nc)).numpy()
        medians, mads = np.full(nc, gmed), np.full(nc, gmad)
        source = np.full(nc, 2, dtype=np.int64)
        for c in range(nc):
            if counts[c] >= min_count:
                pool, src = by_cone[c], 0
            else:
                pool = np.concatenate([by_cone[q] for q in np.unique(nbrs[c])])
                src = 1
                if pool.size < min_count:
                    continue
            medians[c], mad = _median_mad(pool)
            mads[c] = max(mad, floor)
            source[c] = src
        return DirectionalNormaliser(order, medians, mads, counts, source, gmed, gmad, int(min_count))

    def zscore(self, scores: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        """Robust z-scores ``(n,)`` (float32, device of ``scores``) of ``scores`` ``(n,)`` for
        particles with pose matrices ``(n, 3, 3)``."""
        scores = torch.as_tensor(scores)
        cones = viewing_direction_cone(matrices.detach().cpu().double(), self.order).numpy()
        s = scores.detach().cpu().double().reshape(-1).numpy()
        z = (s - self.medians[cones]) / self.mads[cones]
        return torch.from_numpy(z.astype(np.float32)).to(scores.device)

    def to_dict(self) -> dict:
        return {"order": self.order, "min_count": self.min_count,
                "global_median": self.global_median, "global_mad": self.global_mad,
                "medians": self.medians.tolist(), "mads": self.mads.tolist(),
                "counts": self.counts.astype(int).tolist(), "source": self.source.astype(int).tolist()}

    @staticmethod
    def from_dict(d: dict) -> "DirectionalNormaliser":
        try:
            order = int(d["order"])
            out = DirectionalNormaliser(
                order, np.asarray(d["medians"], dtype=np.float64), np.asarray(d["mads"], dtype=np.float64),
                np.asarray(d["counts"], dtype=np.int64), np.asarray(d["source"], dtype=np.int64),
                float(d["global_median"]), float(d["global_mad"]), int(d["min_count"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid pruning normaliser ({type(exc).__name__}: {exc})") from None
        nc = n_cones(order)
        if any(a.shape != (nc,) for a in (out.medians, out.mads, out.counts, out.source)):
            raise InputError(f"invalid pruning normaliser: tables must have {nc} cones for order {order}")
        return out
