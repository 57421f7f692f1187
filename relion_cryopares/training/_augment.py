"""Training augmentations on the 2-channel images of :func:`relion_cryopares.data.prepare_channels`.

In-plane rotation, shift, Gaussian noise, Gaussian blur and random erasing, each applied to a
particle with its own probability, vectorised over the batch on the images' device. Only the
rotation changes the label: rotating the image content by ``a`` degrees about the image centre
(pixel ``n // 2``), counter-clockwise in the ``(x, y)`` = ``(column, row)`` frame, turns a projection
at pose ``A`` into the projection at pose ``Rz(a) @ A`` with
``Rz(a) = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]`` (because
``P'(r) = P(R(-a) r) = integral V(A.T Rz(-a) (r, z)) dz``; checked against projections in the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from relion_cryopares._configdict import config_from_dict, config_to_dict
from relion_cryopares.fourier import irfft2_centred, radial_frequency_2d, rfft2_centred


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (per particle copy).

    ``max_shift_fraction``: shifts uniform in ``+-max_shift_fraction * box`` pixels per axis.
    ``max_noise_std``: added noise std uniform in ``[0, max_noise_std]`` (images have background
    std 1). ``max_blur_px``: blur sigma uniform in ``[0, max_blur_px]``. ``erase_area``: erased
    rectangle area as a fraction of the image, uniform in this range.
    """

    p_rotate: float = 1.0
    p_shift: float = 0.5
    max_shift_fraction: float = 0.05
    p_noise: float = 0.3
    max_noise_std: float = 1.0
    p_blur: float = 0.2
    max_blur_px: float = 1.5
    p_erase: float = 0.1
    erase_area: tuple[float, float] = (0.02, 0.1)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @staticmethod
    def from_dict(d: dict) -> "AugmentConfig":
        d = dict(d)
        if "erase_area" in d:
            d["erase_area"] = tuple(d["erase_area"])
        return config_from_dict(AugmentConfig, d, "augmentation")


def inplane_rotation(angle_deg: torch.Tensor) -> torch.Tensor:
    """``(b,)`` angles -> ``(b, 3, 3)`` ``Rz(a)`` (module docstring), float32."""
    a = torch.deg2rad(angle_deg.to(torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    z, o = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1),
                        torch.stack([z, z, o], -1)], -2)


def rotate_shift_images(images: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Rotate ``(b, c, n, n)`` images by ``angle_deg`` ``(b,)`` about pixel ``n // 2`` (content
    turns counter-clockwise in ``(x, y)`` = ``(column, row)``), then shift the content by ``shift_px``
    ``(b, 2)`` ``(x, y)`` pixels. Bilinear, zeros outside."""
    b, _, n, _ = images.shape
    a = torch.deg2rad(angle_deg.to(images.dtype))
    c, s = torch.cos(a), torch.sin(a)
    # input coordinate = R(-a) (out - c0 - t) + c0, in grid_sample's normalised units
    r_inv = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (b, 2, 2)
    c0 = (2 * (n // 2) + 1) / n - 1.0
    centre = torch.full((b, 2), c0, dtype=images.dtype, device=images.device)
    t = 2.0 * shift_px.to(images) / n
    trans = centre - (r_inv @ (centre + t)[..., None])[..., 0]
    theta = torch.cat([r_inv, trans[..., None]], -1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur(images: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    n = images.shape[-1]
    k2 = radial_frequency_2d(n, device=images.device) ** 2
    filt = torch.exp(-2.0 * math.pi ** 2 * sigma_px[:, None, None, None] ** 2 * k2)
    return irfft2_centred(rfft2_centred(images) * filt, n)


class Augmenter:
    """``augmenter(images, matrices, generator) -> (images, matrices)``: random augmentations of
    ``(b, c, n, n)`` images and the matching pose labels ``(b, 3, 3)`` (module docstring)."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, images: torch.Tensor, matrices: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, b, n = self.cfg, images.shape[0], images.shape[-1]

        def uniform(*shape):  # CPU generator, moved to the images' device
            return torch.rand(*shape, generator=generator).to(images.device)

        angle = torch.where(uniform(b) < cfg.p_rotate, 360.0 * uniform(b), torch.zeros(b, device=images.device))
        shift = (2.0 * uniform(b, 2) - 1.0) * cfg.max_shift_fraction * n
        shift = torch.where((uniform(b) < cfg.p_shift)[:, None], shift, torch.zeros_like(shift))
        out = images
        if bool((angle != 0).any() or (shift != 0).any()):
            out = rotate_shift_images(images, angle, shift)
            matrices = inplane_rotation(angle).to(matrices) @ matrices
        blur = torch.where(uniform(b) < cfg.p_blur, cfg.max_blur_px * uniform(b), torch.zeros(b, device=images.device))
        if bool((blur > 0).any()):
            out = _blur(out, blur)
        noise = torch.where(uniform(b) < cfg.p_noise, cfg.max_noise_std * uniform(b),
                            torch.zeros(b, device=images.device))
        if bool((noise > 0).any()):
            eps = torch.randn(out.shape, generator=generator).to(out.device)
            out = out + noise[:, None, None, None] * eps
        erase = uniform(b) < cfg.p_erase
        if bool(erase.any()):
            out = out * (1.0 - self._erase_mask(b, n, generator, images.device) * erase[:, None, None, None])
        return out, matrices

    def _erase_mask(self, b: int, n: int, generator: torch.Generator, device) -> torch.Tensor:
        lo, hi = self.cfg.erase_area
        u = torch.rand(b, 4, generator=generator)
        area = (lo + (hi - lo) * u[:, 0]) * n * n
        aspect = torch.exp((u[:, 1] - 0.5) * math.log(3.0))
        h = (area * aspect).sqrt().clamp(1, n)
        w = (area / aspect).sqrt().clamp(1, n)
        y0 = u[:, 2] * (n - h)
        x0 = u[:, 3] * (n - w)
        ys = torch.arange(n, dtype=torch.float32)
        my = (ys[None] >= y0[:, None]) & (ys[None] < (y0 + h)[:, None])
        mx = (ys[None] >= x0[:, None]) & (ys[None] < (x0 + w)[:, None])
        return (my[:, :, None] & mx[:, None, :]).to(device=device, dtype=torch.float32)[:, None]
