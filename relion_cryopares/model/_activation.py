"""Pointwise nonlinearity of SO(3) signals: e3nn's ``SO3Activation``, evaluated separably.

``e3nn.nn.SO3Activation(lmax, lmax, act, resolution)`` samples the signal on the product grid
``(alpha, beta, gamma)`` (``2r`` betas, ``4r`` alphas and gammas) with a dense ``(dim x 32 r**3)``
Wigner table, applies ``act`` (normalised to unit second moment) and projects back with
Kostelec-Rockmore quadrature weights. The dense table dominates the reference implementation's CPU
time (and, being a persistent buffer, its checkpoints). Here the same two maps are computed
separably, using ``D(alpha, beta, gamma) = Dy(alpha) Dx(beta) Dy(gamma)`` where ``Dy`` only pairs
``m`` with ``+-m``: a sum over degrees at each beta, then two small matrix products over gamma and
alpha. The result equals e3nn's to rounding (tested); tables are non-persistent buffers.
"""

from __future__ import annotations

import math

import torch
from e3nn.math import normalize2mom
from torch import nn

from ._so3_fourier import row_pairs, so3_dim, wigner_d


def quadrature_weights(res_beta: int) -> torch.Tensor:
    """Kostelec-Rockmore weights of the ``res_beta`` betas ``(i + 1/2) pi / res_beta`` (float64),
    as e3nn's ``SO3Grid`` (before its ``nb**2 / na**2`` factor)."""
    b = res_beta // 2
    j = torch.arange(2 * b, dtype=torch.float64)
    k = torch.arange(b, dtype=torch.float64)
    inner = (torch.sin((2 * j[:, None] + 1) * (2 * k[None, :] + 1) * math.pi / (4 * b))
             / (2 * k[None, :] + 1)).sum(-1)
    w = (2.0 / b) * torch.sin(math.pi * (2 * j + 1) / (4 * b)) * inner
    return w / (2.0 * (2 * b) ** 2)


def trig_basis(angles: torch.Tensor, lmax: int) -> torch.Tensor:
    """``(K,)`` angles -> ``(K, 2L+1)``: ``[1, cos a, ..., cos La, sin a, ..., sin La]``."""
    k = torch.arange(1, lmax + 1, dtype=angles.dtype)
    return torch.cat([torch.ones_like(angles)[:, None], torch.cos(angles[:, None] * k),
                      torch.sin(angles[:, None] * k)], dim=1)


def pair_to_trig(pairs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Express ``(K, 2L+1, 2)`` pair tables of y-rotations (:func:`row_pairs`) in the trig basis.

    Returns ``(2L+1 [trig], 2L+1 [m], 2)`` coefficients ``C`` with ``pairs = basis @ C``; each
    ``(m, s)`` column has at most one non-zero (checked)."""
    k, size, _ = pairs.shape
    coef = torch.linalg.lstsq(basis, pairs.reshape(k, 2 * size)).solution
    coef = torch.where(coef.abs() > 1e-4, coef, torch.zeros_like(coef))
    if (basis @ coef - pairs.reshape(k, 2 * size)).abs().max() > 1e-9 or \
            ((coef != 0).sum(0) > 1).any():
        raise RuntimeError("unexpected structure of Wigner-D matrices about the y axis")
    return coef.reshape(size, size, 2)


def combos(coef: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each trig function ``f``, its (at most 2) ``(m, s)`` partners: index, sign, weight."""
    size = coef.shape[0]
    m_idx = torch.zeros(size, 2, dtype=torch.long)
    s_idx = torch.zeros(size, 2, dtype=torch.long)
    weight = torch.zeros(size, 2, dtype=coef.dtype)
    for f in range(size):
        nz = coef[f].nonzero()
        if len(nz) > 2:
            raise RuntimeError("unexpected structure of Wigner-D matrices about the y axis")
        for c, (m, s) in enumerate(nz.tolist()):
            m_idx[f, c], s_idx[f, c], weight[f, c] = m, s, coef[f, m, s]
    return m_idx, s_idx, weight


def _flat_index(lmax: int, m: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Flat SO(3) coefficient index of padded ``(l, m, n)`` (``m, n`` offset by ``lmax``) for every
    ``l``: ``(..., lmax+1)``; ``dim`` (a zero row) where ``|m - L|`` or ``|n - L| > l``."""
    start = torch.tensor([so3_dim(l - 1) if l else 0 for l in range(lmax + 1)])
    l = torch.arange(lmax + 1)
    mm, nn_ = (m - lmax)[..., None], (n - lmax)[..., None]
    inside = (mm.abs() <= l) & (nn_.abs() <= l)
    idx = start + (mm + l) * (2 * l + 1) + (nn_ + l)
    return torch.where(inside, idx, torch.full_like(idx, so3_dim(lmax)))


class SO3GridTransform(nn.Module):
    """Separable maps between flat Wigner coefficients ``(..., dim)`` and e3nn's SO(3) product grid.

    With ``D = Dy(alpha) Dx(beta) Dy(gamma)`` and ``Dy`` pairing ``m`` with ``+-m`` (a rotation by
    ``|m| alpha`` of each pair), a signal is a trig polynomial in ``alpha`` and ``gamma`` whose
    ``(2L+1)**2`` coefficients at each beta are sums over degrees of 4 coefficients times Wigner
    small-d entries: one batched product per trig pair ``(f, g)`` with ``K = 4 (lmax+1)``, then two
    matrix products with trig tables. Internally grid values are ``(alpha, gamma, beta, S)``;
    :meth:`to_grid` returns e3nn's ``SO3Grid`` layout ``(..., alpha, beta, gamma)``.
    """

    def __init__(self, lmax: int, resolution: int, aspect_ratio: int = 2) -> None:
        super().__init__()
        self.lmax = lmax
        nb, na = 2 * resolution, round(2 * aspect_ratio * resolution)
        self.res_beta, self.res_alpha = nb, na
        size, dim = 2 * lmax + 1, so3_dim(lmax)
        betas = (torch.arange(nb, dtype=torch.float64) + 0.5) / nb * math.pi
        alphas = torch.arange(na, dtype=torch.float64) / na * 2 * math.pi
        zero_a = torch.zeros_like(alphas)
        dy = wigner_d(lmax, alphas, zero_a, zero_a)  # (na, size, size), about e3nn's y
        basis = trig_basis(alphas, lmax)  # alphas and gammas share the grid
        # Dy(alpha)[m, s m] = sum_f basis[a, f] ca[f, m, s]; Dy(gamma)[t n, n] likewise with cc
        ma, sa, wa = combos(pair_to_trig(row_pairs(dy), basis))
        mc, tc, wc = combos(pair_to_trig(row_pairs(dy.transpose(-1, -2)), basis))
        d = torch.zeros(lmax + 1, nb, size, size, dtype=torch.float64)  # d_l(beta)[j, k], padded
        zero_b = torch.zeros_like(betas)
        for l in range(lmax + 1):
            d[l, :, lmax - l:lmax + l + 1, lmax - l:lmax + l + 1] = wigner_d(l, zero_b, betas, zero_b)
        # trig pair (f, g), combo (c1, c2): coefficient x[l, m, n] meets d_l[s m, t n]
        m = ma[:, None, :, None].expand(size, size, 2, 2)
        n = mc[None, :, None, :].expand(size, size, 2, 2)
        j = torch.where(sa[:, None, :, None] == 0, m, size - 1 - m)
        k = torch.where(tc[None, :, None, :] == 0, n, size - 1 - n)
        w = wa[:, None, :, None] * wc[None, :, None, :]  # (f, g, c1, c2)
        e = (d[:, :, j, k] * w).permute(2, 3, 4, 5, 0, 1)  # (f, g, c1, c2, l, b)
        e = e * torch.tensor([math.sqrt(2 * l + 1) for l in range(lmax + 1)],
                             dtype=torch.float64)[:, None]
        e = e.reshape(size * size, 4 * (lmax + 1), nb)
        qw = quadrature_weights(nb) * nb ** 2 / na ** 2
        f32 = torch.get_default_dtype()
        self.register_buffer("_index", _flat_index(lmax, m, n).reshape(-1), persistent=False)
        self.register_buffer("_e_to", (e / math.sqrt(dim)).transpose(1, 2).contiguous().to(f32),
                             persistent=False)  # (fg, b, cl)
        self.register_buffer("_e_from", (e * math.sqrt(dim) * qw).to(f32), persistent=False)
        self.register_buffer("_basis", basis.to(f32), persistent=False)

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """``(S, dim)`` -> ``(alpha, gamma, beta, S)``."""
        size, s = 2 * self.lmax + 1, x.shape[0]
        xt = torch.cat([x.T, x.new_zeros(1, s)])  # (dim + 1, S), last row zero
        g = xt.index_select(0, self._index).view(size * size, -1, s)  # (fg, cl, S)
        r = torch.bmm(self._e_to, g)  # (fg, b, S)
        r = (self._basis @ r.view(size, -1)).view(self.res_alpha, size, -1)  # (a, g, b S)
        f = torch.matmul(self._basis, r)  # (a, c, b S)
        return f.view(self.res_alpha, self.res_alpha, self.res_beta, s)

    def _from_grid(self, f: torch.Tensor) -> torch.Tensor:
        """``(alpha, gamma, beta, S)`` -> ``(S, dim)``."""
        size, s, na = 2 * self.lmax + 1, f.shape[-1], self.res_alpha
        r = (self._basis.T @ f.reshape(na, -1)).view(size, na, -1)  # (f, c, b S)
        r = torch.matmul(self._basis.T, r).view(size * size, self.res_beta, s)  # (fg, b, S)
        g = torch.bmm(self._e_from, r)  # (fg, cl, S)
        xt = f.new_zeros(so3_dim(self.lmax) + 1, s).index_add_(0, self._index, g.view(-1, s))
        return xt[:-1].T

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> ``(..., alpha, beta, gamma)`` (e3nn's ``SO3Grid.to_grid``)."""
        f = self._to_grid(x.reshape(-1, x.shape[-1]))
        return f.permute(3, 0, 2, 1).reshape(*x.shape[:-1], self.res_alpha, self.res_beta,
                                             self.res_alpha)

    def from_grid(self, f: torch.Tensor) -> torch.Tensor:
        """``(..., alpha, beta, gamma)`` -> ``(..., dim)`` (e3nn's ``SO3Grid.from_grid``)."""
        lead = f.shape[:-3]
        g = f.reshape(-1, *f.shape[-3:]).permute(1, 3, 2, 0).contiguous()
        return self._from_grid(g).reshape(*lead, -1)

    def apply(self, x: torch.Tensor, fn) -> torch.Tensor:
        """``from_grid(fn(to_grid(x)))`` for ``(..., dim)``, without layout changes in between."""
        flat = x.reshape(-1, x.shape[-1])
        return self._from_grid(fn(self._to_grid(flat))).reshape(x.shape)


class SO3Activation(nn.Module):
    """``act`` applied pointwise to SO(3) signals ``(..., dim) -> (..., dim)`` (same ``lmax``).

    Same result as ``e3nn.nn.SO3Activation(lmax, lmax, act, resolution)`` (``act`` rescaled to
    unit second moment under a standard normal input, e3nn's ``normalize2mom``; the constant is
    applied to the coefficients rather than the grid values).
    """

    def __init__(self, lmax: int, resolution: int, act=torch.relu) -> None:
        super().__init__()
        self.grid = SO3GridTransform(lmax, resolution)
        self.act = act
        self.scale = float(normalize2mom(act).cst)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid.apply(x, self.act) * self.scale
