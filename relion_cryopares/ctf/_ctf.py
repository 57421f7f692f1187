"""RELION CTF parameters -> CTF images with torch-ctf; phase flipping."""

from __future__ import annotations

import torch
from torch_ctf import calculate_ctf_2d

from ._params import CtfParameters


def _frequency_squared_per_angstrom2(image_size_px: int, pixel_size_angstrom: torch.Tensor,
                                     fftshift: bool) -> torch.Tensor:
    """``(n, h, w//2+1)`` squared spatial frequency (1/Å²) of an rfft grid."""
    device = pixel_size_angstrom.device
    ky = torch.fft.fftfreq(image_size_px, device=device, dtype=torch.float64)
    if fftshift:
        ky = torch.fft.fftshift(ky)
    kx = torch.fft.rfftfreq(image_size_px, device=device, dtype=torch.float64)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2  # cycles/px squared
    return k2[None] / pixel_size_angstrom.to(torch.float64)[:, None, None] ** 2


def compute_ctf(params: CtfParameters, image_size_px: int, fftshift: bool = False,
                device: torch.device | str | None = None) -> torch.Tensor:
    """RELION's CTF on the rfft grid of square images.

    Parameters
    ----------
    params: one row per particle (``n`` rows), RELION units (Å, kV, mm, degrees).
    image_size_px: side of the (square) images the CTF applies to.
    fftshift: return the rfft grid fftshifted along ``h`` (torch-fourier-slice layout).

    Returns
    -------
    ``(n, image_size_px, image_size_px // 2 + 1)`` float32 tensor: ``scale * exp(-B s²/4) * CTF`` with
    RELION's sign (positive at low frequency under focus). ``rlnDefocusAngle`` is the angle of the
    defocus-U axis from the image x axis (RELION), which is torch-ctf's angle too (tests compare
    with RELION's formula and with ``relion_project``).
    """
    p = params if device is None else params.to(device)
    to_um = 1e-4
    defocus_um = 0.5 * (p.defocus_u_angstrom + p.defocus_v_angstrom) * to_um
    astig_um = 0.5 * (p.defocus_u_angstrom - p.defocus_v_angstrom) * to_um
    ctf = calculate_ctf_2d(
        defocus=defocus_um,
        astigmatism=astig_um,
        astigmatism_angle=p.defocus_angle_deg,
        voltage=p.voltage_kv,
        spherical_aberration=p.spherical_aberration_mm,
        amplitude_contrast=p.amplitude_contrast,
        phase_shift=p.phase_shift_deg,
        pixel_size=p.pixel_size_angstrom,
        image_shape=(image_size_px, image_size_px),
        rfft=True,
        fftshift=fftshift,
    )
    if ctf.ndim == 2:
        ctf = ctf[None]
    ctf = CTF_SIGN * ctf
    needs_envelope = bool(torch.any(p.bfactor_angstrom2 != 0)) or bool(torch.any(p.scale != 1))
    if needs_envelope:
        s2 = _frequency_squared_per_angstrom2(image_size_px, p.pixel_size_angstrom, fftshift)
        envelope = p.scale.to(torch.float64)[:, None, None] * torch.exp(
            -p.bfactor_angstrom2.to(torch.float64)[:, None, None] * s2 / 4.0)
        ctf = ctf * envelope.to(ctf.dtype)
    return ctf.to(torch.float32)


#: torch-ctf's sign relative to RELION's (checked in tests against relion_project).
CTF_SIGN = 1.0


def phase_flip(image_rfft: torch.Tensor, ctf: torch.Tensor) -> torch.Tensor:
    """Multiply ``(..., h, w//2+1)`` Fourier images by the sign of their CTF (same layout)."""
    return image_rfft * torch.sign(ctf).to(image_rfft.real.dtype)
