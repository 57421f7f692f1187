"""Image features -> S2 signal: orthographic projection onto the upper hemisphere, then SH.

Fixed points ``v = (x, y, z)``, ``z > 0`` (HEALPix pixel centres, deterministic: the reference
implementation draws a random half of them even at inference), each take the feature at image
location ``(x, y) * coverage`` (``(x, y)`` in units of the feature map's half-width, centred on pixel
``(h // 2, w // 2)``, ``x`` along columns) by bilinear sampling after a fixed Gaussian blur. A
linear map (a 1x1 convolution, applied after sampling since both are linear) sets the number of
channels, then a ReLU (as Image2Sphere and cryoPARES); values are multiplied by learned per-point weights (initialised to a taper falling from
1 at ``taper_deg`` to 0 at the equator) and projected on real SH by the equal-area quadrature
``c = Y.T @ values / sqrt(n)``; a per-degree linear map mixes channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._convs import healpix_directions
from ._so3_fourier import spherical_harmonics


def _gaussian_kernel(sigma_px: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.sum()


class ImageToSphere(nn.Module):
    """``(B, c_feat, h, w)`` feature map -> ``(B, c_out, (lmax+1)**2)`` SH coefficients."""

    def __init__(self, c_feat: int, c_sphere: int, c_out: int, lmax: int, order: int,
                 coverage: float = 0.9, taper_deg: float = 75.0, blur_px: float = 1.0) -> None:
        super().__init__()
        self.lmax = lmax
        points = healpix_directions(order, 90.0)
        beta = torch.rad2deg(torch.acos(points[:, 2].clamp(-1, 1)))
        taper = ((90.0 - beta) / max(90.0 - taper_deg, 1e-9)).clamp(0.0, 1.0)
        keep = taper > 0
        points, taper = points[keep], taper[keep]
        n = points.shape[0]
        f32 = torch.get_default_dtype()
        self.linear = nn.Linear(c_feat, c_sphere)
        self.register_buffer("_xy", (coverage * points[:, :2]).to(f32), persistent=False)
        y = spherical_harmonics(lmax, points) / math.sqrt(n)
        self.register_buffer("_y", y.to(f32), persistent=False)
        self.point_weight = nn.Parameter(taper.to(f32))
        kernel = _gaussian_kernel(blur_px).to(f32) if blur_px > 0 else torch.ones(1)
        self.register_buffer("_blur", kernel, persistent=False)
        self.mix = nn.Parameter(torch.randn(lmax + 1, c_sphere, c_out) / math.sqrt(c_sphere))

    @property
    def n_points(self) -> int:
        return self._xy.shape[0]

    def sample(self, fmap: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, C, n_points)`` feature values at the hemisphere points."""
        if self._blur.numel() > 1:
            c, k = fmap.shape[1], self._blur.numel()
            kx = self._blur.to(fmap).view(1, 1, 1, k).expand(c, 1, 1, k)
            fmap = F.conv2d(fmap, kx, padding=(0, k // 2), groups=c)
            fmap = F.conv2d(fmap, kx.transpose(-1, -2), padding=(k // 2, 0), groups=c)
        h, w = fmap.shape[-2:]
        # align_corners=False: pixel i sits at (2 i + 1) / size - 1; the centre pixel is size // 2
        centre = fmap.new_tensor([(2 * (w // 2) + 1) / w - 1, (2 * (h // 2) + 1) / h - 1])
        grid = (centre + self._xy.to(fmap)).view(1, 1, -1, 2).expand(fmap.shape[0], 1, -1, 2)
        return F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)[:, :, 0]

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        values = torch.relu(self.linear(self.sample(fmap).transpose(1, 2))).transpose(1, 2)
        values = values * self.point_weight
        coeffs = values @ self._y  # (B, c_sphere, (lmax+1)**2)
        out, start = [], 0
        for l in range(self.lmax + 1):
            n = 2 * l + 1
            out.append(torch.einsum("bim,io->bom", coeffs[..., start:start + n], self.mix[l]))
            start += n
        return torch.cat(out, dim=-1)
