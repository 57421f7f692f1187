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
