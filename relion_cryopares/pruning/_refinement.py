"""The automatic threshold of the second pruning stage: refinement z-scores of good and junk particles.

The local refinement's z-score (``rlnCryoparesRefineZscore``, :mod:`relion_cryopares.refine._significance`)
is the height of a particle's correlation peak over the spread of the same correlation map far
from it. Particles that match the reference form one broad mode of high z; junk (noise, ice, carbon,
aggregates, other proteins) sits lower. The threshold is fitted on the particles themselves
(documented method):

1. A two-component Gaussian mixture is fitted to ``log(z)`` (z clipped at 0.5) by EM, started from
   the 15 % and 70 % quantiles.
2. When the components are separated (Ashman's D >= 2) and the lower one holds 1-70 % of the
   particles, the threshold is where a particle is equally likely to belong to either component,
   but never above the 2nd percentile of the upper component (so that at most ~2 % of the
   particles that match the reference are lost to the fit).
3. Otherwise (one mode: no junk to speak of) the threshold is the robust lower tail of the single
   mode, ``median - 4 x 1.4826 x MAD`` of ``log(z)``, which keeps > 99.9 % of a normal mode.

A particle is kept when ``z >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from relion_cryopares.errors import InputError

#: ``z`` below this is clipped before taking the logarithm.
Z_FLOOR = 0.5
#: Fewer particles than this: the mixture is not fitted (one-mode rule only).
MIN_FIT = 50
#: The mixture's threshold never rejects more than this quantile of the upper component.
UPPER_QUANTILE = 0.02


@dataclass(frozen=True)
class RefineThreshold:
    """A fitted threshold on the refinement z-score and how it was found."""

    value: float
    method: str
    n_particles: int
    low_fraction: float = 0.0
    separation: float = 0.0

    def describe(self) -> str:
        if self.method == "mixture":
            return (f"mixture fit on {self.n_particles} particles: {100 * self.low_fraction:.1f} % in the "
                    f"low mode, separation D {self.separation:.1f}")
        return f"one mode on {self.n_particles} particles: lower tail"

    def to_dict(self) -> dict:
        return asdict(self)


def _gmm2(x: np.ndarray, iterations: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and standard deviations ``(2,)`` of a 1-D two-component mixture (low first)."""
    mu = np.quantile(x, [0.15, 0.7]).astype(np.float64)
    sd = np.full(2, max(float(x.std()), 1e-3) / 2)
    w = np.array([0.5, 0.5])
    for _ in range(iterations):
        logp = (np.log(w)[None] - np.log(sd)[None] - 0.5 * ((x[:, None] - mu[None]) / sd[None]) ** 2)
        logp -= logp.max(1, keepdims=True)
        r = np.exp(logp)
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0).clip(min=1e-9)
        new_mu = (r * x[:, None]).sum(0) / nk
        sd = np.sqrt((r * (x[:, None] - new_mu[None]) ** 2).sum(0) / nk).clip(min=1e-3)
        w = nk / len(x)
        if np.allclose(new_mu, mu, atol=1e-7):
            mu = new_mu
            break
        mu = new_mu
    order = np.argsort(mu)
    return w[order], mu[order], sd[order]


def _one_mode(x: np.ndarray) -> float:
    med = float(np.median(x))
    mad = 1.4826 * float(np.median(np.abs(x - med)))
    return med - 4.0 * max(mad, 1e-3)


def refinement_threshold(zscores) -> RefineThreshold:
    """The threshold on refinement z-scores ``(n,)`` (module docstring); raises without finite values."""
    z = np.asarray(zscores, dtype=np.float64).reshape(-1)
    z = z[np.isfinite(z)]
    if z.size == 0:
        raise InputError("no finite refinement z-scores to fit a threshold on")
    x = np.log(np.clip(z, Z_FLOOR, None))
    if z.size >= MIN_FIT:
        w, mu, sd = _gmm2(x)
        separation = float(abs(mu[1] - mu[0]) / math.sqrt(0.5 * (sd[0] ** 2 + sd[1] ** 2)))
        if separation >= 2.0 and 0.01 <= w[0] <= 0.7:
            grid = np.linspace(mu[0], mu[1], 2001)
            log_low = math.log(w[0]) - math.log(sd[0]) - 0.5 * ((grid - mu[0]) / sd[0]) ** 2
            log_high = math.log(w[1]) - math.log(sd[1]) - 0.5 * ((grid - mu[1]) / sd[1]) ** 2
            cross = grid[np.argmax(log_high >= log_low)]
            cap = mu[1] + sd[1] * _normal_quantile(UPPER_QUANTILE)
            t = float(min(cross, cap))
            return RefineThreshold(float(math.exp(t)), "mixture", int(z.size), float(w[0]), separation)
    return RefineThreshold(float(math.exp(_one_mode(x))), "one mode", int(z.size))


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation is overkill here: bisection)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
