"""The automatic threshold of the second pruning stage: refinement z-scores of good and junk particles.

The local refinement's z-score (``rlnCryoparesRefineZscore``, :mod:`relion_cryopares.refine._significance`)
is the height of a particle's correlation peak over the spread of the same correlation map far
from it. Particles that match the reference form one mode of high z; junk sits lower. On the
realistic simulated extraction of ``benchmarks/bench_realistic.py`` (SNR 0.3, another microscope,
network top-5 and global-scan starts) the good particles' modal z was 20.0; their 2nd percentile
was 16.0, aggregates of 3-4 particles (the hardest junk: a real particle in the middle) reached 14.3
at their 90th percentile, another protein 10.7 at most, carbon, ice and noise 7 at most. The threshold follows the good mode, whatever the signal level
(documented method)::

    threshold = max(mode(z) x min(exp(-K x s_up), CAP), noise floor)

- ``mode(z)``: the highest peak of a Gaussian kernel density estimate of ``log z`` (bandwidth 0.1,
  about 10 % in z): the typical z of a particle that matches the reference, unmoved by junk as long
  as the matching particles are the largest group.
- ``s_up``: the root-mean-square distance of ``log z`` above the mode from the mode: the width of the
  good mode measured on the side no junk reaches (0.077 and 0.084 on two simulated sets). The good
  mode's low side is wider than its high side (their 2nd percentile was 0.80 x the mode on both);
  aggregates reached 0.71-0.77 x the mode at their 90th percentile. ``K`` = 2.75 (0.79-0.81 x the
  mode) kept 97.3 / 98.5 % of the good particles and 2.4 / 3.6 % of the aggregates on the two sets
  (K 2.5: 95.9-96.8 % / 0-2.4 %; K 3: 98.6-99.1 % / 2.4-10.7 %; K 3.5: 99.4 % / 2.4-17.9 %).
  ``CAP`` = 0.85: never closer to the mode than that (a very narrow mode).
- ``noise floor``: the z that the best of the search's ``N`` hypotheses (poses x shifts x starts and
  the global scan) reaches in pure noise with probability 1/2 under the normal null,
  ``Phi^-1(0.5 ** (1 / N))`` (about 4.8 for the default search), so that images no better than
  noise are never kept when the good particles are weak themselves.

A particle is kept when ``z >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from relion_cryopares.errors import InputError

#: Widths (``s_up``) of the good mode below its mode in ``log z`` where the threshold sits.
K_WIDTHS = 2.75
#: The threshold is at most this fraction of the modal z.
CAP = 0.85
#: Bandwidth of the kernel density estimate of ``log z``.
BANDWIDTH = 0.1


@dataclass(frozen=True)
class RefineThreshold:
    """A fitted threshold on the refinement z-score and how it was found."""

    value: float
    mode_z: float
    width: float
    noise_floor: float
    n_particles: int

    def describe(self) -> str:
        if self.value <= self.noise_floor:
            which = "the noise floor"
        else:
            which = f"{self.value / self.mode_z:.2f} x the modal z {self.mode_z:.2f} (log-z width {self.width:.3f})"
        return f"{which}, fitted on {self.n_particles} particles"

    def to_dict(self) -> dict:
        return asdict(self)


def modal_zscore(zscores: np.ndarray) -> float:
    """The highest peak of the kernel density estimate of ``log z`` over the positive ``zscores``."""
    x = np.log(np.asarray(zscores, dtype=np.float64)[np.asarray(zscores) > 0])
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


def upper_width(zscores: np.ndarray, mode_z: float) -> float:
    """Root-mean-square distance of ``log z`` from ``log mode_z`` over the z-scores above the mode."""
    z = np.asarray(zscores, dtype=np.float64)
    above = np.log(z[z > mode_z]) - math.log(mode_z)
    return float(np.sqrt(np.mean(above ** 2))) if above.size else 0.0


def refinement_threshold(zscores, n_hypotheses: int = 1) -> RefineThreshold:
    """The threshold on refinement z-scores ``(n,)`` (module docstring); raises without finite values."""
    z = np.asarray(zscores, dtype=np.float64).reshape(-1)
    z = z[np.isfinite(z)]
    if z.size == 0:
        raise InputError("no finite refinement z-scores to fit a threshold on")
    mode = modal_zscore(z)
    width = upper_width(z, mode)
    floor = noise_floor(n_hypotheses)
    value = max(mode * min(math.exp(-K_WIDTHS * width), CAP), floor)
    return RefineThreshold(value, mode, width, floor, int(z.size))
