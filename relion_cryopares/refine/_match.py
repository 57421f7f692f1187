"""Whitened Fourier cross-correlation of particle images with CTF-modulated projections.

For a particle image ``F`` (centred rfft, already shifted by its current origin), CTF ``c``, whitening
``w = 1/sigma²`` (:mod:`._spectra`) and the projection ``P`` of the reference at a candidate pose,
the score of a shift ``d`` (px, (x, y)) is the normalised correlation

    cc(d) = sum_k Re[conj(c P)(k) F(k) exp(2 pi i k.d)] w(k) / (||c P||_w ||F||_w)

over the full Fourier plane of the band, i.e. the log-likelihood ratio of Gaussian noise with
spectrum ``sigma²`` with the projection's scale left free. A maximum at ``d`` means the particle
sits ``d`` pixels from where the template puts it (content moved by ``+d``), so its RELION origin
changes by ``-d``.

The shifts searched are the integer ``d`` with ``|d| <= radius`` (plus a one-pixel rim for the
sub-pixel fit). Each particle's "shift bank" ``X(d, k) = c F w exp(2 pi i k.d) / ||F||_w`` is built
once; the scores of all candidate poses at all shifts are then one batched matrix product of the
projections with the bank, which on a CPU is much cheaper than an inverse FFT per candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._band import Band
from ._peaks import parabolic_offset


@dataclass(frozen=True)
class ShiftWindow:
    """Integer shifts ``|d| <= radius_px + 1.5``; ``allowed`` marks those with ``|d| <= radius_px``.

    ``shifts``: ``(S, 2)`` (x, y) px; ``lookup``: ``(2h+1, 2h+1)`` index into ``shifts`` of the
    offset ``(y + h, x + h)``, ``-1`` where absent.
    """

    radius_px: float
    shifts: torch.Tensor
    allowed: torch.Tensor
    lookup: torch.Tensor

    @staticmethod
    def of(radius_px: float, device=None) -> "ShiftWindow":
        radius_px = max(float(radius_px), 0.0)
        h = int(math.ceil(radius_px)) + 1
        r = torch.arange(-h, h + 1, device=device)
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        d2 = (xx ** 2 + yy ** 2).to(torch.float32)
        keep = d2 <= (radius_px + 1.5) ** 2
        shifts = torch.stack([xx[keep], yy[keep]], dim=-1).to(torch.float32)
        lookup = torch.full((2 * h + 1, 2 * h + 1), -1, dtype=torch.long, device=device)
        lookup[keep] = torch.arange(int(keep.sum()), device=device)
        allowed = d2[keep] <= radius_px ** 2 + 1e-6
        return ShiftWindow(radius_px, shifts, allowed, lookup)

    @property
    def half(self) -> int:
        return (self.lookup.shape[0] - 1) // 2

    def __len__(self) -> int:
        return int(self.shifts.shape[0])

    @property
    def n_allowed(self) -> int:
        return int(self.allowed.sum())


@dataclass
class ParticleBank:
    """Per-particle quantities for scoring, on the band's points.

    ``bank_re``/``bank_im``: ``(b, m, S)`` real/imaginary parts of ``X(d, k)`` (a prefix of the
    band points is a contiguous block); ``ctf2w``:
    ``(b, m)`` ``multiplicity * c² w`` (template norms); ``base``: ``(b, m)`` complex ``X(0, k)``.
    """

    bank_re: torch.Tensor
    bank_im: torch.Tensor
    ctf2w: torch.Tensor
    base: torch.Tensor

    def __len__(self) -> int:
        return int(self.base.shape[0])


def shift_phases(band: Band, window: ShiftWindow) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos`` and ``sin`` ``(m, S)`` of ``2 pi k.d`` for every band point ``k`` and shift ``d``."""
    phase = 2 * math.pi * (band.k.T @ window.shifts.to(band.k.device).T)
    return torch.cos(phase), torch.sin(phase)


def build_bank(band: Band, phases: tuple[torch.Tensor, torch.Tensor], images_rfft: torch.Tensor,
               ctf: torch.Tensor, whitening: torch.Tensor) -> ParticleBank:
    """Shift banks for centred image transforms ``(b, n, n//2+1)`` with their CTFs and whitening;
    ``phases`` from :func:`shift_phases`."""
    f, c, w = band.take(images_rfft), band.take(ctf).to(torch.float32), band.take(whitening)
    mult = band.multiplicity
    norm = ((f.real ** 2 + f.imag ** 2) * w * mult).sum(-1).clamp(min=1e-30).sqrt()
    base = f * (c * w * mult / norm[:, None])  # (b, m) complex
    cos, sin = phases
    br, bi = base.real[:, :, None], base.imag[:, :, None]
    return ParticleBank(br * cos - bi * sin, br * sin + bi * cos, c * c * w * mult, base)


def score_shifts(bank: ParticleBank, proj_re: torch.Tensor, proj_im: torch.Tensor) -> torch.Tensor:
    """Scores ``(b, r, S)`` of ``r`` candidate projections per particle (``(b, r, c)``, the first
    ``c`` band points) at every shift of the bank."""
    c = proj_re.shape[-1]
    num = torch.baddbmm(proj_re @ bank.bank_re[:, :c], proj_im, bank.bank_im[:, :c])
    norm2 = torch.addcmul(proj_re * proj_re, proj_im, proj_im) @ bank.ctf2w[:, :c, None]  # (b, r, 1)
    return num / norm2.clamp(min=1e-30).sqrt()


def best_shift(scores: torch.Tensor, window: ShiftWindow, subpixel: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Best allowed shift of ``(b, r, S)`` scores: ``(b, r)`` maxima and ``(b, r, 2)`` shifts (x, y),
    refined by separable parabolic fits when ``subpixel``."""
    allowed = window.allowed.to(scores.device)
    masked = torch.where(allowed, scores, torch.full_like(scores, -torch.inf))
    best, where = masked.max(dim=-1)
    shifts = window.shifts.to(scores.device)[where]
    if not subpixel:
        return best, shifts
    h = window.half
    lookup = window.lookup.to(scores.device)
    ix, iy = shifts[..., 0].long() + h, shifts[..., 1].long() + h

    def at(dx: int, dy: int) -> torch.Tensor:
        idx = lookup[(iy + dy).clamp(0, 2 * h), (ix + dx).clamp(0, 2 * h)]
        vals = torch.gather(scores, -1, idx.clamp(min=0)[..., None])[..., 0]
        return torch.where(idx >= 0, vals, best)

    dx = parabolic_offset(at(-1, 0), best, at(1, 0))
    dy = parabolic_offset(at(0, -1), best, at(0, 1))
    return best, shifts + torch.stack([dx, dy], dim=-1)
