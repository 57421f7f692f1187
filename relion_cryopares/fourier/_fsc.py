"""Fourier shell correlation and resolution (torch-fourier-shell-correlation)."""

from __future__ import annotations

import numpy as np
import torch
from torch_fourier_shell_correlation import fourier_shell_correlation


def fsc_curve(map1: torch.Tensor, map2: torch.Tensor, mask: torch.Tensor | None = None
              ) -> torch.Tensor:
    """FSC ``(box//2+1,)`` between two ``(box,)*3`` maps, shells at ``k / box`` cycles/pixel.

    ``mask`` (real space, same shape) multiplies both maps first."""
    a, b = map1.to(torch.float32), map2.to(torch.float32)
    if mask is not None:
        a, b = a * mask, b * mask
    curve = fourier_shell_correlation(a, b)
    n = map1.shape[-1] // 2 + 1
    return curve[:n].to(torch.float32)


def shell_resolution_angstrom(box: int, pixel_size_angstrom: float) -> np.ndarray:
    """``(box//2+1,)`` resolution of each shell in Å (inf at shell 0)."""
    k = np.arange(box // 2 + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return box * pixel_size_angstrom / k


def resolution_at(fsc: torch.Tensor | np.ndarray, threshold: float, box: int,
                  pixel_size_angstrom: float) -> float:
    """Resolution (Å) where the FSC first drops below ``threshold``, linearly interpolated between
    shells; Nyquist (2 × pixel) when it never does; ``inf`` when it starts below."""
    f = np.asarray(fsc, dtype=np.float64)
    below = np.nonzero(f[1:] < threshold)[0]
    if len(below) == 0:
        return 2.0 * pixel_size_angstrom
    i = int(below[0]) + 1
    if i == 1 and f[0] < threshold:
        return float("inf")
    f0, f1 = f[i - 1], f[i]
    t = (f0 - threshold) / (f0 - f1) if f0 != f1 else 0.0
    k = (i - 1) + t
    return float(box * pixel_size_angstrom / k) if k > 0 else float("inf")


def _randomise_phases(volume: torch.Tensor, from_shell: int, generator: torch.Generator) -> torch.Tensor:
    """``volume`` ``(n, n, n)`` with the phases of every Fourier component at radius >= ``from_shell``
    (in shells of ``1 / n`` cycles/pixel) replaced by uniform random ones; amplitudes kept."""
    n = volume.shape[-1]
    f = torch.fft.rfftn(volume.to(torch.float32))
    kz = torch.fft.fftfreq(n)[:, None, None]
    ky = torch.fft.fftfreq(n)[None, :, None]
    kx = torch.fft.rfftfreq(n)[None, None, :]
    radius = torch.sqrt(kx ** 2 + ky ** 2 + kz ** 2) * n
    outer = radius >= from_shell - 0.5
    phase = torch.rand(f.shape, generator=generator) * (2 * torch.pi)
    f = torch.where(outer, torch.abs(f) * torch.exp(1j * phase), f)
    return torch.fft.irfftn(f, s=volume.shape)


def masked_fsc_corrected(map1: torch.Tensor, map2: torch.Tensor, mask: torch.Tensor,
                         randomise_below: float = 0.8, seed: int = 0) -> torch.Tensor:
    """Masked FSC ``(box//2+1,)`` corrected for the correlation the mask itself adds, as RELION
    PostProcess does: beyond the first shell where the *unmasked* FSC drops below
    ``randomise_below``, the phases of both maps are randomised and

        FSC = (FSC_masked - FSC_randomised_masked) / (1 - FSC_randomised_masked)

    (shells before that keep the plain masked FSC)."""
    unmasked = fsc_curve(map1, map2).double()
    masked = fsc_curve(map1, map2, mask).double()
    below = torch.nonzero(unmasked[1:] < randomise_below).flatten()
    if below.numel() == 0:
        return masked.float()
    k0 = int(below[0]) + 1
    gen = torch.Generator().manual_seed(seed)
    rand = fsc_curve(_randomise_phases(map1.cpu(), k0, gen), _randomise_phases(map2.cpu(), k0, gen),
                     mask.cpu()).double().to(masked.device)
    out = masked.clone()
    denom = (1.0 - rand[k0:]).clamp(min=1e-6)
    out[k0:] = (masked[k0:] - rand[k0:]) / denom
    return out.float()
