"""HEALPix SO(3) grid, its neighbours, nearest grid rotations and viewing-direction cones."""

from __future__ import annotations

import time

import healpy
import numpy as np
import pytest
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import (
    cone_neighbours,
    euler_to_matrix,
    geodesic_distance_deg,
    n_cones,
    nearest_grid_index,
    random_rotations,
    so3_grid,
    so3_grid_angles,
    so3_grid_neighbours,
    so3_grid_resolution_deg,
    so3_grid_size,
    viewing_direction_cone,
)


def brute_force_nearest(r: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Nearest grid rotation by exhaustive search (largest trace(r.T @ g) = smallest angle)."""
    return torch.cat([torch.einsum("nij,gij->ng", chunk, grid).argmax(dim=1) for chunk in r.split(1000)])


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_grid_size_layout_and_angles(order):
    nside, npsi = 2**order, 6 * 2**order
    n = 72 * 8**order
    assert so3_grid_size(order) == n
    grid, angles = so3_grid(order), so3_grid_angles(order, dtype=torch.float64)
    assert grid.shape == (n, 3, 3) and grid.dtype == torch.float32 and angles.shape == (n, 3)
    # Row i = pix * n_psi + k: direction of HEALPix pixel pix (NESTED), psi = k * 360 / n_psi.
    theta, phi = healpy.pix2ang(nside, np.arange(12 * nside**2), nest=True)
    pix, k = np.divmod(np.arange(n), npsi)
    np.testing.assert_allclose(angles[:, 1].numpy(), np.degrees(theta[pix]), atol=1e-9)
    rot = np.degrees(phi[pix])
    np.testing.assert_allclose(np.cos(np.radians(angles[:, 0].numpy() - rot)), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.cos(np.radians(angles[:, 2].numpy() - k * 360.0 / npsi)), 1.0, atol=1e-12)
    assert (angles[:, 0::2] > -180).all() and (angles[:, 0::2] <= 180).all()
    # Matrices are the pose matrices of those angles; the third row is the pixel centre.
    assert torch.allclose(so3_grid(order, torch.float64), euler_to_matrix(angles), atol=1e-12)
    vec = np.stack(healpy.pix2vec(nside, pix, nest=True), axis=-1)
    np.testing.assert_allclose(grid[:, 2, :].numpy(), vec, atol=1e-6)
    assert so3_grid_resolution_deg(order) == pytest.approx(60.0 / 2**order)


def test_grid_order4_size_and_speed():
    start = time.perf_counter()
    grid = so3_grid(4)
    assert grid.shape == (294_912, 3, 3)
    assert time.perf_counter() - start < 5.0
    assert so3_grid_resolution_deg(4) == pytest.approx(3.75)
    grid[0] = 0.0  # callers get their own copy: the cache is untouched
    assert torch.allclose(so3_grid(4)[0] @ so3_grid(4)[0].T, torch.eye(3), atol=1e-6)


def test_grid_is_distinct_and_covers_so3():
    grid = so3_grid(2, torch.float64)
    r = random_rotations(2000, torch.Generator().manual_seed(0))
    nearest = brute_force_nearest(r, grid)
    covering = geodesic_distance_deg(r, grid[nearest]).max()
    assert covering < 1.0 * so3_grid_resolution_deg(2)
    d = geodesic_distance_deg(grid[:300, None], grid[None])
    d[torch.arange(300), torch.arange(300)] = 180.0
    assert d.min() > 0.3 * so3_grid_resolution_deg(2)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_nearest_matches_brute_force(order):
    grid = so3_grid(order, torch.float64)
    r = random_rotations(3000, torch.Generator().manual_seed(order + 10))
    ours, ref = nearest_grid_index(r, order), brute_force_nearest(r, grid)
    assert ours.dtype == torch.int64 and ours.shape == (3000,)
    assert (ours == ref).double().mean() >= 0.999
    gap = geodesic_distance_deg(r, grid[ours]) - geodesic_distance_deg(r, grid[ref])
    assert gap.max() < 1e-6


def test_nearest_on_grid_points_batch_shapes_and_float32():
    order = 3
    idx = torch.arange(0, so3_grid_size(order), 37)
    assert torch.equal(nearest_grid_index(so3_grid(order)[idx], order), idx)
    r = random_rotations(24, torch.Generator().manual_seed(1), dtype=torch.float32).reshape(2, 3, 4, 3, 3)
    out = nearest_grid_index(r, order)
    assert out.shape == (2, 3, 4)
    assert torch.equal(out.flatten(), nearest_grid_index(r.reshape(-1, 3, 3).double(), order))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_neighbours_are_close_and_complete(order):
    grid = so3_grid(order, torch.float64)
    res = so3_grid_resolution_deg(order)
    sel = torch.randperm(grid.shape[0], generator=torch.Generator().manual_seed(order))[:300]
    nb = so3_grid_neighbours(order, sel)
    assert nb.shape == (300, 27) and nb.dtype == torch.int64
    assert torch.equal(nb[:, 0], sel)
    assert nb.min() >= 0 and nb.max() < grid.shape[0]
    d = geodesic_distance_deg(grid[sel][:, None], grid[nb])
    assert d.max() < 2.5 * res  # all within ~2 grid steps
    assert all(len(set(row.tolist())) >= 20 for row in nb)  # a real neighbourhood, few repeats
    # Every grid point within 1.2 steps (found by brute force here) is among the neighbours.
    cos_angle = ((torch.einsum("nij,gij->ng", grid[sel], grid) - 1.0) / 2.0).clamp(-1.0, 1.0)
    full = torch.rad2deg(torch.arccos(cos_angle))  # (300, N), brute force
    for row, dist in zip(nb, full):
        close = torch.nonzero(dist < 1.2 * res).flatten()
        assert set(close.tolist()) <= set(row.tolist())


def test_neighbours_shapes_and_order4():
    nb = so3_grid_neighbours(4, torch.tensor([[0, 5], [294_911, 100_000]]))
    assert nb.shape == (2, 2, 27)
    grid = so3_grid(4, torch.float64)
    d = geodesic_distance_deg(grid[nb[..., :1]], grid[nb])
    assert d.max() < 2.5 * so3_grid_resolution_deg(4)


@pytest.mark.parametrize("order", [0, 2, 3])
def test_cones_consistent_with_healpy(order):
    r = random_rotations(2000, torch.Generator().manual_seed(2))
    cones = viewing_direction_cone(r, order)
    assert cones.shape == (2000,) and cones.dtype == torch.int64
    assert cones.min() >= 0 and cones.max() < n_cones(order) == 12 * 4**order
    from relion_cryopares.geometry import matrix_to_euler

    angles = torch.deg2rad(matrix_to_euler(r)).numpy()
    expected = healpy.ang2pix(2**order, angles[:, 1], angles[:, 0], nest=True)  # theta = tilt, phi = rot
    assert np.array_equal(cones.numpy(), expected)
    # Grid points of the SO(3) grid of the same order fall in their own pixel.
    grid_order = min(order, 3)
    npsi = 6 * 2**grid_order
    g = so3_grid(grid_order, torch.float64)
    assert torch.equal(viewing_direction_cone(g, grid_order), torch.arange(g.shape[0]) // npsi)


def test_default_cone_order_and_neighbours():
    r = random_rotations(10, torch.Generator().manual_seed(3))
    assert viewing_direction_cone(r).max() < n_cones(2) == 192
    cones = torch.arange(n_cones(2)).reshape(12, 16)
    nb = cone_neighbours(2, cones)
    assert nb.shape == (12, 16, 9) and torch.equal(nb[..., 0], cones)
    ref = healpy.get_all_neighbours(4, np.arange(192), nest=True).T
    ref = np.where(ref < 0, np.arange(192)[:, None], ref)
    assert np.array_equal(nb.reshape(192, 9)[:, 1:].numpy(), ref)
    # Neighbouring cones are near: centre distance < 2.2 pixel sizes.
    v = np.stack(healpy.pix2vec(4, nb.reshape(192, 9).numpy(), nest=True), axis=-1)
    angle = np.degrees(np.arccos(np.clip((v[:, :1] * v).sum(-1), -1, 1)))
    assert angle.max() < 2.2 * np.degrees(healpy.nside2resol(4))


def test_bad_inputs():
    with pytest.raises(InputError):
        so3_grid(-1)
    with pytest.raises(InputError):
        so3_grid(2.0)
    with pytest.raises(InputError):
        so3_grid_neighbours(1, torch.tensor([576]))
    with pytest.raises(InputError):
        so3_grid_neighbours(1, torch.tensor([1.0]))
    with pytest.raises(InputError):
        cone_neighbours(2, torch.tensor([192]))
    with pytest.raises(InputError):
        viewing_direction_cone(torch.zeros(3, 3, 2))
