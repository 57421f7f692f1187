"""Streaming particle datasets for training and inference (``torch.utils.data``).

Batch-level access: a :class:`BatchIndexSampler` yields arrays of positions and
``dataset[positions]`` reads those images in one go (the stack reader groups them by file and
reads each file sequentially), preprocesses them and returns a dict of tensors. Use them with
``DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=N)``: every worker gets its own
pickled copy of the dataset and therefore its own :class:`ImageStackReader` (open files are never
shared), and no stack is ever held in memory whole.

A batch (dict) holds:

- ``"images"``: ``(k, 2, box, box)`` channels of :func:`prepare_channels` (``finish=False``, for
  augmentation) or the network input ``(k, 2 * S, box, box)`` (``finish=True``);
- ``"matrices"``: ``(k, 3, 3)`` float32 pose matrices (RELION's angles; identity when the STAR has
  no poses);
- ``"weights"``: ``(k,)`` float32 (``rlnMaxValueProbDistribution``, 1 when the column is missing;
  0 for an unusable image: NaN/Inf pixels or constant, zeroed before preprocessing);
- ``"index"``: ``(k,)`` int64 positions in the dataset (``rows[index]`` are the STAR rows).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.fourier import Projector
from relion_cryopares.geometry import euler_to_matrix

from ._preprocess import PreprocessConfig, finish_channels, prepare_channels
from ._quality import bad_image_mask
from ._stacks import ImageStackReader
from ._star import ParticleStar

#: Column read as the per-particle training weight.
WEIGHT_COLUMN = "rlnMaxValueProbDistribution"


def particle_weights(star: ParticleStar) -> np.ndarray:
    """``(n,)`` float64 training weights: ``rlnMaxValueProbDistribution`` or 1 where missing."""
    w = np.asarray(star.column(WEIGHT_COLUMN, 1.0), dtype=np.float64)
    return np.where(np.isfinite(w), w, 1.0)


def pose_matrices(star: ParticleStar) -> torch.Tensor:
    """``(n, 3, 3)`` float32 pose matrices of the STAR's angles (identity when it has none)."""
    if not star.has_poses():
        return torch.eye(3).expand(len(star), 3, 3).clone()
    return euler_to_matrix(torch.from_numpy(star.angles_deg())).to(torch.float32)


class ParticleDataset(Dataset):
    """The particles ``rows`` of ``star``, read lazily and preprocessed per batch.

    ``dataset[positions]`` (an int array/list/tensor of positions in ``[0, len(rows))``) returns a
    batch dict (module docstring); ``dataset[i]`` a batch of one. ``root`` is the RELION project
    directory stack paths are relative to.
    """

    def __init__(self, star: ParticleStar, rows: np.ndarray | None, cfg: PreprocessConfig,
                 finish: bool = True, root: str = ".", max_open_files: int = 32) -> None:
        self.rows = np.arange(len(star)) if rows is None else np.asarray(rows, dtype=np.int64)
        self.cfg = cfg
        self.finish = finish
        sub = star.select(self.rows)
        self.names = np.asarray(sub.image_names(), dtype=object)
        self.source = star.path.name if star.path is not None else None
        self.pixel_size = torch.from_numpy(sub.pixel_size_angstrom())
        self.image_size = sub.image_size_px()
        groups = sub.optics_groups()
        self.phase_flipped = torch.tensor([groups[int(g)].ctf_phase_flipped
                                           for g in sub.optics_group_numbers()], dtype=torch.bool)
        self.ctf = sub.ctf_parameters()
        self.matrices = pose_matrices(sub)
        self.weights = torch.from_numpy(particle_weights(sub).astype(np.float32))
        self.reader = ImageStackReader(max_open_files=max_open_files, root=root)

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """Raw images ``(k, h, w)`` float32 of ``positions``."""
        return torch.from_numpy(self.reader.read(list(self.names[positions]), source=self.source,
                                                 row_numbers=(self.rows[positions] + 1).tolist()))

    def images(self, positions: np.ndarray) -> torch.Tensor:
        """Preprocessed images of ``positions``; optics groups with other boxes are read apart."""
        return self._images(positions)[0]

    def _images(self, positions: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Preprocessed images and ``(k,)`` bool: unusable raw images (:func:`image_problems`: NaN/Inf
        pixels, constant), which are zeroed before preprocessing so they cannot poison a batch."""
        sizes = self.image_size[positions]
        two = torch.empty((len(positions), 2, self.cfg.box_nnet, self.cfg.box_nnet))
        bad = np.zeros(len(positions), dtype=bool)
        for size in np.unique(sizes):
            sel = np.flatnonzero(sizes == size)
            idx = torch.from_numpy(positions[sel])
            raw = self.read(positions[sel])
            radius = 0.5 * self.cfg.particle_diameter_angstrom / float(self.pixel_size[idx[0]])
            unusable = bad_image_mask(raw, radius)
            if unusable.any():
                raw[torch.from_numpy(unusable)] = 0.0
                bad[sel[unusable]] = True
            two[torch.from_numpy(sel)] = prepare_channels(raw, self.pixel_size[idx], self.ctf.select(idx),
                                                          self.phase_flipped[idx], self.cfg)
        return (finish_channels(two, self.cfg) if self.finish else two), bad

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:
        pos = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        idx = torch.from_numpy(pos)
        images, bad = self._images(pos)
        weights = self.weights[idx].clone()
        weights[torch.from_numpy(bad)] = 0.0  # a bad image never trains the network
        return {"images": images, "matrices": self.matrices[idx], "weights": weights, "index": idx}


class SimulatedParticleDataset(ParticleDataset):
    """Particles simulated from a map at the poses, shifts and CTFs of ``star``'s ``rows``
    (pre-training): projections of ``volume`` ``(n, n, n)`` at ``pixel_size_angstrom``, CTF
    modulated, plus white noise at ``snr`` (``sigma² = mean variance of the clean projections of up
    to 64 of these particles / snr``; deterministic per batch and ``seed``), then preprocessed like
    real particles. No image is read from disk.
    """

    def __init__(self, volume: torch.Tensor, pixel_size_angstrom: float, star: ParticleStar,
                 rows: np.ndarray | None, cfg: PreprocessConfig, snr: float = 0.1,
                 finish: bool = False, seed: int = 0) -> None:
        super().__init__(star, rows, cfg, finish=finish)
        self.volume = volume.to(torch.float32)
        self.volume_pixel_size = float(pixel_size_angstrom)
        self.seed = int(seed)
        self.origins_px = torch.from_numpy(star.select(self.rows).origins_angstrom() / self.volume_pixel_size)
        self._projector: Projector | None = None
        self.noise_sigma = 0.0
        if len(self) and snr > 0:
            clean = self._clean(np.arange(min(64, len(self))))
            self.noise_sigma = float(clean.var(dim=(-2, -1)).mean().sqrt()) / float(snr) ** 0.5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_projector"] = None  # rebuilt in each worker
        return state

    def _clean(self, positions: np.ndarray) -> torch.Tensor:
        if self._projector is None:
            self._projector = Projector(self.volume)
        idx = torch.from_numpy(positions)
        ctf = _with_pixel_size(self.ctf.select(idx), self.volume_pixel_size)
        return self._projector.project(self.matrices[idx].to(torch.float64), -self.origins_px[idx],
                                       compute_ctf(ctf, self.volume.shape[-1], fftshift=True))

    def read(self, positions: np.ndarray) -> torch.Tensor:
        clean = self._clean(positions)
        key = hashlib.sha256(f"{self.seed}:{positions.tobytes().hex()}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(key[:7], "little"))
        return (clean + self.noise_sigma * torch.randn(clean.shape, generator=gen)).to(torch.float32)

    def images(self, positions: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(positions)
        k = len(positions)
        two = prepare_channels(self.read(positions), torch.full((k,), self.volume_pixel_size),
                               _with_pixel_size(self.ctf.select(idx), self.volume_pixel_size),
                               torch.zeros(k, dtype=torch.bool), self.cfg)
        return finish_channels(two, self.cfg) if self.finish else two

    def _images(self, positions: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        return self.images(positions), np.zeros(len(positions), dtype=bool)  # simulated: never bad


def _with_pixel_size(ctf, pixel_size_angstrom: float):
    return dataclasses.replace(ctf, pixel_size_angstrom=torch.full((len(ctf),), pixel_size_angstrom,
                                                                   dtype=torch.float64))


class BatchIndexSampler(Sampler):
    """Yields ``(k,)`` int64 arrays of positions in ``[0, n)``: consecutive batches of a
    permutation seeded by ``(seed, epoch)`` when ``shuffle`` (else in order), starting at batch
    ``start_batch`` (a resumed epoch). ``drop_last`` drops a final short batch (training with
    batch norm); it is kept when it is the only batch.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                 start_batch: int = 0, drop_last: bool = False) -> None:
        self.n, self.batch_size = int(n), int(batch_size)
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), int(epoch)
        self.start_batch, self.drop_last = int(start_batch), drop_last

    def batches(self) -> list[np.ndarray]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        out = [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.drop_last and len(out) > 1 and len(out[-1]) < self.batch_size:
            out = out[:-1]
        return out

    def __len__(self) -> int:
        return max(0, len(self.batches()) - self.start_batch)

    def __iter__(self):
        return iter(self.batches()[self.start_batch:])
