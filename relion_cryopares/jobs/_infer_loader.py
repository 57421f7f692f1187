"""Particle batches for inference, read and prepared in DataLoader worker processes.

A worker reads a batch of images (:class:`relion_cryopares.data._datasets.ParticleDataset`, its own
bounded-open-files stack reader) and runs the expensive CPU part of the preprocessing
(:func:`prepare_channels`: Fourier rescale, background normalisation, phase flip, crop:
``(b, 2, box, box)``); the main process finishes the channels
(mask + Gaussian filter bank, on the network's device) and runs the network, so reading overlaps
with inference. Every batch holds particles of one half set only (their half model runs on them).

Bad images (:func:`relion_cryopares.data.image_problems`: NaN/Inf pixels, a constant image or
background) are found in the worker on the raw images and replaced by zeros before preprocessing,
so that they never poison the batch; each batch comes with its particles' problems (``""`` for a
usable image) and the network skips them.

Memory is bounded by ``num_workers * prefetch_factor`` batches, whatever the number of particles.
Errors inside a worker come back as one readable line (not a worker traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from relion_cryopares.data import ParticleStar, PreprocessConfig, image_problems
from relion_cryopares.data._datasets import ParticleDataset
from relion_cryopares.errors import InputError


@dataclass(frozen=True)
class Batch:
    """Row indices (into the STAR) and the half set of one batch."""

    rows: np.ndarray
    half: int


class _PreparedBatches(ParticleDataset):
    """:class:`ParticleDataset` (``finish=False``) that screens the raw images (bad ones become
    zeros; ``item["problems"]``: one string per particle, ``""`` when usable) and whose errors come
    back as one line: ``{"error": line, "kind": ...}`` instead of a worker traceback."""

    def read(self, positions: np.ndarray) -> torch.Tensor:
        images = super().read(positions)
        found = self.__dict__.setdefault("_problems", {})  # position -> problem, reset per batch
        pixel = self.pixel_size[torch.from_numpy(positions)].numpy()
        for p in np.unique(pixel):  # the particle circle in this group's raw pixels
            sel = np.flatnonzero(pixel == p)
            radius = 0.5 * self.cfg.particle_diameter_angstrom / float(p)
            for i, problem in zip(sel, image_problems(images[torch.from_numpy(sel)], radius)):
                if problem is not None:
                    found[int(positions[i])] = problem
                    images[int(i)] = 0.0
        return images

    def __getitem__(self, positions) -> dict:
        self._problems = {}
        try:
            item = super().__getitem__(positions)
            item["problems"] = [self._problems.get(int(p), "") for p in item["index"].tolist()]
            return item
        except Exception as exc:  # noqa: BLE001 - raised again in the main process
            text = str(exc).strip()
            return {"error": text.splitlines()[0] if text else "",
                    "kind": "input" if isinstance(exc, InputError) else type(exc).__name__}


def _identity(item):
    return item


def iterate_prepared(star: ParticleStar, batches: list[Batch], cfg: PreprocessConfig,
                     num_workers: int, pin_memory: bool = False
                     ) -> Iterator[tuple[Batch, torch.Tensor, list[str]]]:
    """``(batch, channels (b, 2, box, box), problems)`` in the order of ``batches``, read and
    prepared by ``num_workers`` worker processes (0: in this process); ``problems[i]`` says what is
    wrong with the image of ``batch.rows[i]`` (``""``: usable; else its channels are zeros)."""
    if not batches:
        return
    dataset = _PreparedBatches(star, None, cfg, finish=False)
    kwargs = {"prefetch_factor": 2} if num_workers > 0 else {}
    loader = DataLoader(dataset, sampler=[b.rows for b in batches], batch_size=None, shuffle=False,
                        num_workers=num_workers, collate_fn=_identity, pin_memory=pin_memory, **kwargs)
    for batch, item in zip(batches, loader):
        if "error" in item:
            if item["kind"] == "input":
                raise InputError(item["error"])
            raise RuntimeError(f"{item['kind']} while reading particles: {item['error']}")
        yield batch, item["images"], item["problems"]


def make_batches(rows: np.ndarray, halves: np.ndarray, batch_size: int, chunk_size: int
                 ) -> list[list[Batch]]:
    """Split ``rows`` (STAR order) into chunks of about ``chunk_size`` particles, each chunk into
    batches of at most ``batch_size`` particles of one half set. Returns the batches per chunk."""
    chunks = []
    for c0 in range(0, len(rows), chunk_size):
        chunk = rows[c0:c0 + chunk_size]
        batches = []
        for half in (1, 2):
            sel = chunk[halves[chunk] == half]
            batches += [Batch(sel[i:i + batch_size], half) for i in range(0, len(sel), batch_size)]
        chunks.append(batches)
    return chunks
