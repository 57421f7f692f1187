"""Conventions of the Fourier layer: our pose matrices <-> e3nn's SH and Wigner-D."""

from __future__ import annotations

import torch

from relion_cryopares.geometry import axis_angle_to_matrix, random_rotations
from relion_cryopares.model._activation import quadrature_weights
from relion_cryopares.model._so3_fourier import (
    padded_wigner,
    pair_tables,
    so3_dim,
    spherical_harmonics,
    wigner_blocks,
)


def _rotate_sh(x: torch.Tensor, blocks: list[torch.Tensor]) -> torch.Tensor:
    out, start = [], 0
    for d in blocks:
        n = d.shape[-1]
        out.append(x[..., start:start + n] @ d.T)
        start += n
    return torch.cat(out, -1)


def test_sh_rotate_with_wigner_of_pose_matrices():
    lmax = 6
    a = random_rotations(1)[0]
    v = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=-1)
    y = spherical_harmonics(lmax, v)
    assert torch.allclose(spherical_harmonics(lmax, v @ a.T), _rotate_sh(y, wigner_blocks(lmax, a)),
                          atol=1e-6)
    # component normalisation: mean square 1 over the sphere (dense random sample)
    u = torch.nn.functional.normalize(torch.randn(40000, 3, dtype=torch.float64), dim=-1)
    ms = spherical_harmonics(lmax, u).square().mean(0)
    assert torch.allclose(ms, torch.ones_like(ms), atol=0.08)


def test_wigner_is_a_homomorphism():
    a, b = random_rotations(2)
    for da, db, dab in zip(wigner_blocks(5, a), wigner_blocks(5, b), wigner_blocks(5, a @ b)):
        assert torch.allclose(da @ db, dab, atol=1e-6)
        assert torch.allclose(da @ da.T, torch.eye(da.shape[0], dtype=da.dtype), atol=1e-6)


def test_in_plane_rotations_pair_m_with_minus_m_at_every_degree():
    lmax = 5
    rz = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                              torch.tensor([17.0, -123.0, 250.0], dtype=torch.float64))
    table = pair_tables(lmax, rz)  # built from degree lmax
    d = padded_wigner(lmax, rz)
    m = torch.arange(2 * lmax + 1)
    for l in range(lmax + 1):
        inside = (m - lmax).abs() <= l
        assert torch.allclose(d[:, l, m, m][:, inside], table[:, inside, 0], atol=1e-6)
        pair = d[:, l, m, m.flip(0)][:, inside]
        pair[:, l] = 0.0  # m = 0 is counted once
        assert torch.allclose(pair, table[:, inside, 1], atol=1e-6)


def test_dimensions():
    assert so3_dim(12) == 2925 and so3_dim(0) == 1


def test_quadrature_weights_match_e3nn():
    from e3nn.o3._s2grid import _quadrature_weights  # private, compared only here

    for res_beta in (4, 8, 20):
        ours = quadrature_weights(res_beta)
        assert torch.allclose(ours, _quadrature_weights(res_beta // 2, dtype=torch.float64), atol=1e-9)


def test_fast_wigner_matches_e3nn():
    from e3nn import o3

    from relion_cryopares.model._so3_fourier import default_float64, wigner_d

    a, b, c = (torch.rand(20, dtype=torch.float64) * 7 - 0.5 for _ in range(3))
    for l in (0, 1, 2, 5, 9):
        with default_float64():
            ref = o3.wigner_D(l, a, b, c)
        assert torch.allclose(wigner_d(l, a, b, c), ref, atol=1e-10)
