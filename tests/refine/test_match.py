"""Whitened correlation over shifts: known shifts are found, scores are normalised, the shift bank
agrees with an inverse FFT of the cross-power."""

from __future__ import annotations

import torch

from relion_cryopares.ctf import CtfParameters, compute_ctf
from relion_cryopares.fourier import Projector, rfft2_centred
from relion_cryopares.geometry import random_rotations
from relion_cryopares.refine import (Band, BandSlicer, ShiftWindow, best_shift, build_bank, correlation_map,
                                     score_shifts, whitening_weights)
from relion_cryopares.refine._match import shift_phases


def _setup(test_map, shifts_px, noise=0.0):
    vol, px = test_map
    projector = Projector(vol)
    band = Band.of(64, 1, 31)
    window = ShiftWindow.of(5.0)
    b = shifts_px.shape[0]
    a = random_rotations(b, generator=torch.Generator().manual_seed(4)).float()
    ctf = compute_ctf(CtfParameters.constant(b, defocus_u_angstrom=12000.0, pixel_size_angstrom=px), 64,
                      fftshift=True)
    images = projector.project(a, shifts_px, ctf)  # content moved by +shift
    images = images + noise * images.std() * torch.randn(images.shape, generator=torch.Generator().manual_seed(5))
    f = rfft2_centred(images)
    w = whitening_weights(f, band.min_shell, band.max_shell)
    bank = build_bank(band, shift_phases(band, window), f, ctf, w)
    re, im = BandSlicer(projector, band)(a[:, None])
    return band, window, bank, re, im


def test_known_subpixel_shifts_are_found(test_map):
    shifts = torch.tensor([[1.3, -2.6], [0.0, 0.0], [-3.45, 2.2], [4.1, 0.7]])
    band, window, bank, re, im = _setup(test_map, shifts)
    score, d = best_shift(score_shifts(bank, re, im), window, subpixel=True)
    assert (d[:, 0] - shifts).abs().max() < 0.08, d[:, 0]
    assert score[1, 0] > 0.99, score  # noise-free, integer shift: the normalised correlation is ~1


def test_scores_are_normalised_correlations(test_map):
    """Cauchy-Schwarz: |score| <= 1 at every shift; noise lowers the peak."""
    shifts = torch.zeros(3, 2)
    band, window, bank, re, im = _setup(test_map, shifts, noise=3.0)
    scores = score_shifts(bank, re, im)
    assert scores.abs().max() <= 1.0 + 1e-5
    best, d = best_shift(scores, window)
    assert (best < 0.9).all() and (d[:, 0].abs() <= 1).all()


def test_bank_equals_inverse_fft_of_the_cross_power(test_map):
    shifts = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    band, window, bank, re, im = _setup(test_map, shifts, noise=1.0)
    scores = score_shifts(bank, re, im)[:, 0]  # (b, S)
    cc = correlation_map(band, bank, re[:, 0], im[:, 0])  # (b, n, n)
    d = window.shifts.long()
    from_map = cc[:, 32 + d[:, 1], 32 + d[:, 0]]
    assert torch.allclose(scores, from_map, atol=1e-4)


def test_window_shape():
    w = ShiftWindow.of(5.1)
    assert w.n_allowed == int(((w.shifts ** 2).sum(1) <= 5.1 ** 2).sum())
    assert (w.shifts.abs() <= w.half).all()
    for s in w.shifts[w.allowed]:  # every allowed shift has its 4 neighbours in the bank
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            assert w.lookup[int(s[1]) + dy + w.half, int(s[0]) + dx + w.half] >= 0
