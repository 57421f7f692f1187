"""A coarse global search over all of SO(3): extra starting poses where the network put none.

The network's top-K poses cover the right basin of most particles, but a weak network (the tiny
preset on a CPU, a new microscope) leaves some particles with no starting pose near the truth: on
the realistic simulated extraction of ``benchmarks/bench_realistic.py`` 10.5 % of the good
particles ended more than 10° off after a ±6° search around the network's top 5 poses (half of
them with no start within 35° of the truth). A scan of the HEALPix SO(3) grid of order 2 (4608
rotations, 15° apart) at low resolution (the first 8 Fourier shells at least: a grid step moves the
particle's edge by about a quarter of a resolution element there) put one of its 5 best
rotations within 15° of the truth for all of those particles (and within 10° for 96 %).

The scan is cheap because the grid is the same for every particle: the reference's central slices
at the grid rotations are computed once per refiner (``(R, c)``), and each particle's scores at
every rotation and shift are one matrix product with its shift bank (:mod:`._match`), the same
whitened, CTF-weighted normalised correlation as the local search.
"""

from __future__ import annotations

import torch

from relion_cryopares.geometry import geodesic_distance_deg, so3_grid, so3_grid_resolution_deg

from ._band import BandSlicer
from ._match import ParticleBank, ShiftWindow, best_shift

#: Rotations scored per block (bounds the ``(b, block, shifts)`` score tensor).
BLOCK = 512


class GlobalScan:
    """The best rotations of the SO(3) grid of ``order`` for batches of particles (module docstring)."""

    def __init__(self, slicer: BandSlicer, count: int, window: ShiftWindow, order: int = 2):
        self.order = int(order)
        self.count = int(count)
        self.window = window
        device = slicer.band.k.device
        self.matrices = so3_grid(self.order, torch.float32).to(device)  # (R, 3, 3)
        re, im = slicer(self.matrices, self.count)  # (R, c)
        self.proj_re, self.proj_im = re, im

    @property
    def step_deg(self) -> float:
        return so3_grid_resolution_deg(self.order)

    def __len__(self) -> int:
        return int(self.matrices.shape[0])

    def best(self, bank: ParticleBank, n: int, separation_deg: float | None = None) -> torch.Tensor:
        """``(b, n, 3, 3)``: per particle, the ``n`` best-scoring grid rotations that are at least
        ``separation_deg`` (default 1.5 grid steps) apart, best first."""
        c = self.count
        scores = []
        for r0 in range(0, len(self), BLOCK):
            re, im = self.proj_re[r0:r0 + BLOCK], self.proj_im[r0:r0 + BLOCK]  # (r, c)
            num = torch.matmul(re, bank.bank_re[:, :c]) + torch.matmul(im, bank.bank_im[:, :c])  # (b, r, S)
            norm2 = torch.matmul(re * re + im * im, bank.ctf2w[:, :c, None])  # (b, r, 1)
            best, _ = best_shift(num / norm2.clamp(min=1e-30).sqrt(), self.window)
            scores.append(best)
        scores = torch.cat(scores, dim=1)  # (b, R)
        sep = 1.5 * self.step_deg if separation_deg is None else separation_deg
        pool = scores.topk(min(len(self), 32 * n), dim=1).indices  # (b, P), best first
        cand = self.matrices[pool]  # (b, P, 3, 3)
        taken = torch.zeros(pool.shape, dtype=torch.bool, device=pool.device)
        taken[:, 0] = True
        count = torch.ones(pool.shape[0], dtype=torch.long, device=pool.device)
        for j in range(1, pool.shape[1]):
            if bool((count >= n).all()):
                break
            near = geodesic_distance_deg(cand[:, j:j + 1], cand) < sep  # (b, P)
            take = ~(near & taken).any(dim=1) & (count < n)
            taken[:, j] = take
            count += take.long()
        rank = torch.arange(pool.shape[1], device=pool.device).expand_as(pool)
        order = torch.argsort(torch.where(taken, rank, rank + pool.shape[1]), dim=1)[:, :n]
        return cand.gather(1, order[..., None, None].expand(-1, -1, 3, 3))
