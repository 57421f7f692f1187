"""predict_poses, symmetry folding, grid targets and the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relion_cryopares.geometry import (
    canonical_symmetry_mate,
    geodesic_distance_deg,
    nearest_grid_index,
    random_rotations,
    so3_grid,
    so3_grid_neighbours,
    so3_grid_resolution_deg,
    symmetry_matrices,
    symmetry_mates,
)
from relion_cryopares.model import fold_probabilities, grid_targets, pose_cross_entropy, predict_poses

ORDER = 2
STEP = so3_grid_resolution_deg(ORDER)


def _peaked(indices: torch.Tensor, value: float = 20.0) -> torch.Tensor:
    logits = torch.zeros(indices.shape[0], 72 * 8**ORDER)
    logits.scatter_(1, indices.view(indices.shape[0], -1), value)
    return logits


def test_peak_at_grid_point_returns_that_rotation():
    grid = so3_grid(ORDER, torch.float64)
    idx = torch.randint(0, grid.shape[0], (16,))
    pred = predict_poses(_peaked(idx))
    assert torch.equal(pred.topk_indices[:, 0], idx)
    assert geodesic_distance_deg(pred.matrices.double(), grid[idx]).max() < 0.05 * STEP
    eye = torch.eye(3, dtype=torch.float64).expand(16, 3, 3)
    assert torch.allclose(torch.linalg.det(pred.matrices), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(pred.matrices @ pred.matrices.transpose(-1, -2), eye, atol=1e-9)
    assert ((pred.score > 0) & (pred.score <= 1 + 1e-6)).all()
    assert pred.topk_probs.shape == pred.topk_indices.shape == (16, 10)
    assert torch.allclose(pred.topk_matrices[:, 0].double(), grid[idx], atol=1e-6)
    assert (pred.probability > 0.99).all()


def test_neighbour_average_lands_between_two_equal_peaks():
    grid = so3_grid(ORDER, torch.float64)
    idx = torch.randint(0, grid.shape[0], (8,))
    other = so3_grid_neighbours(ORDER, idx)[:, 1]  # an in-plane or HEALPix neighbour
    logits = _peaked(torch.stack([idx, other], dim=1))
    pred = predict_poses(logits)
    d1 = geodesic_distance_deg(pred.matrices.double(), grid[idx])
    d2 = geodesic_distance_deg(pred.matrices.double(), grid[other])
    assert torch.allclose(d1, d2, atol=0.05 * STEP)
    assert torch.allclose(d1 + d2, geodesic_distance_deg(grid[idx], grid[other]), atol=0.05 * STEP)
    assert torch.allclose(pred.score, torch.ones(8), atol=1e-4)


def test_symmetric_prediction_is_canonical_and_consistent():
    for name in ("D7", "O", "C4h"):
        sym = symmetry_matrices(name)
        grid = so3_grid(ORDER, torch.float64)
        idx = torch.randint(0, grid.shape[0], (12,))
        pred = predict_poses(_peaked(idx), sym)
        rot = pred.matrices.double()
        assert geodesic_distance_deg(rot, grid[idx], sym).max() < 0.05 * STEP
        assert torch.allclose(canonical_symmetry_mate(rot, sym), rot, atol=1e-5)
        assert torch.allclose(torch.linalg.det(pred.matrices), torch.ones(12, dtype=torch.float64))
        # labels on all mates (as in training): same pose, all the mass counted
        pose = random_rotations(12)
        pred = predict_poses(_peaked(grid_targets(pose, sym, ORDER)), sym)
        assert geodesic_distance_deg(pred.matrices.double(), pose, sym).max() < STEP
        assert (pred.probability > 0.99).all() and (pred.score > 0.99).all()


def test_folding_partitions_the_grid():
    sym = symmetry_matrices("D3")
    probs = torch.softmax(torch.randn(4, 72 * 8**ORDER), -1)
    folded, reps, class_of = fold_probabilities(probs, sym, ORDER)
    assert torch.allclose(folded.sum(-1), torch.ones(4), atol=1e-5)
    assert abs(reps.shape[0] - probs.shape[1] / 6) < 0.2 * probs.shape[1] / 6  # grid not symmetric
    # symmetry mates of a grid point fall (mostly) into its class
    grid = so3_grid(ORDER, torch.float64)
    mates = nearest_grid_index(symmetry_mates(grid[reps], sym), ORDER)
    assert (class_of[mates] == torch.arange(reps.shape[0])[:, None]).float().mean() > 0.8
    same, _, _ = fold_probabilities(probs, None, ORDER)
    assert same is probs


def test_grid_targets_and_cross_entropy_match_dense_definition():
    sym = symmetry_matrices("D2")
    pose = random_rotations(5)
    targets = grid_targets(pose, sym, 1)
    assert targets.shape == (5, 4)
    assert torch.equal(targets[:, 0], nearest_grid_index(pose, 1))
    logits = torch.randn(5, 576, requires_grad=True)
    weights = torch.rand(5)
    eps = 0.05
    dense = torch.full((5, 576), eps / 576).scatter_add(1, targets, torch.full((5, 4), (1 - eps) / 4))
    expected = (F.cross_entropy(logits, dense, reduction="none") * weights).mean()
    loss = pose_cross_entropy(logits, targets, weights, label_smoothing=eps)
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert logits.grad.abs().sum() > 0
    assert pose_cross_entropy(logits, targets, reduction="none").shape == (5,)
    assert torch.equal(grid_targets(pose, None, 1), targets[:, :1])
