"""Building rotations: random uniform rotations, axis-angle rotations.

Rotation matrices here are active and right-handed, acting on xyz column vectors: ``R @ v`` turns
``v`` by the angle about the axis, counter-clockwise seen from the axis tip. Note that the pose of
RELION's ``(rot, 0, 0)`` is ``axis_angle_to_matrix((0, 0, 1), -rot)`` (poses rotate the frame, see
:mod:`relion_cryopares.geometry._euler`). Perturbing a pose ``A`` by rotating the map with ``Q``
before projecting gives the pose ``A @ Q`` (conventions).
"""

from __future__ import annotations

import torch

from relion_cryopares.errors import InputError


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` ordered ``(w, x, y, z)`` to active rotation matrices ``(..., 3, 3)``."""
    w, x, y, z = quaternions.unbind(-1)
    rows = (
        (1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
        (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
        (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)),
    )
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotations drawn uniformly (Haar measure) from SO(3).

    Normalised 4D Gaussian vectors are uniform unit quaternions, hence uniform rotations.

    Args:
        n: number of rotations (>= 0).
        generator: optional ``torch.Generator`` (on ``device``) for reproducibility.
        dtype: floating dtype of the result.
        device: device of the result (default: the generator's device, else CPU).

    Returns:
        ``(n, 3, 3)`` rotation matrices (det +1), usable as pose matrices.
    """
    if int(n) < 0:
        raise InputError(f"number of rotations must be >= 0, got {n}")
    if device is None and generator is not None:
        device = generator.device
    q = torch.randn(int(n), 4, generator=generator, dtype=dtype, device=device)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return quaternion_to_matrix(q)


def axis_angle_to_matrix(axis: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """Rotation about an axis by an angle (Rodrigues' formula).

    Args:
        axis: ``(..., 3)`` xyz axis directions (need not be unit length; a zero axis gives the
            identity).
        angle_deg: ``(...)`` angles in degrees, right-handed; broadcast against ``axis[..., 0]``.

    Returns:
        ``(..., 3, 3)`` active rotation matrices; dtype/device follow ``axis`` (float) or
        ``angle_deg``.
    """
    axis = torch.as_tensor(axis)
    angle = torch.as_tensor(angle_deg)
    if axis.ndim < 1 or axis.shape[-1] != 3:
        raise InputError(f"axis must have shape (..., 3), got {tuple(axis.shape)}")
    dtype = torch.promote_types(axis.dtype, angle.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    axis = axis.to(dtype)
    angle = torch.deg2rad(angle.to(device=axis.device, dtype=dtype))
    norm = torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    unit = axis / norm.clamp_min(torch.finfo(dtype).tiny)
    kx, ky, kz = unit.unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack(
        [
            torch.stack([zero, -kz, ky], dim=-1),
            torch.stack([kz, zero, -kx], dim=-1),
            torch.stack([-ky, kx, zero], dim=-1),
        ],
        dim=-2,
    )
    s = torch.sin(angle)[..., None, None]
    c = torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=dtype, device=axis.device)
    return eye + s * cross + (1 - c) * (cross @ cross)
