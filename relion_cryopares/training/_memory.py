"""Keep a small dataset's preprocessed images in memory (read and preprocess once)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from relion_cryopares.data import BatchIndexSampler, PreprocessConfig, finish_channels

log = logging.getLogger(__name__)


class InMemoryDataset(Dataset):
    """The 2-channel images of a dataset built with ``finish=False``, all in memory; same batch
    interface (``dataset[positions]``); ``finish`` applies the mask and filter bank on access."""

    def __init__(self, images: torch.Tensor, matrices: torch.Tensor, weights: torch.Tensor,
                 cfg: PreprocessConfig, finish: bool) -> None:
        self.images, self.matrices, self.weights = images, matrices, weights
        self.cfg, self.finish = cfg, finish

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, positions) -> dict[str, torch.Tensor]:
        idx = torch.from_numpy(np.atleast_1d(np.asarray(positions, dtype=np.int64)))
        x = self.images[idx]
        return {"images": finish_channels(x, self.cfg) if self.finish else x,
                "matrices": self.matrices[idx], "weights": self.weights[idx], "index": idx}


def maybe_in_memory(dataset, cfg: PreprocessConfig, finish: bool, limit_mb: float,
                    num_workers: int = 0, batch_size: int = 64):
    """An :class:`InMemoryDataset` of ``dataset`` (a ``finish=False`` particle dataset) when its
    2-channel images take at most ``limit_mb``; else ``dataset`` itself with ``finish`` set."""
    n = len(dataset)
    mb = n * 2 * cfg.box_nnet ** 2 * 4 / 2 ** 20
    if n == 0 or mb > limit_mb:
        dataset.finish = finish
        return dataset
    images = torch.empty((n, 2, cfg.box_nnet, cfg.box_nnet), dtype=torch.float32)
    weights = dataset.weights.clone()
    loader = DataLoader(dataset, sampler=BatchIndexSampler(n, batch_size), batch_size=None,
                        num_workers=num_workers)
    for batch in loader:
        images[batch["index"]] = batch["images"]
        weights[batch["index"]] = batch["weights"]  # 0 for unusable images
    log.debug("kept %d preprocessed particles in memory (%.0f MB)", n, mb)
    return InMemoryDataset(images, dataset.matrices.clone(), weights, cfg, finish)
