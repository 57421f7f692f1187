"""Fourier-space bookkeeping for matching: shells, Hermitian weights, noise whitening.

Noise model (documented choice). Each particle's noise power spectrum is estimated from **its own
image**: the radial average of ``|F(k)|²`` over each Fourier shell, smoothed over neighbouring
shells. At the SNRs of cryo-EM particles (0.01-0.1 over the box) the image power is dominated by
noise, so this is the noise spectrum up to a small overestimate at the lowest frequencies where
signal is strong. Per particle rather than per batch or optics group so that a particle's result
never depends on which other particles share its batch: a continued run gives bit-for-bit the same
poses as a from-scratch run. Whitening weights are ``1 / sigma²(shell)`` inside the band
``[min_shell, max_shell]`` and 0 outside (the DC term and everything beyond the reference's
low-pass never count).
"""

from __future__ import annotations

import torch

from relion_cryopares.fourier import radial_frequency_2d


def shell_index(size: int, device=None) -> torch.Tensor:
    """``(size, size//2+1)`` integer Fourier shell ``round(|k| * size)`` of a centred rfft."""
    return torch.round(radial_frequency_2d(size, device) * size).long()


def hermitian_weights(size: int, device=None) -> torch.Tensor:
    """``(size//2+1,)`` multiplicity of each rfft column in the full plane (1 for ``kx = 0`` and the
    Nyquist column of even sizes, else 2): ``sum over the full plane = sum(rfft * weights)``."""
    w = torch.full((size // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if size % 2 == 0:
        w[-1] = 1.0
    return w


def whitening_weights(images_rfft: torch.Tensor, min_shell: int, max_shell: int,
                      smooth_shells: int = 1) -> torch.Tensor:
    """Per-particle noise whitening ``1/sigma²(k)`` on the rfft grid.

    Parameters
    ----------
    images_rfft: ``(b, n, n//2+1)`` centred rfft of the particle images.
    min_shell, max_shell: the band (inclusive, integer shells ``|k| * n``) that takes part.
    smooth_shells: half-width of the moving average of the radial power over shells.

    Returns ``(b, n, n//2+1)`` float32, zero outside the band.
    """
    b, n = images_rfft.shape[0], images_rfft.shape[-2]
    device = images_rfft.device
    shells = shell_index(n, device)
    n_shells = n // 2 + 2
    flat = shells.clamp(max=n_shells - 1).reshape(-1)
    power = (images_rfft.real ** 2 + images_rfft.imag ** 2).reshape(b, -1).to(torch.float32)
    total = torch.zeros(b, n_shells, device=device).index_add_(1, flat, power)
    count = torch.zeros(n_shells, device=device).index_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
    if smooth_shells > 0:
        kernel = torch.ones(1, 1, 2 * smooth_shells + 1, device=device)
        total = torch.nn.functional.conv1d(total[:, None], kernel, padding=smooth_shells)[:, 0]
        count = torch.nn.functional.conv1d(count[None, None], kernel, padding=smooth_shells)[0, 0]
    sigma2 = total / count.clamp(min=1)
    floor = sigma2[:, min_shell:max_shell + 1].mean(dim=1, keepdim=True) * 1e-6 + 1e-30
    inv = 1.0 / torch.maximum(sigma2, floor)
    band = (torch.arange(n_shells, device=device) >= min_shell) & (torch.arange(n_shells, device=device) <= max_shell)
    inv = inv * band
    return inv[:, shells.clamp(max=n_shells - 1)]
