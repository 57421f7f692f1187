"""The local search grid: isotropic rotation vectors, image-frame composition, neighbours."""

from __future__ import annotations

import itertools

import pytest
import torch

from relion_cryopares.geometry import (geodesic_distance_deg, random_rotations, rotation_angle_deg,
                                       symmetry_matrices, symmetry_mates)
from relion_cryopares.refine import cube_offsets, local_rotation_grid, rotation_vector_to_matrix


@pytest.mark.parametrize("range_deg, step_deg, count", [(6, 2, 123), (4, 2, 33), (0, 2, 1), (6, 3, 33)])
def test_grid_is_the_lattice_ball(range_deg, step_deg, count):
    g = local_rotation_grid(range_deg, step_deg)
    assert len(g) == count
    assert torch.equal(g.vectors_deg[g.centre], torch.zeros(3, dtype=torch.float64))
    assert (torch.linalg.vector_norm(g.vectors_deg, dim=1) <= range_deg + 1e-9).all()
    assert len({tuple(o.tolist()) for o in g.offsets}) == count


def test_cube_grid():
    g = local_rotation_grid(4, 2, shape="cube")
    assert len(g) == 125 and g.vectors_deg.abs().max() == 4


def test_grid_is_isotropic():
    """The set is invariant under sign flips and permutations of the axes (no preferred direction,
    unlike Euler offsets), and every point's nearest neighbour is one step away."""
    g = local_rotation_grid(6, 2)
    points = {tuple(o.tolist()) for o in g.offsets}
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            image = {tuple(signs[i] * p[perm[i]] for i in range(3)) for p in points}
            assert image == points
    d = torch.cdist(g.vectors_deg, g.vectors_deg) + 1e9 * torch.eye(len(g), dtype=torch.float64)
    assert torch.allclose(d.min(dim=1).values, torch.full((len(g),), 2.0, dtype=torch.float64))


def test_rotation_vectors_rotate_by_their_length_about_themselves():
    v = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    q = rotation_vector_to_matrix(v)
    assert torch.allclose(rotation_angle_deg(q), torch.linalg.vector_norm(v, dim=1), atol=1e-9)
    assert torch.allclose((q @ v[..., None])[..., 0], v, atol=1e-12)
    assert torch.allclose(rotation_vector_to_matrix(torch.zeros(3)), torch.eye(3))


def test_candidates_are_at_the_grid_distance_from_the_pose():
    g = local_rotation_grid(6, 2)
    a = random_rotations(5, generator=torch.Generator().manual_seed(1))
    candidates = g.matrices[None] @ a[:, None]
    dist = geodesic_distance_deg(a[:, None], candidates)
    assert torch.allclose(dist, torch.linalg.vector_norm(g.vectors_deg, dim=1).expand(5, -1), atol=1e-6)


def test_search_commutes_with_symmetry():
    """Image-frame perturbations: the candidates around a mate A L are the mates of the candidates
    around A, so the search gives the same result whichever mate it starts from."""
    g = local_rotation_grid(6, 2)
    sym = symmetry_matrices("D7")
    a = random_rotations(3, generator=torch.Generator().manual_seed(2))
    mate = symmetry_mates(a, sym)[:, 5]  # A @ L5
    around_a = g.matrices[None] @ a[:, None]
    around_mate = g.matrices[None] @ mate[:, None]
    assert torch.allclose(around_a @ sym[5], around_mate, atol=1e-12)


def test_neighbour_table():
    g = local_rotation_grid(6, 2)
    table = g.neighbour_table()
    cube = cube_offsets()
    assert torch.equal(cube[13], torch.zeros(3, dtype=cube.dtype))
    assert torch.equal(table[:, 13], torch.arange(len(g)))
    for i in (0, 5, 40):
        for j in range(27):
            if table[i, j] >= 0:
                assert torch.equal(g.offsets[table[i, j]], g.offsets[i] + cube[j])
    assert (table[g.centre] >= 0).all()  # the centre's cube lies inside the ball
