"""Local search grids: small rotations around a pose, isotropic (rotation vectors, not Euler offsets).

A rotation vector ``v`` (degrees) is the rotation by ``|v|`` about the axis ``v / |v|``. The local grid
is the cubic lattice ``step * (i, j, k)`` of rotation vectors cut to the ball ``|v| <= range``: every
direction of perturbation is sampled alike, unlike a grid of Euler offsets (whose spacing collapses
near tilt 0 and 180).

Perturbations act in the **image frame**: the candidate poses of a particle with pose ``A`` are
``Q(v) @ A``. For a symmetry operator ``L`` the candidates around the mate ``A @ L`` are the mates
``Q(v) @ A @ L`` of the candidates around ``A``, so the search commutes with the point group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from relion_cryopares.geometry import axis_angle_to_matrix


def rotation_vector_to_matrix(vectors_deg: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` (xyz axis times angle, degrees) -> active rotations ``(..., 3, 3)``.

    The zero vector gives the identity. dtype and device follow ``vectors_deg``.
    """
    v = torch.as_tensor(vectors_deg)
    if not v.dtype.is_floating_point:
        v = v.to(torch.float64)
    return axis_angle_to_matrix(v, torch.linalg.vector_norm(v, dim=-1))


@dataclass(frozen=True)
class LocalGrid:
    """Rotation vectors of a local search.

    ``offsets``: ``(R, 3)`` integer lattice coordinates; ``vectors_deg``: ``(R, 3)`` = ``step_deg *
    offsets``; ``matrices``: ``(R, 3, 3)`` float64 rotations ``Q``; ``centre``: index of the zero
    vector. The rows are sorted by ``|offset|`` then lexicographically (deterministic).
    """

    step_deg: float
    range_deg: float
    offsets: torch.Tensor
    vectors_deg: torch.Tensor
    matrices: torch.Tensor
    centre: int

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def neighbour_table(self) -> torch.Tensor:
        """``(R, 27)`` index of the grid point at ``offset + d`` for the 27 ``d`` in ``{-1, 0, 1}³``
        (order of :func:`cube_offsets`), ``-1`` where that point is outside the grid."""
        lookup = {tuple(o.tolist()): i for i, o in enumerate(self.offsets)}
        cube = cube_offsets()
        table = torch.full((len(self), cube.shape[0]), -1, dtype=torch.long)
        for i, o in enumerate(self.offsets.tolist()):
            for j, d in enumerate(cube.tolist()):
                table[i, j] = lookup.get((o[0] + d[0], o[1] + d[1], o[2] + d[2]), -1)
        return table


def cube_offsets() -> torch.Tensor:
    """``(27, 3)`` integer offsets ``{-1, 0, 1}³``, the centre ``(0, 0, 0)`` at row 13."""
    r = torch.arange(-1, 2)
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


def local_rotation_grid(range_deg: float, step_deg: float, shape: str = "ball") -> LocalGrid:
    """The cubic lattice of rotation vectors of spacing ``step_deg`` inside the ball ``|v| <= range_deg``
    (``shape="cube"``: inside the cube ``max |v_i| <= range_deg``, as a grid of offsets would be).

    ``range_deg=6, step_deg=2`` gives 123 rotations (``±4/2``: 33 in the ball, 125 in the cube).
    """
    if shape not in ("ball", "cube"):
        raise ValueError(f"shape must be 'ball' or 'cube', not {shape!r}")
    if step_deg <= 0 or range_deg < 0:
        raise ValueError(f"need step > 0 and range >= 0, got step {step_deg}, range {range_deg}")
    n = int(math.floor(range_deg / step_deg + 1e-9))
    r = torch.arange(-n, n + 1)
    lattice = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    norm2 = (lattice ** 2).sum(-1)
    keep = norm2 * step_deg ** 2 <= range_deg ** 2 * (1 + 1e-9)
    if shape == "cube":
        keep = torch.ones_like(keep)
    lattice, norm2 = lattice[keep], norm2[keep]
    # sort by radius, then lexicographically: stable, platform independent
    key = norm2 * (2 * n + 1) ** 3 + ((lattice[:, 0] + n) * (2 * n + 1) + lattice[:, 1] + n) * (2 * n + 1) \
        + lattice[:, 2] + n
    lattice = lattice[torch.argsort(key)]
    vectors = lattice.to(torch.float64) * float(step_deg)
    return LocalGrid(float(step_deg), float(range_deg), lattice, vectors,
                     rotation_vector_to_matrix(vectors), 0)
