"""Rotation angles and geodesic distances on SO(3), optionally modulo a point group."""

from __future__ import annotations

import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry._symmetry import symmetry_mates


def _check_matrices(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or tuple(x.shape[-2:]) != (3, 3):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} must be a tensor of shape (..., 3, 3), got {shape}")


def rotation_angle_deg(matrices: torch.Tensor) -> torch.Tensor:
    """Rotation angle of rotation matrices, in degrees.

    Uses ``atan2(|skew part|, trace - 1)``, accurate near 0 and 180 degrees (unlike ``acos``).

    Args:
        matrices: ``(..., 3, 3)`` rotation matrices (any convention; the angle is the same for a
            matrix and its transpose).

    Returns:
        ``(...)`` angles in ``[0, 180]`` degrees, same dtype and device.
    """
    _check_matrices(matrices, "matrices")
    m = matrices
    skew = torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]],
        dim=-1,
    )
    trace = m.diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.atan2(torch.linalg.vector_norm(skew, dim=-1), trace - 1.0))


def geodesic_distance_deg(
    a: torch.Tensor, b: torch.Tensor, symmetry: torch.Tensor | None = None
) -> torch.Tensor:
    """Geodesic (angular) distance between poses, optionally minimised over symmetry mates.

    Args:
        a: ``(..., 3, 3)`` pose matrices (RELION convention).
        b: ``(..., 3, 3)`` pose matrices, broadcastable against ``a``.
        symmetry: ``(G, 3, 3)`` operators from :func:`symmetry_matrices`, or ``None`` (C1).

    Returns:
        ``(...)`` the angle of ``a.T @ b`` in degrees (``[0, 180]``), or with ``symmetry`` the minimum
        over the mates of ``b`` (``b @ L``, or ``diag(1, 1, -1) @ b @ L`` for improper ``L``).
    """
    _check_matrices(a, "a")
    _check_matrices(b, "b")
    if symmetry is None:
        return rotation_angle_deg(a.transpose(-1, -2) @ b)
    _check_matrices(symmetry, "symmetry")
    mates = symmetry_mates(b, symmetry)  # (..., G, 3, 3)
    rel = a.transpose(-1, -2).unsqueeze(-3) @ mates
    return rotation_angle_deg(rel).amin(dim=-1)
