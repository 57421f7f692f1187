"""The reference is brought to the particles' grid (other box and pixel size), low-passed, masked."""

from __future__ import annotations

import numpy as np
import torch

from relion_cryopares.fourier import lowpass_volume, resample_volume, soft_sphere_mask
from relion_cryopares.refine import prepare_reference


def _corr(a, b):
    return float(np.corrcoef(a.numpy().ravel(), b.numpy().ravel())[0, 1])


def test_reference_with_another_box_and_pixel_size(test_map):
    vol, px = test_map
    finer = resample_volume(vol, px, px / 2, 100)  # 2.85 Å, box 100: another box and pixel size
    ref = prepare_reference(finer, px / 2, 64, px, 6.0)
    assert ref.shape == (64, 64, 64)
    assert _corr(ref, lowpass_volume(vol, 6.0, px)) > 0.99
    bigger = torch.nn.functional.pad(vol, [8] * 6)  # same pixel, box 80
    assert torch.allclose(prepare_reference(bigger, px, 64, px, 0.0), vol, atol=1e-5 * vol.abs().max())


def test_lowpass_and_mask(test_map):
    vol, px = test_map
    mask = soft_sphere_mask(64, 20, 4, ndim=3)
    ref = prepare_reference(vol, px, 64, px, 20.0, mask=mask)
    assert torch.allclose(ref, lowpass_volume(vol, 20.0, px) * mask, atol=1e-5 * vol.abs().max())
    assert ref[0, 0, 0] == 0
