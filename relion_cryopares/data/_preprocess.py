"""Particle images -> network input (cryoPARES preprocessing), vectorised torch.

Steps (DESIGN.md, "The method"), for a batch of particles of any optics groups:

1. Fourier rescale to ``angpix_nnet`` (one crop/pad per distinct pixel size; the box changes, the
   field of view is kept; the effective pixel size is ``n * p / m``).
2. Background normalisation: mean 0 / std 1 of the pixels outside the particle circle
   (``particle_diameter_angstrom``; the whole image when no pixel lies outside).
3. A CTF phase-flipped channel: the image's centred rfft times ``sign(CTF)`` at the effective pixel
   size. Data already phase flipped (``rlnCtfDataArePhaseFlipped``) are used as the flipped
   channel as they are (no second flip); their first channel is the flip undone (flipping is its own
   inverse), so both channels mean the same thing for every optics group. The flipped channel is
   normalised like the first.
4. Centre crop (or zero pad) to ``box_nnet``.
5. Soft circular mask of the particle diameter (cosine edge of ``mask_edge_px``).
6. A fixed Gaussian filter bank (``sigmas_px``, sigma 0 = identity) on both channels, computed in
   Fourier space (``exp(-2 pi^2 sigma^2 k^2)``): ``2 * len(sigmas_px)`` channels ordered
   ``[raw sigma_0..sigma_S-1, flipped sigma_0..sigma_S-1]``.

Steps 1-4 are :func:`prepare_channels` (``(b, 2, box, box)``), steps 5-6 :func:`finish_channels`;
training augments between the two (rotations, shifts, noise act on the 2-channel images).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from relion_cryopares.ctf import CtfParameters, compute_ctf
from relion_cryopares._configdict import config_from_dict, config_to_dict
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import (centre_crop_or_pad_images, irfft2_centred, radial_frequency_2d,
                                      resample_images, rfft2_centred, soft_sphere_mask)


@dataclass(frozen=True)
class PreprocessConfig:
    """How particles become network input (stored with each model, ``preprocess.json``).

    ``box_nnet``: side (px) of the network input at ``angpix_nnet`` Å/px.
    ``particle_diameter_angstrom``: diameter of the particle (background ring, mask).
    ``sigmas_px``: Gaussian filter bank in pixels of the network input (0 = identity).
    ``mask_edge_px``: width of the soft edge of the circular mask.
    """

    box_nnet: int
    particle_diameter_angstrom: float
    angpix_nnet: float = 1.5
    sigmas_px: tuple[float, ...] = (0.0, 0.3, 1.0, 2.0)
    mask_edge_px: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas_px", tuple(float(s) for s in self.sigmas_px))
        object.__setattr__(self, "box_nnet", int(self.box_nnet))
        problems = []
        if self.box_nnet < 8:
            problems.append(f"box_nnet must be >= 8 px, got {self.box_nnet}")
        if not self.angpix_nnet > 0:
            problems.append(f"angpix_nnet must be > 0, got {self.angpix_nnet}")
        if not self.particle_diameter_angstrom > 0:
            problems.append(f"particle_diameter_angstrom must be > 0, got {self.particle_diameter_angstrom}")
        if not self.sigmas_px or any(s < 0 for s in self.sigmas_px):
            problems.append("sigmas_px must be a non-empty list of values >= 0")
        if self.mask_edge_px < 0:
            problems.append("mask_edge_px must be >= 0")
        if problems:
            raise InputError("invalid preprocessing configuration: " + "; ".join(problems))

    @property
    def n_channels(self) -> int:
        """Channels of the network input: ``2 * len(sigmas_px)``."""
        return 2 * len(self.sigmas_px)

    @property
    def radius_px(self) -> float:
        """Particle radius in network pixels (capped at half the box)."""
        return min(0.5 * self.particle_diameter_angstrom / self.angpix_nnet, self.box_nnet / 2.0)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @staticmethod
    def from_dict(d: dict) -> "PreprocessConfig":
        return config_from_dict(PreprocessConfig, d, "preprocessing")


def _normalise_background(images: torch.Tensor, radius_px: float) -> torch.Tensor:
    """``(b, c, n, n)`` -> mean 0 / std 1 outside the circle of ``radius_px`` (per image/channel)."""
    n = images.shape[-1]
    c = torch.arange(n, device=images.device, dtype=torch.float32) - n // 2
    outside = (c[:, None] ** 2 + c[None, :] ** 2) > radius_px ** 2
    if int(outside.sum()) < 16:  # particle fills the box: use every pixel
        outside = torch.ones_like(outside)
    bg = images[..., outside]
    mean = bg.mean(-1)
    std = bg.std(-1).clamp_min(1e-6)
    return (images - mean[..., None, None]) / std[..., None, None]


def prepare_channels(images: torch.Tensor, pixel_size_angstrom: torch.Tensor, ctf_params: CtfParameters,
                     phase_flipped: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Steps 1-4 (module docstring): ``(b, h, w)`` images -> ``(b, 2, box_nnet, box_nnet)``
    float32 (raw, phase flipped), on the device of ``images``.

    ``pixel_size_angstrom`` ``(b,)`` Å/px of each image; ``ctf_params`` one row per image (its own
    pixel size is replaced by the effective one); ``phase_flipped`` ``(b,)`` bool.
    """
    if images.ndim != 3 or images.shape[-1] != images.shape[-2]:
        raise InputError(f"images must be (b, n, n), got {tuple(images.shape)}")
    b, device = images.shape[0], images.device
    pix = torch.as_tensor(pixel_size_angstrom, dtype=torch.float64).reshape(-1).cpu()
    flipped = torch.as_tensor(phase_flipped, dtype=torch.bool).reshape(-1).cpu()
    if pix.shape[0] != b or flipped.shape[0] != b or len(ctf_params) != b:
        raise InputError(f"{b} images but {pix.shape[0]} pixel sizes, {flipped.shape[0]} phase-flip "
                         f"flags and {len(ctf_params)} CTF rows")
    out = torch.empty((b, 2, cfg.box_nnet, cfg.box_nnet), device=device, dtype=torch.float32)
    n = images.shape[-1]
    for p in torch.unique(pix).tolist():
        sel = torch.nonzero(pix == p).reshape(-1)
        x = resample_images(images[sel.to(device)].to(torch.float32), p, cfg.angpix_nnet)
        m = x.shape[-1]
        eff = n * p / m
        radius = 0.5 * cfg.particle_diameter_angstrom / eff
        x = _normalise_background(x[:, None], radius)[:, 0]
        params = ctf_params.select(sel)
        params = dataclasses.replace(params, pixel_size_angstrom=torch.full((len(sel),), eff,
                                                                              dtype=torch.float64))
        sign = torch.sign(compute_ctf(params, m, fftshift=True, device=device))
        f = rfft2_centred(x) * sign
        other = irfft2_centred(f, m)
        was_flipped = flipped[sel].to(device)[:, None, None]
        raw = torch.where(was_flipped, other, x)
        flip = torch.where(was_flipped, x, other)
        both = _normalise_background(torch.stack([raw, flip], 1), radius)
        out[sel.to(device)] = centre_crop_or_pad_images(both, cfg.box_nnet)
    return out


def _gaussian_filters(cfg: PreprocessConfig, device) -> torch.Tensor:
    """``(S, box, box//2+1)`` Fourier filters ``exp(-2 pi^2 sigma^2 k^2)``."""
    k2 = radial_frequency_2d(cfg.box_nnet, device=device) ** 2
    sig = torch.tensor(cfg.sigmas_px, device=device, dtype=torch.float32)
    return torch.exp(-2.0 * math.pi ** 2 * sig[:, None, None] ** 2 * k2[None])


def circular_mask(cfg: PreprocessConfig, device=None) -> torch.Tensor:
    """``(box, box)`` soft circular mask of the particle diameter (1 inside)."""
    radius = max(cfg.radius_px - cfg.mask_edge_px, 1.0)
    return soft_sphere_mask(cfg.box_nnet, radius, cfg.mask_edge_px, ndim=2, device=device)


def finish_channels(channels: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Steps 5-6: ``(b, 2, box, box)`` -> masked, filtered ``(b, 2 * S, box, box)`` float32."""
    b, c, n, _ = channels.shape
    x = channels * circular_mask(cfg, channels.device)
    f = rfft2_centred(x)[:, :, None] * _gaussian_filters(cfg, channels.device)  # (b, c, S, n, n//2+1)
    return irfft2_centred(f, n).reshape(b, c * len(cfg.sigmas_px), n, n).contiguous()


def preprocess_particles(images: torch.Tensor, pixel_size_angstrom: torch.Tensor, ctf_params: CtfParameters,
                         phase_flipped: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """Particle images ``(b, h, w)`` -> network input ``(b, 2 * len(sigmas_px), box_nnet, box_nnet)``.

    See the module docstring; device follows ``images``.
    """
    return finish_channels(prepare_channels(images, pixel_size_angstrom, ctf_params, phase_flipped, cfg), cfg)
