"""The mask-corrected FSC (phase randomisation, as RELION PostProcess): a tight mask makes the plain
masked FSC of two maps with independent noise rise at high frequency; the corrected one does not."""

from __future__ import annotations

import torch

from relion_cryopares.fourier import fsc_curve, lowpass_volume, masked_fsc_corrected, resolution_at


def test_tight_mask_inflation_is_removed(test_map):
    vol, px = test_map
    vol = vol.float()
    gen = torch.Generator().manual_seed(0)
    signal = lowpass_volume(vol, 20.0, px)  # no common signal beyond 20 A
    noise = 0.5 * float(vol.std())
    h1 = signal + noise * torch.randn(vol.shape, generator=gen)
    h2 = signal + noise * torch.randn(vol.shape, generator=gen)
    mask = (vol > 0.05 * vol.max()).float()  # tight, hard-edged: correlates the noise
    plain, masked = fsc_curve(h1, h2), fsc_curve(h1, h2, mask)
    corrected = masked_fsc_corrected(h1, h2, mask)
    n = vol.shape[-1]
    beyond = slice(int(n * px / 14.0), n // 2 + 1)  # shells finer than 14 A
    assert float(masked[beyond].mean()) > 0.2  # the mask's own correlation
    assert abs(float(corrected[beyond].mean())) < 0.1
    assert abs(float(plain[beyond].mean())) < 0.1
    # at low resolution (before randomisation) the corrected curve is the masked one
    assert torch.allclose(corrected[:3], masked[:3])
    assert resolution_at(corrected, 0.143, n, px) > 15.0 > resolution_at(masked, 0.143, n, px)
