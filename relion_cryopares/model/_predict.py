"""From grid logits to poses: symmetry folding, top-k, neighbour averaging, pruning score."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from relion_cryopares.geometry import (
    canonical_symmetry_mate,
    nearest_grid_index,
    so3_grid_neighbours,
    symmetry_mates,
)

from ._grid_tables import grid_matrices, grid_order_of, is_trivial, symmetry_classes


@dataclass(frozen=True)
class PosePrediction:
    """Per-particle predictions (``B`` particles), on the device of the logits; matrices are
    float64 (the symmetry reduction is exactly idempotent there), probabilities float32.

    ``matrices`` ``(B, 3, 3)``: pose matrices (RELION convention): the best grid rotation (the most
    probable grid point of the most probable symmetry class) and its HEALPix grid neighbours,
    averaged with their probabilities as weights, projected onto SO(3) (SVD, det +1) and reduced
    to the canonical symmetry mate. ``probability`` ``(B,)``: the network's probability of that
    pose: the probability mass on the grid neighbourhoods (the point nearest to each symmetry copy
    of the pose and its HEALPix neighbours, each grid point counted once).
    ``score`` ``(B,)``: the sum of the 10 largest folded grid probabilities (the pruning score,
    in (0, 1]). ``topk_indices`` ``(B, k)`` grid indices of the ``k`` most probable symmetry
    classes (their representatives), ``topk_probs`` ``(B, k)`` their folded probabilities,
    ``topk_matrices`` ``(B, k, 3, 3)`` the grid rotations of those indices.
    """

    matrices: torch.Tensor
    probability: torch.Tensor
    score: torch.Tensor
    topk_indices: torch.Tensor
    topk_probs: torch.Tensor
    topk_matrices: torch.Tensor


def fold_probabilities(probs: torch.Tensor, symmetry: torch.Tensor | None, order: int
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Sum the probabilities of symmetry-equivalent grid points.

    Args:
        probs: ``(B, N)`` probabilities over the grid.
        symmetry: ``(G, 3, 3)`` operators or ``None`` (C1).
    Returns:
        ``folded`` ``(B, R)`` class probabilities (each grid point counted once, so the rows still
        sum to 1), ``representatives`` ``(R,)`` and ``class_of`` ``(N,)`` (both ``None`` for C1,
        where ``folded`` is ``probs``).
    """
    if is_trivial(symmetry):
        return probs, None, None
    reps, class_of = symmetry_classes(order, symmetry, probs.device)
    folded = probs.new_zeros(probs.shape[0], reps.shape[0]).index_add_(1, class_of, probs)
    return folded, reps, class_of


def project_to_rotation(m: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` -> nearest rotation (Frobenius), det +1, via SVD."""
    u, _, vh = torch.linalg.svd(m)
    det = torch.linalg.det(u @ vh)
    fix = torch.ones_like(m[..., 0])
    fix[..., 2] = torch.sign(det) + (det == 0).to(det.dtype)
    return (u * fix[..., None, :]) @ vh


def _first_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` indices -> ``(B, K)`` float mask: 1 at the first occurrence of each value in its
    row, 0 at repeats."""
    order = torch.argsort(idx, dim=-1, stable=True)
    s = idx.gather(-1, order)
    first = torch.ones_like(s, dtype=torch.bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    return torch.zeros_like(first).scatter(-1, order, first).float()


@torch.no_grad()
def predict_poses(logits: torch.Tensor, symmetry: torch.Tensor | None = None, k: int = 10,
                  n_score: int = 10) -> PosePrediction:
    """Poses, probabilities and pruning scores from grid logits.

    Args:
        logits: ``(B, N)`` logits over the HEALPix SO(3) grid (``N = 72 * 8**order``).
        symmetry: ``(G, 3, 3)`` from :func:`relion_cryopares.geometry.symmetry_matrices`, or
            ``None`` for C1. Probabilities of symmetry-equivalent grid points are summed before
            anything is ranked.
        k: number of top classes reported.
        n_score: number of top classes summed into ``score`` (10 in cryoPARES).

    Returns:
        :class:`PosePrediction`.
    """
    order = grid_order_of(logits.shape[-1])
    device = logits.device
    probs = torch.softmax(logits.float(), dim=-1)
    folded, reps, class_of = fold_probabilities(probs, symmetry, order)
    kk = min(max(k, n_score), folded.shape[-1])
    top_p, top_i = torch.topk(folded, kk, dim=-1)
    top_idx = top_i if reps is None else reps[top_i]
    score = top_p[:, :n_score].sum(-1)

    grid = grid_matrices(order, str(device), torch.float64)
    if class_of is None:
        best = top_idx[:, 0]
    else:  # the most probable grid point of the most probable class: one copy of the peak
        in_class = class_of[None, :] == top_i[:, :1]
        best = probs.masked_fill(~in_class, -1.0).argmax(-1)
    nbrs = so3_grid_neighbours(order, best)  # (B, K), self first, may repeat
    weight = _first_occurrence(nbrs) * probs.gather(1, nbrs)
    rot = project_to_rotation((weight.double()[..., None, None] * grid[nbrs]).sum(1))
    # probability: mass within the grid neighbourhoods of every symmetry copy of the pose
    sym = None if is_trivial(symmetry) else symmetry.to(device=device, dtype=torch.float64)
    copies = rot[:, None] if sym is None else symmetry_mates(rot, sym)
    around = so3_grid_neighbours(order, nearest_grid_index(copies, order)).flatten(1)
    probability = (_first_occurrence(around) * probs.gather(1, around)).sum(1)
    if sym is not None:
        rot = canonical_symmetry_mate(rot, sym)
    return PosePrediction(
        matrices=rot,
        probability=probability,
        score=score,
        topk_indices=top_idx[:, :k],
        topk_probs=top_p[:, :k],
        topk_matrices=grid[top_idx[:, :k]],
    )
