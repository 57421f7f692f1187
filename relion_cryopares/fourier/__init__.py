"""Fourier-space operations: projection, reconstruction, FSC, filters, shifts."""

from ._fft import (irfft2_centred, irfft3_centred, radial_frequency_2d, radial_frequency_3d,
                   rfft2_centred, rfft3_centred, rfft_frequency_grid_2d, shift_rfft2)
from ._filters import (centre_crop_or_pad_images, lowpass_volume, resample_images,
                       resample_volume, soft_sphere_mask)
from ._fsc import fsc_curve, masked_fsc_corrected, resolution_at, shell_resolution_angstrom
from ._project import Projector
from ._reconstruct import FourierAccumulator, fsc_to_ssnr

__all__ = [
    "centre_crop_or_pad_images", "lowpass_volume", "resample_images", "resample_volume",
    "soft_sphere_mask",
    "FourierAccumulator", "Projector", "fsc_curve", "fsc_to_ssnr", "irfft2_centred", "masked_fsc_corrected",
    "irfft3_centred", "radial_frequency_2d", "radial_frequency_3d", "resolution_at",
    "rfft2_centred", "rfft3_centred", "rfft_frequency_grid_2d", "shell_resolution_angstrom",
    "shift_rfft2",
]
