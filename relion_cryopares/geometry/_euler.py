"""RELION ZYZ Euler angles <-> pose matrices.

A pose matrix ``A`` is RELION's ``Euler_angles2matrix(rot, tilt, psi)`` (see
:mod:`relion_cryopares.conventions`): it acts on xyz column vectors and maps map coordinates into the
image frame. In terms of active right-handed rotations about the axes,
``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)``, i.e. ``A.T = Rz(rot) @ Ry(tilt) @ Rz(psi)``, and
``A == eulerangles.euler2matrix((rot, tilt, psi), axes="zyz", intrinsic=True,
right_handed_rotation=True).T``. The third row of ``A`` is the projection direction
``(cos rot sin tilt, sin rot sin tilt, cos tilt)``.
"""

from __future__ import annotations

import math

import torch

from relion_cryopares.errors import InputError


def _as_float_tensor(x, name: str, tail: tuple[int, ...]) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.float64)
    if tuple(x.shape[x.ndim - len(tail):]) != tail or x.ndim < len(tail):
        shape = "(..., " + ", ".join(str(t) for t in tail) + ")"
        raise InputError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    return x


def wrap_degrees(angles_deg: torch.Tensor) -> torch.Tensor:
    """Wrap angles in degrees (any shape) into RELION's range ``(-180, 180]``."""
    return 180.0 - torch.remainder(180.0 - angles_deg, 360.0)


def euler_to_matrix(angles_deg: torch.Tensor) -> torch.Tensor:
    """RELION Euler angles to pose matrices.

    Args:
        angles_deg: ``(..., 3)`` RELION ``(rot, tilt, psi)`` in degrees (ZYZ). Integer input is
            promoted to float64; float32/float64 are kept.

    Returns:
        ``(..., 3, 3)`` pose matrices ``A`` (RELION's ``Euler_angles2matrix``), same dtype and
        device as the input.
    """
    angles = _as_float_tensor(angles_deg, "angles_deg", (3,))
    rad = torch.deg2rad(angles)
    ca, cb, cg = torch.cos(rad).unbind(-1)
    sa, sb, sg = torch.sin(rad).unbind(-1)
    cc = cb * ca
    cs = cb * sa
    rows = (
        (cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb),
        (-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb),
        (sb * ca, sb * sa, cb),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # Extracting angles is done in float64 where the device supports it (robust near gimbal lock).
    return x.dtype if x.device.type == "mps" else torch.float64


def matrix_to_euler(matrices: torch.Tensor) -> torch.Tensor:
    """Pose matrices to RELION Euler angles.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices ``A`` (conventions: RELION's
            ``Euler_angles2matrix``; rotations, det +1).

    Returns:
        ``(..., 3)`` ``(rot, tilt, psi)`` in degrees, ``tilt`` in ``[0, 180]``, ``rot`` and ``psi`` in
        ``(-180, 180]``; same dtype and device as the input. At gimbal lock (``sin(tilt)`` below a
        dtype-dependent tolerance: 1e-6 for float32/16, 1e-12 for float64) the whole in-plane
        angle is put in ``psi`` and ``rot`` is exactly 0.

    ``rot`` is read from the third row and ``psi + rot`` (``tilt`` < 90) or ``psi - rot``
    (``tilt`` >= 90) from the upper-left 2x2 block, where it is well conditioned, so the returned
    angles reproduce the matrix to rounding precision at every tilt (computed in float64).
    """
    m_in = _as_float_tensor(matrices, "matrices", (3, 3))
    m = m_in.to(_compute_dtype(m_in))
    a00, a01, a02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    a10, a11, a12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    a20, a21, a22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]

    sin_tilt = 0.5 * (torch.hypot(a02, a12) + torch.hypot(a20, a21))
    tilt = torch.atan2(sin_tilt, a22)
    # rot from the third row (error ~ eps / sin tilt, which moves the matrix by only ~ eps); psi from
    # the 2x2 block, where psi + rot (north, scaled by 1 + cos tilt) or psi - rot (south, scaled by
    # 1 - cos tilt) is well conditioned.
    rot = torch.atan2(a21, a20)
    summ = torch.atan2(a01 - a10, a00 + a11)  # psi + rot
    diff = torch.atan2(a01 + a10, a11 - a00)  # psi - rot
    north = a22 >= 0
    psi = torch.where(north, summ - rot, diff + rot)

    tol = 1e-12 if m_in.dtype == torch.float64 else 1e-6
    locked = sin_tilt < tol
    zero = torch.zeros_like(rot)
    rot = torch.where(locked, zero, rot)
    psi = torch.where(locked, torch.where(north, summ, diff), psi)
    tilt = torch.where(locked, torch.where(north, zero, zero + math.pi), tilt)

    rot, tilt, psi = torch.rad2deg(rot), torch.rad2deg(tilt), torch.rad2deg(psi)
    angles = torch.stack([wrap_degrees(rot), tilt, wrap_degrees(psi)], dim=-1).to(m_in.dtype)
    # Rounding to a lower precision may produce -180 again.
    return torch.where(angles <= -180.0, angles + 360.0, angles)


def to_fourier_slice(matrices: torch.Tensor) -> torch.Tensor:
    """Pose matrices to the rotation matrices torch-fourier-slice expects.

    torch-fourier-slice samples the map at ``R @ (x, y, 0)`` (xyz), i.e. ``R = A.T``.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices ``A`` (RELION convention).

    Returns:
        ``(..., 3, 3)`` ``A.T`` (a contiguous copy), same dtype and device.
    """
    m = _as_float_tensor(matrices, "matrices", (3, 3))
    return m.transpose(-1, -2).contiguous()
