"""Direct Fourier inversion with CTF correction, streaming: memory is bounded by the box.

An accumulator holds ``sum w*CTF*F`` and ``sum w*CTF^2`` on an oversampled (x2, as RELION) centred 3D
rfft grid: each image's box-size Fourier transform is spread into it with trilinear weights at
``k / box`` cycles/px (RELION's backprojector does the same); particles are inserted batch by batch (torch-fourier-slice's trilinear insertion), and
accumulators of the same box add up, so half maps can grow across continues without recomputation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._fft import (irfft3_centred, radial_frequency_3d, rfft2_centred, shift_rfft2,
                   sinc2_gridding_correction)
from ._filters import soft_sphere_mask
from ._slices import scatter_trilinear, slice_coordinates


def _hermitian_mate(x: torch.Tensor) -> torch.Tensor:
    """Values at (-z, -y) in the x=0 plane of a centred rfft (even sizes)."""
    return torch.roll(torch.flip(x, dims=(-3, -2)), shifts=(1, 1), dims=(-3, -2))


class FourierAccumulator:
    """Streaming reconstruction of one map of side ``box`` (pixels)."""

    def __init__(self, box: int, pad_factor: int = 2, device: torch.device | str = "cpu"):
        self.box = int(box)
        self.padded_size = int(box) * int(pad_factor)
        n = self.padded_size
        # channels: Re(sum w CTF F), Im(sum w CTF F), sum w CTF^2
        self._sums = torch.zeros((n, n, n // 2 + 1, 3), dtype=torch.float32, device=device)
        self.n_particles = 0.0

    @property
    def device(self) -> torch.device:
        return self._sums.device

    @property
    def data(self) -> torch.Tensor:
        """``(P, P, P//2+1)`` complex ``sum w CTF F`` (centred rfft, padded grid)."""
        return torch.complex(self._sums[..., 0], self._sums[..., 1])

    @property
    def weight(self) -> torch.Tensor:
        """``(P, P, P//2+1)`` ``sum w CTF^2``."""
        return self._sums[..., 2]

    def insert(self, images: torch.Tensor, matrices: torch.Tensor,
               origins_px: torch.Tensor | None = None, ctf: torch.Tensor | None = None,
               weights: torch.Tensor | None = None, symmetry: torch.Tensor | None = None) -> None:
        """Add a batch of particles.

        Parameters
        ----------
        images: ``(b, box, box)`` real particle images.
        matrices: ``(b, 3, 3)`` pose matrices (RELION's A).
        origins_px: ``(b, 2)`` RELION origins (x, y) in pixels; images are shifted by ``+origin``
            to centre the particle (conventions.py).
        ctf: ``(b, box, box//2+1)`` CTF on the images' centred-rfft grid, or None for no CTF.
        weights: ``(b,)`` per-particle weights (default 1).
        symmetry: ``(G, 3, 3)`` operators L; each image is inserted at the poses ``A @ L``.
        """
        dev = self.device
        b = images.shape[0]
        f = rfft2_centred(images.to(dev, torch.float32))
        if origins_px is not None:
            f = shift_rfft2(f, origins_px.to(dev), self.box)
        w = torch.ones(b, device=dev) if weights is None else weights.to(dev, torch.float32)
        c = torch.ones_like(f.real) if ctf is None else ctf.to(dev, torch.float32)
        a = matrices.to(dev, torch.float32)
        if symmetry is not None and symmetry.shape[0] > 1:
            a = a[:, None] @ symmetry.to(dev, torch.float32)[None]  # (b, G, 3, 3)
        zyx, conj, inside = slice_coordinates(a, self.box, self.padded_size)
        fw = (f * c * w[:, None, None])[:, inside]  # (b, m)
        cw = (c * c * w[:, None, None])[:, inside]
        if a.ndim == 4:
            fw, cw = fw[:, None].expand_as(conj), cw[:, None].expand_as(conj)
        fw = torch.where(conj, torch.conj(fw), fw)
        values = torch.stack([fw.real, fw.imag, cw], dim=-1).reshape(-1, 3)
        scatter_trilinear(self._sums, zyx.reshape(-1, 3), values)
        self.n_particles += float(w.sum())

    def ctf_grid_size(self) -> int:
        """Side of the grid on which :meth:`insert` expects the CTF (the images' box)."""
        return self.box

    def __iadd__(self, other: "FourierAccumulator") -> "FourierAccumulator":
        if other.padded_size != self.padded_size:
            raise ValueError("cannot add reconstructions of different boxes")
        self._sums += other._sums.to(self.device)
        self.n_particles += other.n_particles
        return self

    def _symmetrised_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        data, weight = self.data.clone(), self.weight.clone()
        data[..., 0] = data[..., 0] + torch.conj(_hermitian_mate(data[..., :1]))[..., 0]
        weight[..., 0] = weight[..., 0] + _hermitian_mate(weight[..., :1])[..., 0]
        return data, weight

    def shell_mean_weight(self) -> torch.Tensor:
        """``(box//2+1,)`` mean CTF² weight per Fourier shell of the final box."""
        _, weight = self._symmetrised_sums()
        shells = torch.round(radial_frequency_3d(self.padded_size, self.device) * self.box).long()
        nshell = self.box // 2 + 1
        keep = shells < nshell
        total = torch.zeros(nshell, device=self.device).index_add_(0, shells[keep], weight[keep])
        count = torch.zeros(nshell, device=self.device).index_add_(
            0, shells[keep], torch.ones_like(weight[keep]))
        return total / count.clamp(min=1)

    def reconstruct(self, ssnr: torch.Tensor | None = None, min_weight_fraction: float = 1e-3,
                    mask_outside_sphere: bool = True) -> torch.Tensor:
        """The map ``(box, box, box)``.

        Without ``ssnr``: ``sum CTF F / max(sum CTF², eps)`` with ``eps`` a small fraction of the
        shell's mean weight (plain inversion, as ``relion_reconstruct`` without ``--fsc``).
        With ``ssnr`` ``(box//2+1,)`` per shell (e.g. from the half maps' FSC, :func:`fsc_to_ssnr`):
        RELION-style Wiener regularisation ``sum CTF F / (sum CTF² + 1/tau²)`` with
        ``1/tau² = mean shell weight / ssnr``.
        ``mask_outside_sphere``: like RELION, zero the map outside the sphere of diameter ``box``
        (soft edge), where only interpolation noise lives.
        """
        data, weight = self._symmetrised_sums()
        freq = radial_frequency_3d(self.padded_size, self.device)
        shells = torch.round(freq * self.box).long().clamp(max=self.box // 2)
        mean_w = self.shell_mean_weight()
        floor = (min_weight_fraction * mean_w.clamp(min=1e-12))[shells]
        if ssnr is None:
            denom = torch.maximum(weight, floor)
        else:
            s = ssnr.to(self.device, torch.float32).clamp(min=1e-6)
            denom = weight + torch.maximum(mean_w[shells] / s[shells], floor)
        vol_ft = data / denom
        vol_ft[freq > 0.5] = 0
        n = self.padded_size
        vol = irfft3_centred(vol_ft, n)
        p = (n - self.box) // 2
        vol = vol[p:p + self.box, p:p + self.box, p:p + self.box]
        vol = vol / sinc2_gridding_correction(self.box, n, self.device)
        if mask_outside_sphere:
            vol = vol * soft_sphere_mask(self.box, self.box / 2, 2.0, ndim=3, device=self.device)
        return vol

    def save(self, path: str | Path) -> None:
        """Write the sums (torch.save of plain tensors; load with :meth:`load`)."""
        torch.save({"box": self.box, "padded_size": self.padded_size, "sums": self._sums.cpu(),
                    "n_particles": self.n_particles}, path)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> "FourierAccumulator":
        state = torch.load(path, map_location=device, weights_only=True)
        acc = cls(state["box"], state["padded_size"] // state["box"], device=device)
        acc._sums = state["sums"].to(device)
        acc.n_particles = float(state["n_particles"])
        return acc


def fsc_to_ssnr(fsc: torch.Tensor, full_map: bool = True) -> torch.Tensor:
    """Spectral SNR per shell from a half-map FSC (of the full map when ``full_map``, which
    doubles the particles: FSC' = 2 FSC / (1 + FSC))."""
    f = fsc.clamp(min=1e-3, max=0.999)
    if full_map:
        f = (2 * f / (1 + f)).clamp(max=0.999)
    return f / (1 - f)
