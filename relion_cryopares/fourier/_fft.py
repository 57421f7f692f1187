"""Centred real FFTs: the layout of every Fourier-space tensor in this package.

"Centred rfft" (conventions.py): real space is ``ifftshift``-ed so the centre pixel ``n // 2`` is the
origin (phases are those of a centred object), then ``rfftn``, then ``fftshift`` over every axis but
the last (half) one: torch-fourier-slice's layout. Frequencies are in cycles/pixel.
"""

from __future__ import annotations

import torch


def rfft2_centred(images: torch.Tensor) -> torch.Tensor:
    """``(..., h, w)`` real -> ``(..., h, w//2+1)`` centred rfft."""
    f = torch.fft.rfftn(torch.fft.ifftshift(images, dim=(-2, -1)), dim=(-2, -1))
    return torch.fft.fftshift(f, dim=-2)


def irfft2_centred(images_rfft: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of :func:`rfft2_centred` for square ``(size, size)`` images."""
    f = torch.fft.ifftshift(images_rfft, dim=-2)
    return torch.fft.fftshift(torch.fft.irfftn(f, s=(size, size), dim=(-2, -1)), dim=(-2, -1))


def rfft3_centred(volume: torch.Tensor) -> torch.Tensor:
    """``(d, h, w)`` real -> ``(d, h, w//2+1)`` centred rfft."""
    f = torch.fft.rfftn(torch.fft.ifftshift(volume, dim=(-3, -2, -1)), dim=(-3, -2, -1))
    return torch.fft.fftshift(f, dim=(-3, -2))


def irfft3_centred(volume_rfft: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of :func:`rfft3_centred` for cubic ``(size,)*3`` volumes."""
    f = torch.fft.ifftshift(volume_rfft, dim=(-3, -2))
    v = torch.fft.irfftn(f, s=(size, size, size), dim=(-3, -2, -1))
    return torch.fft.fftshift(v, dim=(-3, -2, -1))


def rfft_frequency_grid_2d(size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(size, size//2+1, 2)`` (y, x) frequencies in cycles/pixel of a centred 2D rfft."""
    ky = torch.fft.fftshift(torch.fft.fftfreq(size, device=device, dtype=dtype))
    kx = torch.fft.rfftfreq(size, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(ky, kx, indexing="ij"), dim=-1)


def radial_frequency_2d(size: int, device=None) -> torch.Tensor:
    """``(size, size//2+1)`` |k| in cycles/pixel of a centred 2D rfft."""
    return torch.linalg.vector_norm(rfft_frequency_grid_2d(size, device=device), dim=-1)


def radial_frequency_3d(size: int, device=None) -> torch.Tensor:
    """``(size, size, size//2+1)`` |k| in cycles/pixel of a centred 3D rfft."""
    k = torch.fft.fftshift(torch.fft.fftfreq(size, device=device))
    kx = torch.fft.rfftfreq(size, device=device)
    return torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)


def shift_rfft2(images_rfft: torch.Tensor, shifts_px: torch.Tensor, size: int) -> torch.Tensor:
    """Shift centred-rfft images by ``shifts_px`` ``(..., 2)`` ordered (x, y), in pixels.

    A positive x shift moves the content towards larger x (torch-fourier-shift's phase ramp).
    """
    from torch_fourier_shift import fourier_shift_dft_2d

    shifts_yx = torch.flip(shifts_px.to(torch.float32), dims=(-1,))
    return fourier_shift_dft_2d(images_rfft, image_shape=(size, size), shifts=shifts_yx,
                                rfft=True, fftshifted=True)


def sinc2_gridding_correction(size: int, padded_size: int, device=None) -> torch.Tensor:
    """``(size, size, size)`` real-space attenuation of trilinear interpolation on a grid of
    ``padded_size``: the product over axes of ``sinc²(x / padded_size)``, ``x`` from the centre."""
    x = (torch.arange(size, device=device, dtype=torch.float64) - size // 2) / padded_size
    s = torch.sinc(x) ** 2
    return (s[:, None, None] * s[None, :, None] * s[None, None, :]).to(torch.float32)
