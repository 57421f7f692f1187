"""Band points and band slices: the same numbers as the Projector, cheaper."""

from __future__ import annotations

import torch

from relion_cryopares.fourier import Projector, rfft2_centred
from relion_cryopares.geometry import random_rotations
from relion_cryopares.refine import Band, BandSlicer


def test_band_points_sorted_by_shell_and_multiplicity_counts_the_full_plane():
    band = Band.of(64, 1, 20)
    assert (band.shell[1:] >= band.shell[:-1]).all()
    assert int(band.shell.min()) == 1 and int(band.shell.max()) == 20
    assert band.count_up_to(10) == int((band.shell <= 10).sum())
    image = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    f = rfft2_centred(image)
    full = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image)))
    k = torch.fft.fftshift(torch.fft.fftfreq(64))
    shells = torch.round(torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2) * 64)
    inside = (shells >= 1) & (shells <= 20)
    expected = (full.abs() ** 2)[inside].sum()
    got = (band.take(f).abs() ** 2 * band.multiplicity).sum()
    assert torch.allclose(got, expected, rtol=1e-4)
    assert torch.equal(band.take(band.dense(band.take(f))), band.take(f))


def test_band_slices_equal_projector_slices(test_map):
    vol, _ = test_map
    projector = Projector(vol)
    band = Band.of(64, 1, 31)
    slicer = BandSlicer(projector, band)
    a = random_rotations(40, generator=torch.Generator().manual_seed(3)).float().reshape(4, 10, 3, 3)
    re, im = slicer(a)
    ref = band.take(projector.project_rfft(a))
    scale = ref.abs().max()
    assert re.shape == (4, 10, len(band))
    assert (re - ref.real).abs().max() < 1e-5 * scale
    assert (im - ref.imag).abs().max() < 1e-5 * scale
    count = band.count_up_to(12)
    re12, im12 = slicer(a, count)
    assert torch.allclose(re12, re[..., :count], atol=1e-6 * scale)
    assert torch.allclose(im12, im[..., :count], atol=1e-6 * scale)
