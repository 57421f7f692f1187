"""Euler angles <-> pose matrices against independent references (RELION's formula, eulerangles)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from eulerangles import euler2matrix

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import (
    euler_to_matrix,
    matrix_to_euler,
    random_rotations,
    to_fourier_slice,
)


def relion_euler_angles2matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION 3.1 ``Euler_angles2matrix`` written out term by term (the independent reference)."""
    alpha, beta, gamma = (math.radians(v) for v in (rot, tilt, psi))
    ca, sa = math.cos(alpha), math.sin(alpha)
    cb, sb = math.cos(beta), math.sin(beta)
    cg, sg = math.cos(gamma), math.sin(gamma)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    a = np.empty((3, 3))
    a[0, 0] = cg * cc - sg * sa
    a[0, 1] = cg * cs + sg * ca
    a[0, 2] = -cg * sb
    a[1, 0] = -sg * cc - cg * sa
    a[1, 1] = -sg * cs + cg * ca
    a[1, 2] = sg * sb
    a[2, 0] = sc
    a[2, 1] = ss
    a[2, 2] = cb
    return a


def random_angles(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 3, generator=g, dtype=torch.float64)
    angles = torch.stack([360 * u[:, 0] - 180, 180 * u[:, 1], 360 * u[:, 2] - 180], dim=-1)
    return angles.to(dtype)


def test_matches_relion_formula():
    angles = random_angles(200, seed=1)
    ours = euler_to_matrix(angles).numpy()
    for a, m in zip(angles.tolist(), ours):
        np.testing.assert_allclose(m, relion_euler_angles2matrix(*a), atol=1e-12)


def test_matches_eulerangles_transposed():
    angles = random_angles(500, seed=2)
    ref = euler2matrix(angles.numpy(), axes="zyz", intrinsic=True, right_handed_rotation=True)
    ref = np.swapaxes(ref, -1, -2)
    np.testing.assert_allclose(euler_to_matrix(angles).numpy(), ref, atol=1e-12)


def test_third_row_is_projection_direction():
    rot, tilt = 40.0, 70.0
    a = euler_to_matrix(torch.tensor([rot, tilt, 123.0], dtype=torch.float64))
    r, t = math.radians(rot), math.radians(tilt)
    expected = [math.cos(r) * math.sin(t), math.sin(r) * math.sin(t), math.cos(t)]
    np.testing.assert_allclose(a[2].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_shapes_dtype_orthogonality(dtype):
    angles = random_angles(24, seed=3, dtype=dtype).reshape(2, 3, 4, 3)
    m = euler_to_matrix(angles)
    assert m.shape == (2, 3, 4, 3, 3) and m.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand_as(m)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(m @ m.transpose(-1, -2), eye, atol=tol)
    assert torch.allclose(torch.linalg.det(m), torch.ones((), dtype=dtype), atol=tol)
    assert euler_to_matrix(torch.tensor([0.0, 0.0, 0.0], dtype=dtype)).shape == (3, 3)


def test_integer_angles_promoted():
    m = euler_to_matrix(torch.tensor([90, 0, 0]))
    assert m.dtype == torch.float64
    np.testing.assert_allclose(m.numpy(), relion_euler_angles2matrix(90, 0, 0), atol=1e-12)


@pytest.mark.parametrize("dtype,atol_deg", [(torch.float64, 1e-9), (torch.float32, 2e-3)])
def test_round_trip_angles_generic(dtype, atol_deg):
    angles = random_angles(5000, seed=4, dtype=dtype)
    angles[:, 1] = angles[:, 1].clamp(1.0, 179.0)  # away from gimbal lock: the angles are unique
    back = matrix_to_euler(euler_to_matrix(angles))
    diff = torch.remainder(back - angles + 180.0, 360.0) - 180.0
    assert diff.abs().max() < atol_deg


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_round_trip_matrices_everywhere(dtype, tol):
    mats = random_rotations(3000, torch.Generator().manual_seed(5), dtype=dtype)
    tilts = torch.tensor([0.0, 1e-9, 1e-7, 1e-5, 1e-3, 0.1, 90.0, 179.9, 180 - 1e-5, 180 - 1e-7, 180.0])
    special = torch.stack(
        [torch.full_like(tilts, 33.0), tilts, torch.full_like(tilts, -71.0)], dim=-1
    ).to(dtype)
    mats = torch.cat([mats, euler_to_matrix(special)])
    angles = matrix_to_euler(mats)
    assert angles.dtype == dtype and angles.shape == (mats.shape[0], 3)
    assert (angles[:, 1] >= 0).all() and (angles[:, 1] <= 180).all()
    assert (angles[:, 0::2] > -180).all() and (angles[:, 0::2] <= 180).all()
    assert (euler_to_matrix(angles) - mats).abs().max() < tol


def test_gimbal_lock_is_deterministic():
    # tilt 0: only psi + rot matters; tilt 180: only psi - rot. Everything goes into psi, rot == 0.
    a = matrix_to_euler(euler_to_matrix(torch.tensor([[30.0, 0.0, 20.0], [30.0, 180.0, 20.0]], dtype=torch.float64)))
    np.testing.assert_allclose(a.numpy(), [[0.0, 0.0, 50.0], [0.0, 180.0, -10.0]], atol=1e-9)
    b = matrix_to_euler(torch.eye(3))
    assert b.tolist() == [0.0, 0.0, 0.0]
    c = matrix_to_euler(euler_to_matrix(torch.tensor([100.0, 0.0, 100.0], dtype=torch.float64)))
    np.testing.assert_allclose(c.numpy(), [0.0, 0.0, -160.0], atol=1e-9)


def test_range_edge_180():
    a = matrix_to_euler(euler_to_matrix(torch.tensor([[180.0, 30.0, -180.0], [-180.0, 30.0, 180.0]])))
    np.testing.assert_allclose(a.numpy(), [[180.0, 30.0, 180.0]] * 2, atol=1e-4)


def test_to_fourier_slice_is_transpose():
    m = euler_to_matrix(random_angles(7, seed=6))
    r = to_fourier_slice(m)
    assert torch.equal(r, m.transpose(-1, -2)) and r.is_contiguous()
    # torch-fourier-slice samples the map at R @ (x, y, 0) = A.T @ (x, y, 0): the image plane in map coordinates.
    assert torch.allclose(r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), m[:, 2, :])


def test_bad_shapes_raise_input_error():
    with pytest.raises(InputError, match=r"\(\.\.\., 3\)"):
        euler_to_matrix(torch.zeros(4, 2))
    with pytest.raises(InputError, match=r"\(\.\.\., 3, 3\)"):
        matrix_to_euler(torch.zeros(4, 3))
