"""Projections of a map at given poses (Fourier slice theorem, torch-fourier-slice's layout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_image_interpolation import sample_image_3d

from ._fft import irfft2_centred, rfft3_centred, shift_rfft2, sinc2_gridding_correction
from ._slices import slice_coordinates


class Projector:
    """A map prepared once (gridding pre-correction, zero padding, centred 3D rfft) for many
    projections.

    Parameters
    ----------
    volume: ``(n, n, n)`` real map, ``(z, y, x)``.
    pad_factor: oversampling of the 3D Fourier transform (2 as in RELION).

    Slices are sampled with trilinear interpolation at the frequencies of an ``n``-pixel image (as
    RELION's projector does), so the result is the projection of the map in an ``n``-pixel box.
    """

    def __init__(self, volume: torch.Tensor, pad_factor: float = 2.0):
        if volume.ndim != 3 or len(set(volume.shape)) != 1:
            raise ValueError(f"Projector needs a cubic volume, got shape {tuple(volume.shape)}")
        self.size = int(volume.shape[-1])
        padded = int(round(self.size * pad_factor))
        padded += (padded - self.size) % 2  # same parity: the centre stays on a voxel
        self.padded_size = padded
        v = volume.to(torch.float32) / sinc2_gridding_correction(self.size, padded, volume.device)
        p = (padded - self.size) // 2
        v = F.pad(v, [p] * 6)
        self.volume_rfft = rfft3_centred(v)

    @property
    def device(self) -> torch.device:
        return self.volume_rfft.device

    def project_rfft(self, matrices: torch.Tensor, fftfreq_max: float = 0.5) -> torch.Tensor:
        """Centred-rfft projections ``(..., n, n//2+1)`` complex64 for pose matrices ``(..., 3, 3)``
        (RELION's A, conventions.py). Frequencies beyond ``fftfreq_max`` (cycles/px) are zero."""
        a = matrices.to(device=self.device, dtype=torch.float32)
        zyx, conj, inside = slice_coordinates(a, self.size, self.padded_size, fftfreq_max)
        values = sample_image_3d(self.volume_rfft, zyx, interpolation="trilinear")
        values = torch.where(conj, torch.conj(values), values)
        out = torch.zeros(*a.shape[:-2], *inside.shape, dtype=torch.complex64, device=self.device)
        out[..., inside] = values
        return out

    def project(self, matrices: torch.Tensor, shifts_px: torch.Tensor | None = None,
                ctf: torch.Tensor | None = None) -> torch.Tensor:
        """Real-space projections ``(..., n, n)``, shifted by ``+shifts_px`` ``(..., 2)`` (x, y)
        and multiplied by ``ctf`` (``(..., n, n//2+1)`` centred layout) when given."""
        f = self.project_rfft(matrices)
        if ctf is not None:
            f = f * ctf
        if shifts_px is not None:
            f = shift_rfft2(f, shifts_px.to(self.device), self.size)
        return irfft2_centred(f, self.size)
