"""Particle batches for inference, read and prepared in DataLoader worker processes.

A worker reads a batch of images (:class:`relion_cryopares.data._datasets.ParticleDataset`, its own
bounded-open-files stack reader) and runs the expensive CPU part of the preprocessing
(:func:`prepare_channels`: Fourier rescale, background normalisation, phase flip, crop:
``(b, 2, box, box)``); the main process finishes the channels
(mask + Gaussian filter bank, on the network's device) and runs the network, so reading overlaps
with inference. Every batch holds particles of one half set only (their half model runs on them).

Memory is bounded by ``num_workers * prefetch_factor`` batches, whatever the number of particles.
Errors inside a worker come back as one readable line (not a worker traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from relion_cryopares.data import ParticleStar, PreprocessConfig
from relion_cryopares.data._datasets import ParticleDataset
from relion_cryopares.errors import InputError

@dataclass(frozen=True)
class Batch:
    """Row indices (into the STAR) and the half set of one batch."""

    rows: np.ndarray
    half: int


class _PreparedBatches(ParticleDataset):
    """:class:`ParticleDataset` (``finish=False``) whose errors come back as one line: ``{"error":
    line, "kind": ...}`` instead of a worker traceback."""

    def __getitem__(self, positions) -> dict:
        try:
            return super().__getitem__(positions)
        except Exception as exc:  # noqa: BLE001 - raised again in the main process
            text = str(exc).strip()
            return {"error": text.splitlines()[0] if text else "",
                    "kind": "input" if isinstance(exc, InputError) else type(exc).__name__}


def _identity(item):
    return item


def iterate_prepared(star: ParticleStar, batches: list[Batch], cfg: PreprocessConfig,
                     num_workers: int, pin_memory: bool = False) -> Iterator[tuple[Batch, torch.Tensor]]:
    """``(batch, channels (b, 2, box, box))`` in the order of ``batches``, read and prepared by
    ``num_workers`` worker processes (0: in this process)."""
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
        yield batch, item["images"]


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
