"""Where the pixels of a central slice land in a centred 3D rfft (shared by projection and
insertion)."""

from __future__ import annotations

import torch

from ._fft import rfft_frequency_grid_2d


def slice_coordinates(matrices: torch.Tensor, image_size: int, volume_size: int,
                      fftfreq_max: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coordinates of central slices in a centred 3D rfft of side ``volume_size``.

    Parameters
    ----------
    matrices: ``(..., 3, 3)`` pose matrices (RELION's A): the slice of an image in pose A holds the
        map's transform at ``A.T @ (kx, ky, 0)``.
    image_size: side of the images (their frequencies are ``k / image_size`` cycles/px).
    volume_size: side of the (possibly padded) volume.
    fftfreq_max: frequencies beyond this radius (cycles/px) are left out.

    Returns
    -------
    zyx: ``(..., m, 3)`` float array coordinates into the ``(V, V, V//2+1)`` volume rfft.
    conj: ``(..., m)`` True where the point was reflected into the stored half (take conjugates).
    inside: ``(image_size, image_size//2+1)`` mask of the image rfft pixels the ``m`` points are.
    """
    a = matrices.to(torch.float32)
    grid = rfft_frequency_grid_2d(image_size, device=a.device)
    ky, kx = grid[..., 0], grid[..., 1]
    inside = (kx ** 2 + ky ** 2) <= fftfreq_max ** 2
    xyz = kx[inside, None] * a[..., None, 0, :] + ky[inside, None] * a[..., None, 1, :]
    conj = xyz[..., 0] < 0
    xyz = torch.where(conj[..., None], -xyz, xyz)
    n = volume_size
    zyx = torch.stack([xyz[..., 2] * n + n // 2, xyz[..., 1] * n + n // 2, xyz[..., 0] * n], dim=-1)
    return zyx, conj, inside


def scatter_trilinear(target: torch.Tensor, zyx: torch.Tensor, values: torch.Tensor) -> None:
    """Add ``values`` ``(m, c)`` (real) into ``target`` ``(D, H, W, c)`` at ``zyx`` ``(m, 3)`` with
    trilinear weights, in place (one ``index_add_`` per corner; points off the grid are dropped)."""
    d, h, w, c = target.shape
    flat = target.view(-1, c)
    base = torch.floor(zyx)
    frac = zyx - base
    base = base.long()
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                z, y, x = base[:, 0] + dz, base[:, 1] + dy, base[:, 2] + dx
                wz = frac[:, 0] if dz else 1 - frac[:, 0]
                wy = frac[:, 1] if dy else 1 - frac[:, 1]
                wx = frac[:, 2] if dx else 1 - frac[:, 2]
                ok = (z >= 0) & (z < d) & (y >= 0) & (y < h) & (x >= 0) & (x < w)
                idx = ((z * h + y) * w + x)[ok]
                flat.index_add_(0, idx, values[ok] * (wz * wy * wx)[ok, None])
