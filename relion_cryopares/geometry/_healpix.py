"""HEALPix grids on SO(3) and on the sphere of viewing directions.

The SO(3) grid of a given ``order`` (Yershova et al. 2010, as used by Image2Sphere):

- viewing directions: the ``12 * 4**order`` HEALPix pixel centres, ``nside = 2**order``, NESTED
  ordering, from ``healpy.pix2ang``: ``tilt = theta``, ``rot = phi``;
- in-plane angles: ``n_psi = 6 * 2**order`` values ``psi_k = k * 360 / n_psi``, ``k = 0 .. n_psi - 1``;
- grid index ``i = pix * n_psi + k``; ``N = 72 * 8**order`` rotations (order 4: 294,912).

Angles are reported in RELION's ranges (``rot``, ``psi`` wrapped to ``(-180, 180]``) and the grid
matrices are the pose matrices ``euler_to_matrix((rot, tilt, psi))``. The projection direction of a
pose (RELION's ``(rot, tilt)``) is its third row, which for grid points is the pixel centre.

Neighbours come from the HEALPix structure, never from a search over the grid. A pose is
``Rz(-psi) @ B(pix)`` with ``B(pix) = euler_to_matrix((rot, tilt, 0))``; for two nearby pixels the
``psi`` that best continues a given ``psi`` differs by a fixed offset per pixel pair (large near
the poles, where ``rot`` turns quickly), precomputed here, so grid neighbours are close everywhere.
"""

from __future__ import annotations

import functools
import logging
import math

import healpy
import numpy as np
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry._euler import euler_to_matrix

logger = logging.getLogger(__name__)

MAX_GRID_ORDER = 6  # 72 * 8**6 = 18.9 M rotations
MAX_CONE_ORDER = 12


def _check_order(order, max_order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 0 <= order <= max_order:
        raise InputError(f"HEALPix order must be an integer in [0, {max_order}], got {order!r}")
    return int(order)


def n_psi(order: int) -> int:
    """Number of in-plane angles of the SO(3) grid: ``6 * 2**order``."""
    return 6 * 2 ** _check_order(order, MAX_GRID_ORDER)


def so3_grid_size(order: int) -> int:
    """Number of rotations of the SO(3) grid: ``72 * 8**order``."""
    return n_cones(_check_order(order, MAX_GRID_ORDER)) * n_psi(order)


def n_cones(order: int) -> int:
    """Number of HEALPix pixels (viewing-direction cones) at ``order``: ``12 * 4**order``."""
    return 12 * 4 ** _check_order(order, MAX_CONE_ORDER)


def so3_grid_resolution_deg(order: int) -> float:
    """Grid spacing in degrees: the in-plane step ``360 / n_psi = 60 / 2**order`` (order 4: 3.75).

    It matches the HEALPix pixel size (``sqrt(4 pi / npix)`` = 58.6 / 2**order degrees).
    """
    return 360.0 / n_psi(order)


@functools.lru_cache(maxsize=16)
def _pixel_tables(order: int):
    """Per-pixel tables (CPU): angles (npix, 2) deg, base poses, neighbours, psi offsets."""
    nside = 2**order
    npix = 12 * nside * nside
    logger.debug("building HEALPix tables for order %d (%d pixels)", order, npix)
    theta, phi = healpy.pix2ang(nside, np.arange(npix), nest=True)
    rot_tilt = torch.from_numpy(np.degrees(np.stack([phi, theta], axis=-1)))
    zeros = torch.zeros(npix, 1, dtype=torch.float64)
    base = euler_to_matrix(torch.cat([rot_tilt, zeros], dim=-1))  # (npix, 3, 3)

    nbr = healpy.get_all_neighbours(nside, np.arange(npix), nest=True).T  # (npix, 8), -1 = none
    self_idx = np.arange(npix)[:, None]
    nbr = np.where(nbr < 0, self_idx, nbr)
    nbr = torch.from_numpy(np.concatenate([self_idx, nbr], axis=1).astype(np.int64))  # (npix, 9)

    # Best in-plane continuation: psi' = psi - theta*, theta* maximising tr(Rz(theta) B_q B_p^T).
    m = base[nbr] @ base.transpose(-1, -2)[:, None]  # (npix, 9, 3, 3)
    theta_star = torch.atan2(m[..., 0, 1] - m[..., 1, 0], m[..., 0, 0] + m[..., 1, 1])
    step = 2.0 * math.pi / (6 * nside)
    psi_offset_steps = torch.round(-theta_star / step).to(torch.int64)  # (npix, 9)
    return rot_tilt, base, nbr, psi_offset_steps


def so3_grid_angles(order: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RELION Euler angles of the SO(3) grid.

    Args:
        order: grid order (``nside = 2**order``).
        dtype: floating dtype of the result.

    Returns:
        ``(N, 3)`` ``(rot, tilt, psi)`` in degrees, row ``i = pix * n_psi + k`` (see module doc).
    """
    return _grid_angles64(_check_order(order, MAX_GRID_ORDER)).to(dtype=dtype, copy=True)


@functools.lru_cache(maxsize=8)
def _grid_angles64(order: int) -> torch.Tensor:
    rot_tilt = _pixel_tables(order)[0]
    npsi = n_psi(order)
    psi = torch.arange(npsi, dtype=torch.float64) * (360.0 / npsi)
    psi = torch.where(psi > 180.0, psi - 360.0, psi)
    rot = torch.where(rot_tilt[:, 0] > 180.0, rot_tilt[:, 0] - 360.0, rot_tilt[:, 0])
    npix = rot_tilt.shape[0]
    return torch.stack(
        [
            rot.repeat_interleave(npsi),
            rot_tilt[:, 1].repeat_interleave(npsi),
            psi.repeat(npix),
        ],
        dim=-1,
    )


@functools.lru_cache(maxsize=8)
def _grid64(order: int) -> torch.Tensor:
    return euler_to_matrix(_grid_angles64(order))


def so3_grid(order: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pose matrices of the HEALPix SO(3) grid.

    Args:
        order: grid order; ``N = 72 * 8**order`` (0: 72, 1: 576, 2: 4608, 3: 36,864, 4: 294,912).
        dtype: floating dtype of the result.

    Returns:
        ``(N, 3, 3)`` pose matrices (RELION convention), row ``i = pix * n_psi + k``; a new CPU tensor
        each call (the float64 grid is cached per order).
    """
    return _grid64(_check_order(order, MAX_GRID_ORDER)).to(dtype=dtype, copy=True)


def _split_index(order: int, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    indices = torch.as_tensor(indices)
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise InputError(f"grid indices must be an integer tensor, got {indices.dtype}")
    size = so3_grid_size(order)
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= size):
        raise InputError(f"grid indices out of range [0, {size}) for order {order}")
    indices = indices.to(torch.int64)
    npsi = n_psi(order)
    return torch.div(indices, npsi, rounding_mode="floor"), torch.remainder(indices, npsi)


def so3_grid_neighbours(order: int, indices: torch.Tensor) -> torch.Tensor:
    """Neighbours of SO(3) grid points from the HEALPix structure.

    For grid point ``(pix, k)``: the pixel and its 8 HEALPix neighbours (``healpy.get_all_neighbours``;
    a missing neighbour, -1, is replaced by the pixel itself), each with the in-plane index that best
    continues ``k`` on that pixel and its two in-plane neighbours (wrapping around 360 degrees).

    Args:
        order: grid order.
        indices: ``(...)`` integer grid indices.

    Returns:
        ``(..., 27)`` int64 grid indices on the device of ``indices``; position 0 is the index itself.
        Entries may repeat (missing HEALPix neighbours).
    """
    order = _check_order(order, MAX_GRID_ORDER)
    pix, k = _split_index(order, indices)
    _, _, nbr, offset = _pixel_tables(order)
    nbr, offset = nbr.to(pix.device), offset.to(pix.device)
    npsi = n_psi(order)
    centre = k[..., None] + offset[pix]  # (..., 9)
    shifts = torch.tensor([0, -1, 1], dtype=torch.int64, device=pix.device)
    psi_idx = torch.remainder(centre[..., None] + shifts, npsi)  # (..., 9, 3)
    out = nbr[pix][..., None] * npsi + psi_idx
    return out.flatten(-2)


def _directions_to_pixels(matrices: torch.Tensor, order: int) -> torch.Tensor:
    if not isinstance(matrices, torch.Tensor) or matrices.ndim < 2 or tuple(matrices.shape[-2:]) != (3, 3):
        raise InputError("matrices must be a tensor of shape (..., 3, 3)")
    v = matrices[..., 2, :].detach().to(device="cpu", dtype=torch.float64).numpy()
    pix = healpy.vec2pix(2**order, v[..., 0], v[..., 1], v[..., 2], nest=True)
    return torch.as_tensor(np.asarray(pix, dtype=np.int64)).reshape(matrices.shape[:-2]).to(matrices.device)


def viewing_direction_cone(matrices: torch.Tensor, order: int = 2) -> torch.Tensor:
    """HEALPix pixel (NESTED, ``nside = 2**order``) holding each pose's projection direction.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices (RELION convention); the projection direction is the
            third row, ``(cos rot sin tilt, sin rot sin tilt, cos tilt)``.
        order: HEALPix order of the cones (2: 192 cones of ~15 degrees).

    Returns:
        ``(...)`` int64 cone ids in ``[0, n_cones(order))`` on the device of ``matrices``.
    """
    return _directions_to_pixels(matrices, _check_order(order, MAX_CONE_ORDER))


def cone_neighbours(order: int, cones: torch.Tensor) -> torch.Tensor:
    """A cone and its HEALPix neighbours.

    Args:
        order: HEALPix order of the cones.
        cones: ``(...)`` integer cone ids.

    Returns:
        ``(..., 9)`` int64 cone ids, position 0 the cone itself, then ``healpy.get_all_neighbours``
        (a missing neighbour is replaced by the cone itself).
    """
    order = _check_order(order, MAX_CONE_ORDER)
    cones = torch.as_tensor(cones)
    if cones.dtype.is_floating_point or cones.dtype == torch.bool:
        raise InputError(f"cone ids must be an integer tensor, got {cones.dtype}")
    if cones.numel() and (int(cones.min()) < 0 or int(cones.max()) >= n_cones(order)):
        raise InputError(f"cone ids out of range [0, {n_cones(order)}) for order {order}")
    flat = cones.detach().cpu().reshape(-1).numpy().astype(np.int64)
    nbr = healpy.get_all_neighbours(2**order, flat, nest=True).T.reshape(-1, 8)
    nbr = np.where(nbr < 0, flat[:, None], nbr)
    out = np.concatenate([flat[:, None], nbr], axis=1)
    return torch.from_numpy(out).reshape(*cones.shape, 9).to(cones.device)


def nearest_grid_index(matrices: torch.Tensor, order: int) -> torch.Tensor:
    """Index of the grid rotation nearest (geodesic distance) to each pose.

    The pixel of the projection direction and its 8 neighbours are candidates; on each, the in-plane
    angle that best matches the pose is computed in closed form and the two grid values around it
    are tried (the distance is unimodal in ``psi``). The best of these 18 is returned.

    Args:
        matrices: ``(..., 3, 3)`` pose matrices (RELION convention).
        order: grid order.

    Returns:
        ``(...)`` int64 grid indices on the device of ``matrices``.
    """
    order = _check_order(order, MAX_GRID_ORDER)
    pix0 = _directions_to_pixels(matrices, order)
    _, base, nbr, _ = _pixel_tables(order)
    device = matrices.device
    r = matrices.to(torch.float64) if matrices.device.type != "mps" else matrices
    cand = nbr.to(device)[pix0]  # (..., 9)
    b = base.to(device=device, dtype=r.dtype)[cand]  # (..., 9, 3, 3)
    m = b @ r.transpose(-1, -2).unsqueeze(-3)
    psi_star = -torch.atan2(m[..., 0, 1] - m[..., 1, 0], m[..., 0, 0] + m[..., 1, 1])
    npsi = n_psi(order)
    step = 2.0 * math.pi / npsi
    k0 = torch.floor(psi_star / step).to(torch.int64)
    k = torch.remainder(torch.stack([k0, k0 + 1], dim=-1), npsi)  # (..., 9, 2)
    psi = k.to(r.dtype) * step
    c, s = torch.cos(psi), torch.sin(psi)
    # Grid pose Rz(-psi) @ B: rows (c b0 + s b1, -s b0 + c b1, b2); score = trace(r.T @ pose).
    b0, b1, b2 = (b[..., i, :].unsqueeze(-2) for i in range(3))  # (..., 9, 1, 3)
    r0, r1, r2 = (r[..., i, :][..., None, None, :] for i in range(3))
    score = (
        ((c[..., None] * b0 + s[..., None] * b1) * r0).sum(-1)
        + ((-s[..., None] * b0 + c[..., None] * b1) * r1).sum(-1)
        + (b2 * r2).sum(-1)
    )  # (..., 9, 2)
    index = cand[..., None] * npsi + k
    best = score.flatten(-2).argmax(dim=-1, keepdim=True)
    return torch.gather(index.flatten(-2), -1, best).squeeze(-1)
