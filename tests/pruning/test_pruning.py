"""Directional normaliser and thresholds on synthetic scores with known structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.geometry import n_cones, random_rotations, viewing_direction_cone
from relion_cryopares.pruning import (DirectionalNormaliser, auroc, threshold_from_junk,
                                      threshold_from_validation)


def _view_dependent_scores(rot, rng, noise=0.02):
    """Good-particle scores whose level depends on the viewing direction (z component)."""
    z = rot[:, 2, 2].numpy()
    return torch.from_numpy(0.5 + 0.3 * z + noise * rng.standard_normal(len(z)))


def test_zscores_remove_the_view_dependence():
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    train = random_rotations(20000, generator=gen)
    norm = DirectionalNormaliser.fit(_view_dependent_scores(train, rng), train)
    test = random_rotations(4000, generator=gen)
    good = _view_dependent_scores(test, rng)
    z = norm.zscore(good, test)
    assert z.shape == (4000,) and z.dtype == torch.float32
    assert abs(float(z.median())) < 0.15
    assert 0.7 < float(1.4826 * (z - z.median()).abs().median()) < 1.5
    # junk: 0.1 below the view's level is invisible in the raw scores (view spread 0.6) but clear in z
    junk = good - 0.1
    assert auroc(good, junk) < 0.7
    assert auroc(z, norm.zscore(junk, test)) > 0.99


def test_sparse_cones_borrow_from_neighbours_or_global():
    gen = torch.Generator().manual_seed(1)
    rot = random_rotations(3000, generator=gen)
    cones = viewing_direction_cone(rot, 2)
    keep = (cones != 5) | (torch.arange(3000) % 10 == 0)  # cone 5 keeps ~1-2 particles
    rot = rot[keep]
    scores = torch.ones(rot.shape[0]) * 0.7 + 0.01 * torch.randn(rot.shape[0], generator=gen)
    norm = DirectionalNormaliser.fit(scores, rot, min_count=10)
    assert norm.counts[5] < 10 and norm.source[5] == 1
    assert abs(norm.medians[5] - 0.7) < 0.01
    # with only 20 particles in all, most cones use the global statistics
    few = DirectionalNormaliser.fit(scores[:20], rot[:20], min_count=10)
    assert (few.source == 2).sum() > 100
    assert np.allclose(few.medians[few.source == 2], few.global_median)
    assert np.all(few.mads > 0)


def test_round_trip_through_json():
    gen = torch.Generator().manual_seed(2)
    rot = random_rotations(500, generator=gen)
    scores = torch.rand(500, generator=gen)
    norm = DirectionalNormaliser.fit(scores, rot)
    back = DirectionalNormaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert torch.equal(back.zscore(scores, rot), norm.zscore(scores, rot))
    assert back.medians.shape == (n_cones(2),)
    with pytest.raises(InputError):
        DirectionalNormaliser.from_dict({"order": 2})
    with pytest.raises(InputError):
        DirectionalNormaliser.from_dict({**norm.to_dict(), "medians": [0.0] * 3})


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    g = rng.normal(1.0, 1.0, 300).round(1)  # ties included
    j = rng.normal(0.0, 1.0, 200).round(1)
    pairs = (g[:, None] > j[None]).mean() + 0.5 * (g[:, None] == j[None]).mean()
    assert auroc(g, j) == pytest.approx(pairs, abs=1e-12)
    assert auroc(g, g) == pytest.approx(0.5)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0


def test_threshold_from_junk_maximises_balanced_accuracy():
    rng = np.random.default_rng(4)
    g = rng.normal(0.0, 1.0, 5000)
    j = rng.normal(-4.0, 1.0, 500)  # equal variances: the optimum is the midpoint, -2
    t = threshold_from_junk(g, j)
    assert -2.4 < t < -1.6
    # independent of the junk count (balanced accuracy)
    assert abs(threshold_from_junk(g, j[:100]) - t) < 0.5
    # perfectly separated sets: the threshold lies in the gap
    assert threshold_from_junk([1.0, 2.0, 3.0], [-2.0, -1.0]) == 0.0  # mid-gap
    with pytest.raises(InputError):
        threshold_from_junk([], [1.0])


def test_threshold_from_validation_keeps_the_top_95_percent():
    z = np.random.default_rng(5).normal(size=10000)
    t = threshold_from_validation(z)
    assert np.mean(z >= t) == pytest.approx(0.95, abs=0.002)
    assert threshold_from_validation(z, 0.2) > t
    with pytest.raises(InputError):
        threshold_from_validation(z, 1.5)
