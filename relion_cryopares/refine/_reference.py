"""The reference of a local refinement: a map brought to the particles' grid, low-passed, masked."""

from __future__ import annotations

import logging

import torch

from relion_cryopares.fourier import lowpass_volume, resample_volume

log = logging.getLogger(__name__)


def to_particle_grid(volume: torch.Tensor, pixel_size_angstrom: float, box: int,
                     grid_pixel_size_angstrom: float) -> torch.Tensor:
    """``(n, n, n)`` map at ``pixel_size_angstrom`` -> ``(box, box, box)`` at the particles' pixel size
    (Fourier resampling, then centre crop or zero pad); unchanged when both already agree."""
    same_pixel = abs(pixel_size_angstrom - grid_pixel_size_angstrom) <= 1e-4 * grid_pixel_size_angstrom
    if same_pixel and volume.shape[-1] == box:
        return volume.to(torch.float32)
    log.info("resampling a %d^3 map at %.4f A/px to %d^3 at %.4f A/px", volume.shape[-1],
             pixel_size_angstrom, box, grid_pixel_size_angstrom)
    return resample_volume(volume, pixel_size_angstrom, grid_pixel_size_angstrom, box)


def prepare_reference(volume: torch.Tensor, pixel_size_angstrom: float, box: int,
                      grid_pixel_size_angstrom: float, lowpass_angstrom: float,
                      mask: torch.Tensor | None = None,
                      mask_pixel_size_angstrom: float | None = None) -> torch.Tensor:
    """The map the particles are matched against, ``(box, box, box)`` float32.

    Resampled to the particles' pixel size and box, low-pass filtered to ``lowpass_angstrom``
    (raised-cosine edge; no filter when it is beyond Nyquist), then multiplied by ``mask`` (itself
    resampled to the grid and clamped to ``[0, 1]``) when given.
    """
    ref = to_particle_grid(volume, pixel_size_angstrom, box, grid_pixel_size_angstrom)
    if lowpass_angstrom > 0:
        ref = lowpass_volume(ref, lowpass_angstrom, grid_pixel_size_angstrom)
    if mask is not None:
        m_px = pixel_size_angstrom if mask_pixel_size_angstrom is None else mask_pixel_size_angstrom
        ref = ref * to_particle_grid(mask, m_px, box, grid_pixel_size_angstrom).clamp(0, 1)
    return ref
