"""The Fourier points that take part in matching, and central slices sampled only there.

Matching uses the pixels of an image's centred rfft between two shells (the DC term and everything
beyond the reference's low-pass are left out). :class:`Band` lists them **sorted by shell**, so a
low-resolution pass uses a prefix of the list. :class:`BandSlicer` samples central slices of a
:class:`~relion_cryopares.fourier.Projector`'s prepared transform at those points only: the same
trilinear interpolation as ``Projector.project_rfft`` (tests compare them) with the coordinates
computed as one batched matrix product and one ``grid_sample`` call, several times faster on CPU
when many poses are projected per particle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from relion_cryopares.fourier import Projector, rfft_frequency_grid_2d

from ._spectra import hermitian_weights, shell_index


@dataclass(frozen=True)
class Band:
    """Points of an ``(n, n//2+1)`` centred rfft with ``min_shell <= round(|k| n) <= max_shell``.

    ``k``: ``(2, m)`` (kx, ky) cycles/px; ``shell``: ``(m,)``; ``flat``: ``(m,)`` positions in the
    flattened rfft; ``multiplicity``: ``(m,)`` 1 or 2 (Hermitian mates in the full plane).
    """

    size: int
    min_shell: int
    max_shell: int
    k: torch.Tensor
    shell: torch.Tensor
    flat: torch.Tensor
    multiplicity: torch.Tensor

    @staticmethod
    def of(size: int, min_shell: int, max_shell: int, device=None) -> "Band":
        max_shell = min(int(max_shell), size // 2 - 1)  # |k| < 0.5: no sample on the volume's edge
        min_shell = max(int(min_shell), 1)
        shells = shell_index(size, device).reshape(-1)
        keep = torch.nonzero((shells >= min_shell) & (shells <= max_shell)).squeeze(1)
        keep = keep[torch.argsort(shells[keep], stable=True)]
        grid = rfft_frequency_grid_2d(size, device=device).reshape(-1, 2)[keep]  # (m, 2) (ky, kx)
        herm = hermitian_weights(size, device)[None].expand(size, -1).reshape(-1)[keep]
        return Band(size, min_shell, max_shell, torch.stack([grid[:, 1], grid[:, 0]]).contiguous(),
                    shells[keep], keep, herm.contiguous())

    def __len__(self) -> int:
        return int(self.flat.shape[0])

    def count_up_to(self, shell: int) -> int:
        """Number of points (a prefix) with shell ``<= shell``."""
        return int((self.shell <= shell).sum())

    def take(self, rfft: torch.Tensor) -> torch.Tensor:
        """``(..., n, n//2+1)`` -> ``(..., m)`` values at the band's points."""
        return rfft.reshape(*rfft.shape[:-2], -1)[..., self.flat]

    def dense(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., m)`` -> ``(..., n, n//2+1)`` with zeros off the band."""
        n = self.size
        out = torch.zeros(*values.shape[:-1], n * (n // 2 + 1), dtype=values.dtype, device=values.device)
        out[..., self.flat] = values
        return out.reshape(*values.shape[:-1], n, n // 2 + 1)


class BandSlicer:
    """Central slices of a Projector's transform at the points of a :class:`Band`."""

    def __init__(self, projector: Projector, band: Band):
        if projector.size != band.size:
            raise ValueError(f"projector box {projector.size} != band box {band.size}")
        self.band = band
        vol = projector.volume_rfft  # (P, P, P//2+1) complex, centred
        d, h, w = vol.shape
        self._volume = torch.view_as_real(vol).permute(3, 0, 1, 2).contiguous()[None]  # (1, 2, d, h, w)
        p = projector.padded_size
        # grid_sample's normalised coordinates (x, y, z) = k_xyz * scale + offset (align_corners=True)
        self._scale = torch.tensor([2.0 * p / (w - 1), 2.0 * p / (h - 1), 2.0 * p / (d - 1)], device=vol.device)
        self._offset = torch.tensor([-1.0, 2.0 * (p // 2) / (h - 1) - 1.0, 2.0 * (p // 2) / (d - 1) - 1.0],
                                    device=vol.device)[:, None]

    def __call__(self, poses: torch.Tensor, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts ``(..., count)`` of the slices for pose matrices ``(..., 3, 3)``
        (RELION's A) at the first ``count`` band points (all by default)."""
        count = len(self.band) if count is None else int(count)
        lead = poses.shape[:-2]
        a = poses.reshape(-1, 3, 3).to(self._volume.device, torch.float32)
        # map frequency A.T @ (kx, ky, 0), scaled to grid_sample units: (N, 3, c), one small GEMM each
        xyz = (a[:, :2, :] * self._scale).transpose(1, 2) @ self.band.k[:, :count]
        sign = torch.where(xyz[:, 0:1] < 0, -1.0, 1.0)  # stored half: Hermitian mate, conjugated
        grid = torch.addcmul(self._offset, xyz, sign).transpose(1, 2)  # (N, c, 3)
        s = self._sample(grid)  # (2, N, c)
        return s[0].reshape(*lead, count), (s[1] * sign[:, 0]).reshape(*lead, count)

    def _sample(self, grid: torch.Tensor) -> torch.Tensor:
        """Trilinear samples ``(2, N, c)`` (real, imaginary) at grid_sample coordinates ``(N, c, 3)``.

        On a CPU, grid_sample runs its batch dimension in parallel (and nothing else), so the poses
        are split into one group per thread, all reading the same volume (a stride-0 batch)."""
        n, c = grid.shape[:2]
        parts = 1
        if grid.device.type == "cpu" and torch.get_num_threads() > 1 and n * c >= 20000:
            parts = min(torch.get_num_threads(), n)
        per = -(-n // parts)
        if parts * per != n:  # pad to equal groups with copies of the last pose
            grid = torch.cat([grid, grid[-1:].expand(parts * per - n, -1, -1)])
        volume = self._volume.expand(parts, -1, -1, -1, -1)
        s = F.grid_sample(volume, grid.reshape(parts, 1, per, c, 3), mode="bilinear", padding_mode="zeros",
                          align_corners=True)  # (parts, 2, 1, per, c)
        return s.transpose(0, 1).reshape(2, parts * per, c)[:, :n]
