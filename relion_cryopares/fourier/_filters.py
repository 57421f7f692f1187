"""Filters, masks and resampling of maps and images."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._fft import irfft3_centred, radial_frequency_3d, rfft3_centred


def lowpass_volume(volume: torch.Tensor, resolution_angstrom: float, pixel_size_angstrom: float,
                   edge_width_shells: float = 2.0) -> torch.Tensor:
    """Low-pass ``(n, n, n)`` map to ``resolution_angstrom`` with a raised-cosine edge of
    ``edge_width_shells`` Fourier shells (RELION's soft low-pass)."""
    n = volume.shape[-1]
    cutoff = pixel_size_angstrom / resolution_angstrom  # cycles/px
    if cutoff >= 0.5:
        return volume.clone()
    k = radial_frequency_3d(n, volume.device)
    width = edge_width_shells / n
    t = ((k - cutoff) / width).clamp(0, 1)
    filt = 0.5 * (1 + torch.cos(math.pi * t))
    return irfft3_centred(rfft3_centred(volume.to(torch.float32)) * filt, n)


def soft_sphere_mask(size: int, radius_px: float, edge_px: float = 3.0, ndim: int = 2,
                     device=None) -> torch.Tensor:
    """``(size,)*ndim`` mask: 1 inside ``radius_px`` of the centre, cosine edge to 0 over ``edge_px``."""
    c = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")
    r = torch.sqrt(sum(g ** 2 for g in grids))
    t = ((r - radius_px) / max(edge_px, 1e-6)).clamp(0, 1)
    return 0.5 * (1 + torch.cos(math.pi * t))


def _centre_crop_or_pad(x: torch.Tensor, size: int, dims: int) -> torch.Tensor:
    n = x.shape[-1]
    if size == n:
        return x
    if size < n:
        s = (n - size) // 2 + (n % 2 == 0 and size % 2 == 1)
        sl = [slice(None)] * (x.ndim - dims) + [slice(s, s + size)] * dims
        return x[tuple(sl)]
    before = size // 2 - n // 2
    after = size - n - before
    return F.pad(x, [before, after] * dims)


def resample_volume(volume: torch.Tensor, pixel_size_angstrom: float,
                    new_pixel_size_angstrom: float, new_size: int) -> torch.Tensor:
    """Resample a ``(n, n, n)`` map to another pixel size (Fourier crop/pad: exact band limit) and
    then centre-crop or zero-pad it to ``new_size``. Density per voxel is preserved."""
    n = volume.shape[-1]
    m = int(round(n * pixel_size_angstrom / new_pixel_size_angstrom))
    m += m % 2 if n % 2 == 0 else 0
    v = volume.to(torch.float32)
    if m != n:
        f = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(v)))
        f = _centre_crop_or_pad(f, m, 3)
        v = torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f))).real * (m / n) ** 3
    return _centre_crop_or_pad(v, new_size, 3)


def resample_images(images: torch.Tensor, pixel_size_angstrom: float,
                    new_pixel_size_angstrom: float) -> torch.Tensor:
    """Resample ``(..., n, n)`` images to another pixel size by Fourier crop/pad (the box grows or
    shrinks, field of view kept). Pixel values keep their scale."""
    n = images.shape[-1]
    m = int(round(n * pixel_size_angstrom / new_pixel_size_angstrom))
    m += m % 2
    if m == n:
        return images.to(torch.float32)
    f = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(images.to(torch.float32),
                                                              dim=(-2, -1))), dim=(-2, -1))
    f = _centre_crop_or_pad(f, m, 2)
    out = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1))), dim=(-2, -1))
    return out.real * (m / n) ** 2


def centre_crop_or_pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop (or zero pad) ``(..., n, n)`` images to ``(..., size, size)``."""
    return _centre_crop_or_pad(images, size, 2)
