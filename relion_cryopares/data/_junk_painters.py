"""Projected thickness of the non-protein objects of simulated extractions: carbon-film edges and ice
contamination (used by :mod:`relion_cryopares.data._extraction`).

Every painter returns ``(b, n, n)`` float32 images of *projected density* in units of ``1`` = the
peak projected density of one particle (the caller scales them); ``(x, y)`` are pixels from the
canvas centre ``n // 2``. The caller gives each object its own amplitude contrast in the CTF.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Carbon film: projected density of the film, in particle peaks (random in this range per image);
#: amorphous carbon 10-20 nm thick, mean inner potential ~2x that of protein over ice.
CARBON_DENSITY_PEAKS = (2.0, 4.0)
#: Amplitude contrast of carbon (elastic scattering outside the objective aperture plus loss).
CARBON_AMPLITUDE_CONTRAST = 0.2
#: Width of the film edge (px, logistic step) and of its slight curvature (1/px).
CARBON_EDGE_WIDTH_PX = 0.7
CARBON_CURVATURE_PER_PX = 0.001
#: Roughness of the film: relative amplitude and correlation length (px) of a smooth random field.
CARBON_ROUGHNESS = 0.15
CARBON_ROUGHNESS_LENGTH_PX = 2.0
#: Ice contamination (crystalline ice on the film): projected density per particle diameter of
#: thickness, in particle peaks (ice in vacuum vs protein in vitreous ice: ~4.5 V vs ~2.7 V), and its
#: amplitude contrast (Bragg diffraction out of the aperture makes ice very dark in micrographs).
ICE_DENSITY_PEAKS_PER_DIAMETER = 1.7
ICE_AMPLITUDE_CONTRAST = 0.5


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(n, dtype=torch.float32) - n // 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    return x, y


def smooth_random_field(b: int, n: int, length_px: float, generator: torch.Generator) -> torch.Tensor:
    """``(b, n, n)`` Gaussian random field (mean 0, std 1) with Gaussian correlation ``length_px``."""
    white = torch.randn((b, n, n), generator=generator)
    k2 = torch.fft.fftfreq(n)[:, None] ** 2 + torch.fft.rfftfreq(n)[None, :] ** 2
    f = torch.fft.rfft2(white) * torch.exp(-2 * math.pi ** 2 * length_px ** 2 * k2)
    field = torch.fft.irfft2(f, s=(n, n))
    return (field - field.mean(dim=(-2, -1), keepdim=True)) / field.std(dim=(-2, -1), keepdim=True)


def carbon_edge(n: int, angle_rad: np.ndarray, offset_px: np.ndarray, density: np.ndarray,
                generator: torch.Generator) -> torch.Tensor:
    """``(b, n, n)`` a carbon film covering the half plane ``u > offset_px`` (``u`` the coordinate
    along the direction ``angle_rad`` ``(b,)``), its edge bent slightly and smoothed over
    :data:`CARBON_EDGE_WIDTH_PX`, projected density ``density`` ``(b,)`` with roughness."""
    x, y = _grid(n)
    a = torch.as_tensor(angle_rad, dtype=torch.float32)[:, None, None]
    u = x * torch.cos(a) + y * torch.sin(a)
    v = -x * torch.sin(a) + y * torch.cos(a)
    d = u - torch.as_tensor(offset_px, dtype=torch.float32)[:, None, None] - CARBON_CURVATURE_PER_PX * v ** 2
    film = torch.sigmoid(d / CARBON_EDGE_WIDTH_PX)
    rough = 1 + CARBON_ROUGHNESS * smooth_random_field(len(a), n, CARBON_ROUGHNESS_LENGTH_PX, generator)
    return torch.as_tensor(density, dtype=torch.float32)[:, None, None] * film * rough


def ice_blob(n: int, centre_px: np.ndarray, semi_axes_px: np.ndarray, angle_rad: np.ndarray,
             peak_density: np.ndarray) -> torch.Tensor:
    """``(b, n, n)`` projected thickness of ellipsoids: centre ``(b, 2)`` (x, y), in-plane semi-axes
    ``(b, 2)`` rotated by ``angle_rad`` ``(b,)``, density ``peak_density`` ``(b,)`` at the centre
    (``sqrt(1 - r²)`` profile, one pixel of sub-pixel smoothing at the rim)."""
    x, y = _grid(n)
    c = torch.as_tensor(centre_px, dtype=torch.float32)
    ax = torch.as_tensor(semi_axes_px, dtype=torch.float32)
    a = torch.as_tensor(angle_rad, dtype=torch.float32)[:, None, None]
    dx, dy = x - c[:, 0, None, None], y - c[:, 1, None, None]
    u = (dx * torch.cos(a) + dy * torch.sin(a)) / ax[:, 0, None, None]
    v = (-dx * torch.sin(a) + dy * torch.cos(a)) / ax[:, 1, None, None]
    rim = 1.0 / ax.min(dim=1).values[:, None, None]  # one pixel in units of the semi-axis
    profile = torch.sqrt((1 - u ** 2 - v ** 2).clamp(min=0) + rim ** 2) - rim
    return torch.as_tensor(peak_density, dtype=torch.float32)[:, None, None] * profile.clamp(min=0)
