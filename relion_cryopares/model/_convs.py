"""Group convolutions of Image2Sphere: S2 -> SO(3) and SO(3) -> SO(3), in Fourier space.

Both act on the right of the Wigner coefficients and so commute with rotating the input on the
left (``f -> f(R^-1 .)``, coefficients ``x_l -> D_l(R) x_l``): they are equivariant (tested).

S2 convolution. A filter ``h`` on the sphere, given by its values at fixed points (HEALPix pixel
centres within ``max_beta`` of the north pole ``+z``), has SH coefficients ``h_l``; the output
``(f * h)(g) = integral f(g x) h(x) dx`` has Wigner coefficients ``psi_l[m, n] = f_l[m] h_l[n]``
(summed over input channels). SO(3) convolution. A filter ``k`` given at rotations ``exp(v)`` near
the identity has ``K_l = sum_j w_j D_l(k_j)``; ``(F * k)(g) = sum_j w_j F(g k_j)`` has coefficients
``psi_l K_l.T``.
"""

from __future__ import annotations

import math

import healpy
import numpy as np
import torch
from torch import nn

from relion_cryopares.geometry import axis_angle_to_matrix

from ._so3_fourier import spherical_harmonics, wigner_blocks


def healpix_directions(order: int, max_beta_deg: float = 180.0) -> torch.Tensor:
    """``(n, 3)`` float64 unit vectors: HEALPix pixel centres (NESTED, ``nside = 2**order``) whose
    angle from ``+z`` is at most ``max_beta_deg`` (deterministic order)."""
    nside = 2 ** order
    xyz = np.stack(healpy.pix2vec(nside, np.arange(12 * nside * nside), nest=True), axis=-1)
    xyz = torch.from_numpy(xyz)
    keep = xyz[:, 2] >= math.cos(math.radians(max_beta_deg)) - 1e-12
    return xyz[keep]


def near_identity_rotations(max_angle_deg: float, steps: int) -> torch.Tensor:
    """``(n, 3, 3)`` float64 rotations ``exp(v)``, ``v`` on a centred cubic grid of ``steps**3``
    axis-angle vectors spanning ``[-max, max]**3``, kept where ``|v| <= max`` (identity included
    for odd ``steps``)."""
    axis = torch.linspace(-max_angle_deg, max_angle_deg, steps, dtype=torch.float64) if steps > 1 \
        else torch.zeros(1, dtype=torch.float64)
    v = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    angle = torch.linalg.vector_norm(v, dim=-1)
    v = v[angle <= max_angle_deg + 1e-9]
    return axis_angle_to_matrix(v, torch.linalg.vector_norm(v, dim=-1))


def _blocks(x: torch.Tensor, lmax: int, square: bool) -> list[torch.Tensor]:
    sizes = [(2 * l + 1) ** (2 if square else 1) for l in range(lmax + 1)]
    return list(x.split(sizes, dim=-1))


class S2Conv(nn.Module):
    """``(B, c_in, (lmax+1)**2)`` S2 signals -> ``(B, c_out, dim)`` SO(3) signals."""

    def __init__(self, c_in: int, c_out: int, lmax: int, filter_order: int,
                 filter_max_beta_deg: float = 180.0) -> None:
        super().__init__()
        self.lmax, self.c_in, self.c_out = lmax, c_in, c_out
        points = healpix_directions(filter_order, filter_max_beta_deg)
        y = spherical_harmonics(lmax, points) / math.sqrt(points.shape[0])
        self.register_buffer("_y", y.to(torch.get_default_dtype()), persistent=False)
        self.weight = nn.Parameter(torch.randn(c_in, c_out, points.shape[0]))

    def filter_coefficients(self) -> torch.Tensor:
        """``(c_in, c_out, (lmax+1)**2)`` SH coefficients of the filters."""
        return self.weight @ self._y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.filter_coefficients() / math.sqrt(self.c_in)
        out = []
        for xl, hl in zip(_blocks(x, self.lmax, False), _blocks(h, self.lmax, False)):
            out.append(torch.einsum("bim,ion->bomn", xl, hl).flatten(-2))
        return torch.cat(out, dim=-1)


class SO3Conv(nn.Module):
    """``(B, c_in, dim)`` -> ``(B, c_out, dim)`` SO(3) signals, filters local around the identity."""

    def __init__(self, c_in: int, c_out: int, lmax: int, max_angle_deg: float, steps: int) -> None:
        super().__init__()
        self.lmax, self.c_in, self.c_out = lmax, c_in, c_out
        kernel = near_identity_rotations(max_angle_deg, steps)
        d = torch.cat([b.flatten(-2) for b in wigner_blocks(lmax, kernel)], dim=-1)
        d = d / math.sqrt(kernel.shape[0])
        self.register_buffer("_d", d.to(torch.get_default_dtype()), persistent=False)
        self.weight = nn.Parameter(torch.randn(c_in, c_out, kernel.shape[0]))

    def filter_coefficients(self) -> torch.Tensor:
        """``(c_in, c_out, dim)``: flat ``K_l`` of each filter."""
        return self.weight @ self._d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.filter_coefficients() / math.sqrt(self.c_in)
        out = []
        for l, (xl, kl) in enumerate(zip(_blocks(x, self.lmax, True), _blocks(k, self.lmax, True))):
            n = 2 * l + 1
            xl = xl.unflatten(-1, (n, n))
            kl = kl.unflatten(-1, (n, n))
            out.append(torch.einsum("bimn,iopn->bomp", xl, kl).flatten(-2))
        return torch.cat(out, dim=-1)

