"""SO(3) signals evaluated on the HEALPix SO(3) grid, without a dense Wigner table.

A dense table (``dim x N``: 2925 x 294,912 float32 = 3.45 GB at lmax 12, order 4) is what the
reference implementation stores in every checkpoint. The grid has product structure: every grid
pose is ``A = Rz(-psi_k) @ B(pix)`` with the same ``n_psi`` in-plane angles on every pixel
(:mod:`relion_cryopares.geometry`), and ``D(Rz)`` only pairs ``m`` with ``+-m``. So

    F(A) = sum_l w_l <psi_l, D_l(Rz) D_l(B)> = sum_{m, s} D(Rz)[m, s m] T[m, s, pix],
    T[m, s, pix] = sum_{l, n} w_l psi_l[m, n] D_l(B(pix))[s m, n]

costs ``2 * dim * n_pix`` per signal for ``T`` (one matrix product per ``m``) and
``2 (2L+1) * N`` for the in-plane step, about 25x less than the dense product, with tables of
``2 * dim * n_pix`` floats (72 MB at lmax 12, order 4), rebuilt (or read from the cache), never
saved with the model. The layout of the output is the grid's: index ``pix * n_psi + k``.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import nn

from relion_cryopares.geometry import so3_grid

from ._cache import cached_tensors
from ._so3_fourier import pair_tables, so3_dim, wigner_blocks

log = logging.getLogger(__name__)


def _grid_structure(order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_pix, 3, 3)`` base poses and ``(n_psi, 3, 3)`` in-plane rotations of the grid, checked."""
    grid = so3_grid(order, dtype=torch.float64)
    n_psi = 6 * 2 ** order
    g = grid.view(-1, n_psi, 3, 3)
    base = g[:, 0]
    in_plane = g[0] @ base[0].T
    if (in_plane[None] @ base[:, None] - g).abs().max() > 1e-9:
        raise RuntimeError("the SO(3) grid is not a product of in-plane angles and pixels")
    return base, in_plane


def _build_tables(lmax: int, order: int) -> dict[str, torch.Tensor]:
    base, in_plane = _grid_structure(order)
    n_pix, size, dim = base.shape[0], 2 * lmax + 1, so3_dim(lmax)
    blocks = wigner_blocks(lmax, base)  # [(n_pix, 2l+1, 2l+1)]
    starts = [so3_dim(l - 1) if l else 0 for l in range(lmax + 1)]
    rows, index = [], []
    for m in range(-lmax, lmax + 1):
        for l in range(abs(m), lmax + 1):
            d = blocks[l] * (math.sqrt(2 * l + 1) / math.sqrt(dim))
            pair = torch.stack([d[:, l + m, :], d[:, l - m, :]], dim=0)  # (s, pix, n)
            rows.append(pair.permute(2, 0, 1).reshape(2 * l + 1, 2 * n_pix))  # (n, s pix)
            index.append(starts[l] + (m + l) * (2 * l + 1) + torch.arange(2 * l + 1))
    table = torch.cat(rows).to(torch.float32)  # (dim, 2 n_pix), rows grouped by m
    pairs = pair_tables(lmax, in_plane)  # (n_psi, size, 2)
    return {"table": table, "index": torch.cat(index), "pairs": pairs.reshape(-1, 2 * size).T.float()}


class GridLogits(nn.Module):
    """``(..., dim)`` flat Wigner coefficients -> ``(..., N)`` values on the SO(3) grid of ``order``.

    Values follow the ``"component"`` normalisation of :mod:`._so3_fourier` and equal
    :func:`~._so3_fourier.evaluate_so3` at :func:`relion_cryopares.geometry.so3_grid` (tested).
    """

    def __init__(self, lmax: int, order: int) -> None:
        super().__init__()
        self.lmax, self.order = lmax, order
        self.n_psi = 6 * 2 ** order
        self.n_pix = 12 * 4 ** order
        start = time.perf_counter()
        tables = cached_tensors("grid_logits", {"lmax": lmax, "order": order},
                                lambda: _build_tables(lmax, order))
        log.debug("grid-logit tables for lmax %d, order %d in %.2f s", lmax, order,
                  time.perf_counter() - start)
        self.register_buffer("_table", tables["table"], persistent=False)
        self.register_buffer("_index", tables["index"], persistent=False)
        self.register_buffer("_pairs", tables["pairs"], persistent=False)
        self._splits = [sum(2 * l + 1 for l in range(abs(m), lmax + 1))
                        for m in range(-lmax, lmax + 1)]

    @property
    def n_rotations(self) -> int:
        return self.n_pix * self.n_psi

    def forward(self, coefficients: torch.Tensor) -> torch.Tensor:
        lead = coefficients.shape[:-1]
        x = coefficients.reshape(-1, coefficients.shape[-1]).index_select(1, self._index)
        parts = []
        for xm, tm in zip(x.split(self._splits, dim=1), self._table.split(self._splits, dim=0)):
            parts.append(xm @ tm)  # (S, 2 n_pix)
        t = torch.stack(parts, dim=1).view(x.shape[0], -1, self.n_pix)  # (S, (m s), pix)
        out = t.transpose(1, 2) @ self._pairs  # (S, pix, n_psi)
        return out.reshape(*lead, self.n_rotations)
