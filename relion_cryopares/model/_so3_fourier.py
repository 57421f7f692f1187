"""Spherical-harmonic and Wigner-D coefficients in e3nn's conventions, for our pose matrices.

Frames. Our vectors and pose matrices (:mod:`relion_cryopares.conventions`) live in the image frame
``(x, y, z)`` with ``z`` the viewing axis. e3nn rotates about its ``y`` axis for ``alpha``/``gamma``
(``wigner_D`` is diagonal-by-pairs there), so we hand e3nn the cyclically relabelled vector
``(y, z, x)``: ``v_e3nn = P @ v`` and ``R_e3nn = P @ A @ P.T``. Our in-plane rotations about ``z``
become e3nn rotations about ``y``, which is what makes the fast evaluations possible. ``P`` has
det +1, so every identity of e3nn (``Y(R x) = D(R) Y(x)``) holds unchanged in our frame.

Layouts. An S2 signal is ``(..., (lmax+1)**2)`` (e3nn order: degree blocks of ``2l+1``, index
``m + l``). An SO(3) signal is ``(..., dim)`` with ``dim = sum_l (2l+1)**2``, degree blocks of
``D``-shaped ``(2l+1, 2l+1)`` matrices flattened row-major: the value at rotation ``g`` is
``sum_l sqrt(2l+1) <psi_l, D_l(g)> / sqrt(dim)`` (e3nn's ``SO3Grid`` "component" normalisation:
unit-variance coefficients give unit-variance values).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from e3nn import o3

#: ``v_e3nn = E3NN_FROM_IMAGE @ v_image`` (cyclic relabelling x, y, z -> y, z, x; det +1).
E3NN_FROM_IMAGE = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)


def so3_dim(lmax: int) -> int:
    """Number of Wigner-D coefficients up to ``lmax``: ``sum_l (2l+1)**2``."""
    return (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3


def to_e3nn_matrices(matrices: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` pose matrices (our frame) -> the same rotations in e3nn's frame."""
    p = E3NN_FROM_IMAGE.to(matrices)
    return p @ matrices @ p.T


def to_e3nn_vectors(vectors: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` vectors (our frame) -> e3nn's frame."""
    return vectors @ E3NN_FROM_IMAGE.to(vectors).T


def spherical_harmonics(lmax: int, vectors: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` unit vectors in our frame -> ``(..., (lmax+1)**2)`` real SH, "component"
    normalised (mean square 1 over the sphere), satisfying ``Y(A v) = D(A) Y(v)``."""
    return o3.spherical_harmonics(list(range(lmax + 1)), to_e3nn_vectors(vectors), normalize=True,
                                  normalization="component")


def wigner_blocks(lmax: int, matrices: torch.Tensor) -> list[torch.Tensor]:
    """``(..., 3, 3)`` rotations (our frame) -> ``[D_l(A)]`` each ``(..., 2l+1, 2l+1)``, with
    ``D_l(A1 @ A2) = D_l(A1) @ D_l(A2)`` and ``Y_l(A v) = D_l(A) Y_l(v)``. Computed in float64."""
    rot = to_e3nn_matrices(matrices.to(torch.float64))
    alpha, beta, gamma = o3.matrix_to_angles(rot)
    return [wigner_d(l, alpha, beta, gamma) for l in range(lmax + 1)]


def wigner_d(l: int, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """e3nn's ``wigner_D(l, alpha, beta, gamma) = Dy(alpha) Dx(beta) Dy(gamma)`` in float64, fast.

    ``Dy`` is written in closed form (cos/sin of ``|m| angle`` on the ``(m, -m)`` pairs, signs read
    once from e3nn) and ``Dx(beta) = D(Q) Dy(beta) D(Q).T`` with ``Q`` the fixed rotation taking
    e3nn's ``y`` axis to its ``x`` axis: no matrix exponential per rotation (tested against e3nn).
    """
    alpha, beta, gamma = torch.broadcast_tensors(*(torch.as_tensor(t, dtype=torch.float64)
                                                   for t in (alpha, beta, gamma)))
    q = _y_to_x(l).to(alpha.device)
    return _dy(l, alpha) @ q @ _dy(l, beta) @ q.T @ _dy(l, gamma)


def _dy(l: int, theta: torch.Tensor) -> torch.Tensor:
    """``(...)`` angles -> ``(..., 2l+1, 2l+1)`` e3nn ``Dy``: ``cos(|m| t)`` on the diagonal,
    ``s_m sin(|m| t)`` on the anti-diagonal (``s_0 = 0``)."""
    am = torch.arange(-l, l + 1, device=theta.device).abs().to(torch.float64)
    angle = theta[..., None] * am
    signs = _y_signs(l).to(theta.device)
    return torch.diag_embed(torch.cos(angle)) + torch.diag_embed(torch.sin(angle) * signs).flip(-1)


@functools.lru_cache(maxsize=None)
def _y_signs(l: int) -> torch.Tensor:
    """``s_m`` with ``Dy(t)[m, -m] = s_m sin(|m| t)`` (``m != 0``), read from e3nn's harmonics."""
    t = 0.3
    d = _wigner_from_harmonics(l, torch.tensor([[math.cos(t), 0.0, math.sin(t)], [0.0, 1.0, 0.0],
                                                [-math.sin(t), 0.0, math.cos(t)]], dtype=torch.float64))
    m = torch.arange(-l, l + 1)
    i = torch.arange(2 * l + 1)
    sin = torch.sin(t * m.abs())
    signs = d[i, i.flip(0)] / torch.where(m != 0, sin, torch.ones_like(sin))
    return torch.where(m != 0, signs, torch.zeros_like(signs)).round()


@functools.lru_cache(maxsize=None)
def _y_to_x(l: int) -> torch.Tensor:
    """``D_l(Q)``, ``Q = Rz(-90 deg)`` (e3nn frame) taking ``y`` to ``x``: ``Dx(b) = D(Q) Dy(b) D(Q).T``."""
    q = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return _wigner_from_harmonics(l, q)


def _wigner_from_harmonics(l: int, rot: torch.Tensor) -> torch.Tensor:
    """``D_l(R)`` (e3nn frame, one rotation) from ``Y_l(R v) = D_l(R) Y_l(v)`` at fixed points,
    by least squares (float64, exact to rounding; no matrix exponential)."""
    v = torch.nn.functional.normalize(
        torch.randn(4 * l + 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(l)), dim=-1)
    y = o3.spherical_harmonics(l, v, normalize=True)
    y_rot = o3.spherical_harmonics(l, v @ rot.T, normalize=True)
    return torch.linalg.lstsq(y, y_rot).solution.T


@contextlib.contextmanager
def default_float64():
    """Temporarily make float64 the default dtype (e3nn builds some tables in the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def flat_wigner(lmax: int, matrices: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., dim)``: ``sqrt(2l+1) D_l(A)`` flattened (e3nn's ``flat_wigner``)."""
    blocks = wigner_blocks(lmax, matrices)
    return torch.cat([math.sqrt(2 * l + 1) * d.flatten(-2) for l, d in enumerate(blocks)], dim=-1)


def evaluate_so3(coefficients: torch.Tensor, matrices: torch.Tensor, lmax: int,
                 chunk: int = 4096) -> torch.Tensor:
    """Reference (dense) evaluation of SO(3) signals at rotations.

    Args:
        coefficients: ``(..., dim)`` flat Wigner coefficients.
        matrices: ``(N, 3, 3)`` pose matrices (our frame).
    Returns:
        ``(..., N)`` signal values, in chunks of ``chunk`` rotations (memory ``dim * chunk``).
    """
    dim = so3_dim(lmax)
    out = []
    for start in range(0, matrices.shape[0], chunk):
        w = flat_wigner(lmax, matrices[start:start + chunk]).to(coefficients)
        out.append(coefficients @ w.T)
    return torch.cat(out, dim=-1) / math.sqrt(dim)


def delta_coefficients(lmax: int, matrices: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., dim)``: coefficients of the band-limited delta peaked at ``A``,
    whose value at ``g`` is ``sum_l (2l+1) trace(D_l(A).T D_l(g)) / sqrt(dim)``."""
    return flat_wigner(lmax, matrices)


def padded_wigner(lmax: int, matrices: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> ``(..., lmax+1, 2L+1, 2L+1)`` padded ``D_l(A)`` (no sqrt(2l+1)), float64."""
    size = 2 * lmax + 1
    blocks = wigner_blocks(lmax, matrices)
    out = torch.zeros(*matrices.shape[:-2], lmax + 1, size, size, dtype=torch.float64,
                      device=matrices.device)
    for l, d in enumerate(blocks):
        out[..., l, lmax - l:lmax + l + 1, lmax - l:lmax + l + 1] = d
    return out


def pair_tables(lmax: int, in_plane: torch.Tensor) -> torch.Tensor:
    """Entries of ``D(Rz)`` for rotations about our ``z`` (e3nn's ``y``).

    Args:
        in_plane: ``(K, 3, 3)`` rotations about our ``z`` axis.
    Returns:
        ``(K, 2L+1, 2)``, see :func:`row_pairs`.
    """
    return row_pairs(padded_wigner(lmax, in_plane)[..., lmax, :, :])


def row_pairs(d: torch.Tensor) -> torch.Tensor:
    """Pairs ``[..., m + L, 0] = D[m, m]``, ``[..., m + L, 1] = D[m, -m]`` of ``(..., 2L+1, 2L+1)``
    Wigner matrices (degree ``L``) of rotations about e3nn's ``y`` axis, for which ``D[m, j]`` is
    non-zero only for ``j = +-m`` and the entries do not depend on the degree. The ``m = 0`` partner
    is set to zero so that the pair ``(0, 0)`` is counted once."""
    size = d.shape[-1]
    m = torch.arange(size, device=d.device)
    table = torch.stack([d[..., m, m], d[..., m, m.flip(0)]], dim=-1)
    table[..., size // 2, 1] = 0.0
    off = d.clone()
    off[..., m, m] = 0.0
    off[..., m, m.flip(0)] = 0.0
    if off.abs().max() > 1e-9:
        raise RuntimeError("expected rotations about e3nn's y axis (our z axis)")
    return table
