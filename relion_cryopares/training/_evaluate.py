"""Run a model over a dataset: poses, pruning scores, loss and angular errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from relion_cryopares.geometry import geodesic_distance_deg
from relion_cryopares.model import PoseModel, grid_targets, pose_cross_entropy, predict_poses


@dataclass
class Evaluation:
    """Per-particle results (CPU tensors, dataset order): predicted ``matrices`` ``(n, 3, 3)``,
    pruning ``scores`` ``(n,)``, ``errors_deg`` ``(n,)`` geodesic error to the label (with
    symmetry), and the weighted mean validation ``loss``."""

    matrices: torch.Tensor
    scores: torch.Tensor
    errors_deg: torch.Tensor
    loss: float

    @property
    def median_error_deg(self) -> float:
        return float(self.errors_deg.median()) if self.errors_deg.numel() else float("nan")

    @property
    def mean_error_deg(self) -> float:
        return float(self.errors_deg.mean()) if self.errors_deg.numel() else float("nan")


@torch.no_grad()
def evaluate(model: PoseModel, batches: Iterable[dict], symmetry: torch.Tensor | None,
             device: torch.device, label_smoothing: float = 0.05) -> Evaluation:
    """``batches`` of the datasets of :mod:`relion_cryopares.data._datasets` with ``finish=True``
    images; returns an :class:`Evaluation` in the order of the batches' ``index``."""
    was_training = model.training
    model.eval()
    order = model.config.grid_order
    sym = None if symmetry is None or symmetry.shape[0] == 1 else symmetry.to(device)
    mats, scores, errors, index = [], [], [], []
    loss_sum, weight_sum = 0.0, 0.0
    try:
        for batch in batches:
            x = batch["images"].to(device, non_blocking=True)
            true = batch["matrices"].to(device)
            w = batch["weights"].to(device)
            logits = model(x)
            loss = pose_cross_entropy(logits, grid_targets(true, sym, order), w, label_smoothing, "sum")
            loss_sum += float(loss)
            weight_sum += float(x.shape[0])
            pred = predict_poses(logits, sym)
            mats.append(pred.matrices.cpu())
            scores.append(pred.score.cpu())
            errors.append(geodesic_distance_deg(pred.matrices.double(), true.double(),
                                                None if sym is None else sym.double()).float().cpu())
            index.append(batch["index"].cpu())
    finally:
        model.train(was_training)
    if not index:
        empty = torch.zeros(0)
        return Evaluation(torch.zeros(0, 3, 3), empty, empty, float("nan"))
    order_idx = torch.argsort(torch.cat(index))
    return Evaluation(torch.cat(mats)[order_idx], torch.cat(scores)[order_idx],
                      torch.cat(errors)[order_idx], loss_sum / max(weight_sum, 1.0))
