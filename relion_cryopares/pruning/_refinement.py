"""The automatic threshold of the second pruning stage: refinement z-scores of good and junk particles.

The local refinement's z-score (``rlnCryoparesRefineZscore``, :mod:`relion_cryopares.refine._significance`)
is the height of a particle's correlation peak over the spread of the same correlation map far
from it. Particles that match the reference form one mode of high z with a tail towards low z
(high defocus, weak views); junk sits lower: on the realistic simulated extraction of
``benchmarks/bench_realistic.py`` (SNR 0.3, another microscope) the good particles' median z was
19.4 (2nd percentile 9.8), carbon edges, ice and pure noise stayed below 9, other proteins at 0.39x
and aggregates at 0.3x the good median (95th percentiles 9.7 and 10.3). The refinement z scales with
the particles' signal, so the threshold is relative to the good mode (documented method):

    threshold = max(RATIO x mode(z), noise floor)

- ``mode(z)``: the highest peak of a Gaussian kernel density estimate of ``log z`` (bandwidth 0.1,
  i.e. about 10 % in z): the typical z of a particle that matches the reference, unmoved by junk as
  long as the matching particles are the largest group.
- ``RATIO`` = 0.5: on that set it kept 97.7 % of the good particles and rejected 93-100 % of every
  junk kind (0.45: 99.1 % / 82 %; 0.55: 95.5 % / 95 %).
- ``noise floor``: the z that the best of the search's ``N`` hypotheses (poses x shifts x starts)
  reaches in pure noise with probability 1/2 under the normal null, ``Phi^-1(0.5 ** (1 / N))``
  (about 4.2 for the default search from 5 starts), so that images no better than noise are never
  kept when the good particles are weak themselves.

A particle is kept when ``z >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from relion_cryopares.errors import InputError

#: The threshold's fraction of the good particles' typical (modal) z-score.
RATIO = 0.5
#: Bandwidth of the kernel density estimate of ``log z``.
BANDWIDTH = 0.1


@dataclass(frozen=True)
class RefineThreshold:
    """A fitted threshold on the refinement z-score and how it was found."""

    value: float
    mode_z: float
    noise_floor: float
    n_particles: int
    ratio: float = RATIO

    def describe(self) -> str:
        which = "noise floor" if self.value <= self.noise_floor else f"{self.ratio:g} x the modal z {self.mode_z:.2f}"
        return f"{which}, fitted on {self.n_particles} particles"

    def to_dict(self) -> dict:
        return asdict(self)


def modal_zscore(zscores: np.ndarray) -> float:
    """The highest peak of the kernel density estimate of ``log z`` over the positive ``zscores``."""
    x = np.log(zscores[zscores > 0])
    if x.size == 0:
        raise InputError("no positive refinement z-scores to find the mode of")
    grid = np.linspace(x.min() - 3 * BANDWIDTH, x.max() + 3 * BANDWIDTH, 1024)
    density = np.zeros_like(grid)
    for part in np.array_split(x, max(1, x.size // 4096)):  # memory bounded for any number of particles
        density += np.exp(-0.5 * ((grid[:, None] - part[None]) / BANDWIDTH) ** 2).sum(1)
    return float(np.exp(grid[int(np.argmax(density))]))


def noise_floor(n_hypotheses: int) -> float:
    """``Phi^-1(0.5 ** (1 / N))``: the median best z of ``N`` independent normal hypotheses."""
    p = torch.tensor(0.5, dtype=torch.float64) ** (1.0 / max(int(n_hypotheses), 1))
    return float(torch.special.ndtri(p))


def refinement_threshold(zscores, n_hypotheses: int = 1, ratio: float = RATIO) -> RefineThreshold:
    """The threshold on refinement z-scores ``(n,)`` (module docstring); raises without finite values."""
    z = np.asarray(zscores, dtype=np.float64).reshape(-1)
    z = z[np.isfinite(z)]
    if z.size == 0:
        raise InputError("no finite refinement z-scores to fit a threshold on")
    mode = modal_zscore(z)
    floor = noise_floor(n_hypotheses)
    return RefineThreshold(max(ratio * mode, floor), mode, floor, int(z.size), ratio)
