"""Rotation angles, geodesic distances, axis-angle rotations and uniform random rotations."""

from __future__ import annotations

import math

import pytest
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import (
    axis_angle_to_matrix,
    euler_to_matrix,
    geodesic_distance_deg,
    random_rotations,
    rotation_angle_deg,
    symmetry_matrices,
)


def test_axis_angle_known_rotations():
    rz90 = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64), torch.tensor(90.0))
    # Active, right-handed: x -> y.
    assert torch.allclose(rz90 @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                          torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-15)
    # RELION's pose (rot, 0, 0) is the active rotation by -rot about z.
    for rot in (17.0, -123.0):
        pose = euler_to_matrix(torch.tensor([rot, 0.0, 0.0], dtype=torch.float64))
        assert torch.allclose(pose, axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
                                                         torch.tensor(-rot)), atol=1e-14)
    eye = axis_angle_to_matrix(torch.zeros(3), torch.tensor(30.0))
    assert torch.allclose(eye, torch.eye(3))


def test_axis_angle_broadcast_and_angle():
    axes = torch.randn(5, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    angles = torch.linspace(0.0, 180.0, 7, dtype=torch.float64)
    m = axis_angle_to_matrix(axes, angles)  # (5, 7, 3, 3)
    assert m.shape == (5, 7, 3, 3) and m.dtype == torch.float64
    assert torch.allclose(rotation_angle_deg(m), angles.expand(5, 7), atol=1e-9)
    assert torch.allclose(torch.linalg.det(m), torch.ones((), dtype=torch.float64))


def test_rotation_angle_is_accurate_near_0_and_180():
    axis = torch.tensor([0.3, -0.2, 0.9], dtype=torch.float64)
    for angle in (1e-6, 1e-3, 0.5, 90.0, 179.5, 180 - 1e-6, 180.0):
        got = rotation_angle_deg(axis_angle_to_matrix(axis, torch.tensor(angle, dtype=torch.float64)))
        assert abs(float(got) - angle) < 1e-9 * max(1.0, angle)
    small = rotation_angle_deg(axis_angle_to_matrix(axis.float(), torch.tensor(1e-3)))
    assert abs(float(small) - 1e-3) < 1e-6  # float32 stays accurate for tiny angles (acos would not)


def test_geodesic_distance_known_angles_and_broadcast():
    a = random_rotations(10, torch.Generator().manual_seed(1))
    axis = torch.randn(10, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    angles = torch.linspace(0.0, 180.0, 10, dtype=torch.float64)
    b = a @ axis_angle_to_matrix(axis, angles)
    assert torch.allclose(geodesic_distance_deg(a, b), angles, atol=1e-8)
    assert torch.allclose(geodesic_distance_deg(b, a), angles, atol=1e-8)  # symmetric
    d = geodesic_distance_deg(a[:, None], a[None])  # (10, 10)
    assert d.shape == (10, 10) and d.diagonal().abs().max() < 1e-6
    # Left and right invariance: d(Q a, Q b) = d(a Q, b Q) = d(a, b).
    q = random_rotations(1, torch.Generator().manual_seed(3))[0]
    assert torch.allclose(geodesic_distance_deg(q @ a, q @ b), angles, atol=1e-8)
    assert torch.allclose(geodesic_distance_deg(a @ q, b @ q), angles, atol=1e-8)


def test_geodesic_triangle_inequality():
    gen = torch.Generator().manual_seed(4)
    a, b, c = (random_rotations(500, gen) for _ in range(3))
    assert (geodesic_distance_deg(a, c) <= geodesic_distance_deg(a, b) + geodesic_distance_deg(b, c) + 1e-9).all()


def test_geodesic_with_symmetry():
    c4 = symmetry_matrices("C4")
    a = random_rotations(20, torch.Generator().manual_seed(5))
    # A 100-degree turn of the map about its 4-fold axis is a 10-degree error modulo C4.
    b = a @ axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor(100.0))
    assert torch.allclose(geodesic_distance_deg(a, b), torch.full((20,), 100.0, dtype=torch.float64), atol=1e-8)
    assert torch.allclose(geodesic_distance_deg(a, b, c4), torch.full((20,), 10.0, dtype=torch.float64), atol=1e-8)
    # With symmetry never larger than without; the largest distance modulo I is well below 180.
    i = symmetry_matrices("I")
    x, y = random_rotations(2000, torch.Generator().manual_seed(6)).chunk(2)
    d_sym = geodesic_distance_deg(x, y, i)
    assert (d_sym <= geodesic_distance_deg(x, y) + 1e-9).all()
    assert d_sym.max() < 45.0  # covering radius of the icosahedral group is ~37.4 deg
    assert geodesic_distance_deg(x.float(), y.float(), i.float()).dtype == torch.float32


def test_random_rotations_are_uniform():
    r = random_rotations(20000, torch.Generator().manual_seed(7))
    assert r.shape == (20000, 3, 3) and r.dtype == torch.float64
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones((), dtype=torch.float64))
    # Haar measure: E[R] = 0 and the angle has density (1 - cos t) / pi, i.e. E[cos t] = -1/2.
    assert r.mean(dim=0).abs().max() < 0.03
    t = torch.deg2rad(rotation_angle_deg(r))
    assert abs(float(torch.cos(t).mean()) + 0.5) < 0.02
    # Viewing directions (third rows) are uniform on the sphere: each octant ~1/8.
    octant = ((r[:, 2, :] > 0).long() * torch.tensor([1, 2, 4])).sum(-1)
    counts = torch.bincount(octant, minlength=8).double() / r.shape[0]
    assert (counts - 0.125).abs().max() < 0.01
    again = random_rotations(20000, torch.Generator().manual_seed(7))
    assert torch.equal(again, r)
    assert random_rotations(3, dtype=torch.float32).dtype == torch.float32
    assert random_rotations(0).shape == (0, 3, 3)
    assert math.isclose(float(rotation_angle_deg(torch.eye(3))), 0.0, abs_tol=1e-12)


def test_bad_inputs():
    with pytest.raises(InputError):
        geodesic_distance_deg(torch.eye(3), torch.zeros(3))
    with pytest.raises(InputError):
        axis_angle_to_matrix(torch.zeros(2), torch.tensor(1.0))
    with pytest.raises(InputError):
        random_rotations(-1)
