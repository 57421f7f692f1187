"""Training targets and loss over the SO(3) grid."""

from __future__ import annotations

import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import nearest_grid_index, symmetry_mates


def grid_targets(matrices: torch.Tensor, symmetry: torch.Tensor | None, order: int) -> torch.Tensor:
    """Grid labels of poses and all their symmetry mates.

    Args:
        matrices: ``(B, 3, 3)`` pose matrices (RELION convention).
        symmetry: ``(G, 3, 3)`` operators from :func:`relion_cryopares.geometry.symmetry_matrices`
            (identity first), or ``None`` for C1.
        order: grid order.

    Returns:
        ``(B, G)`` int64: nearest grid index of each mate (:func:`~relion_cryopares.geometry.symmetry_mates`),
        column 0 the pose itself.
    """
    if symmetry is None:
        return nearest_grid_index(matrices, order)[:, None]
    mates = symmetry_mates(matrices, symmetry.to(device=matrices.device))
    return nearest_grid_index(mates, order)


def pose_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                       label_smoothing: float = 0.05, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy against the symmetrised, smoothed target distribution.

    The target puts ``(1 - eps) / G`` on each mate's grid index (repeated indices accumulate) and
    ``eps`` spread uniformly over the ``N`` grid points; computed from ``log_softmax`` without
    building a dense ``(B, N)`` target.

    Args:
        logits: ``(B, N)``.
        targets: ``(B, G)`` from :func:`grid_targets`.
        weights: ``(B,)`` per-particle weights (e.g. ``rlnMaxValueProbDistribution``) or ``None``.
        label_smoothing: ``eps``.
        reduction: ``"mean"``: ``mean(weights * ce)`` (as cryoPARES; ``weights`` scale the
            gradient), ``"sum"``, or ``"none"``: the ``(B,)`` weighted losses.
    """
    if targets.ndim != 2 or targets.shape[0] != logits.shape[0]:
        raise InputError(f"targets must have shape (B, G), got {tuple(targets.shape)}")
    logp = torch.log_softmax(logits.float(), dim=-1)
    on_mates = logp.gather(1, targets.to(logits.device)).mean(-1)
    uniform = logp.mean(-1)
    ce = -((1.0 - label_smoothing) * on_mates + label_smoothing * uniform)
    if weights is not None:
        ce = ce * weights.to(ce)
    if reduction == "mean":
        return ce.mean()
    if reduction == "sum":
        return ce.sum()
    if reduction == "none":
        return ce
    raise InputError(f"unknown reduction {reduction!r}")


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(uniform || softmax(logits)) = ``-mean(log p) - log N`` (>= 0, 0 for
    a flat distribution): the outlier-exposure loss for known junk particles."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return (-logp.mean(-1) - torch.log(torch.tensor(float(logits.shape[-1])))).mean()
