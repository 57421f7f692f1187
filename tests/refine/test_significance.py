"""Weights: particles get significance ~1, pure noise ~0; the grid's own (max-mean)/std cannot tell."""

from __future__ import annotations

import math

import torch

from relion_cryopares.fourier import lowpass_volume
from relion_cryopares.refine import LocalRefiner, particle_weight, peak_significance, search_config


def test_significance_formula():
    z = torch.tensor([0.0, 2.0, 4.0, 6.0, 30.0])
    p = peak_significance(z, 1000)
    phi = [0.5 * (1 + math.erf(v / math.sqrt(2))) for v in z.tolist()]
    assert torch.allclose(p.double(), torch.tensor([x ** 1000 for x in phi], dtype=torch.float64), atol=1e-6)
    assert (p[1:] >= p[:-1]).all() and p[-1] == 1.0
    w = particle_weight(torch.tensor([1.0, 0.5, -1.0, 2.0]))
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.0, 1.0]))


def test_particles_are_significant_and_noise_is_not(particles, test_map):
    vol, px = test_map
    # the local search alone: a global scan of SO(3) gives noise ~10x more hypotheses, whose best
    # exceeds the normal null's expectation more often (measured: 83 % of noise below 0.5 instead of
    # 95 %); the second pruning stage's z threshold (half the modal z) rejects such noise anyway
    refiner = LocalRefiner(lowpass_volume(vol, 6.0, px), search_config(64, px, global_starts=0))
    n = 64
    noise = torch.randn(particles.images[:n].shape, generator=torch.Generator().manual_seed(9))
    noise = noise * particles.images[:n].std()
    args = (particles.start_poses[:n].float(), particles.start_origins_px[:n].float(), particles.ctf[:n])
    good = refiner.refine(particles.images[:n], *args)
    junk = refiner.refine(noise, *args)
    report = (f"z: particles median {good.zscore.median():.1f}, noise {junk.zscore.median():.1f}; "
              f"significance: particles min {good.significance.min():.3f}, noise median "
              f"{junk.significance.median():.3f}")
    print(report)
    assert (good.significance > 0.99).float().mean() >= 0.95, report
    assert (junk.significance < 0.5).float().mean() >= 0.9, report

    def grid_z(scores):
        return (scores.amax(1) - scores.mean(1)) / scores.std(1)

    # why not the rotation grid's own statistics: a real peak is one smooth bump over the ball
    assert abs(float(grid_z(good.grid_scores).median() - grid_z(junk.grid_scores).median())) < 1.0
