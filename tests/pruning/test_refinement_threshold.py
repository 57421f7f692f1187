"""The second stage's automatic threshold (pruning.refinement_threshold) on synthetic z-score sets.

Log-normal modes shaped like the refinement z-scores of the realistic simulated extraction
(benchmarks/bench_realistic.py): good log z ~ N(3.0, 0.08); junk: aggregates ~ N(2.45, 0.1),
the rest ~ N(1.6, 0.4). Measured over seeds 0-9 (700 good, 100 aggregates, 200 other junk): good
kept 99.3-100 %, aggregates rejected 100 %, other junk 99-100 %; the threshold without junk
within 0.3 % of the one with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from relion_cryopares.errors import InputError
from relion_cryopares.pruning import modal_zscore, noise_floor, refinement_threshold


def _sets(seed: int, n_good: int = 700, n_aggregate: int = 100, n_junk: int = 200):
    rng = np.random.default_rng(seed)
    good = np.exp(rng.normal(3.0, 0.08, n_good))
    return good, np.exp(rng.normal(2.45, 0.1, n_aggregate)), np.exp(rng.normal(1.6, 0.4, n_junk))


@pytest.mark.parametrize("seed", range(5))
def test_threshold_follows_the_good_mode_and_rejects_junk(seed):
    good, aggregates, junk = _sets(seed)
    fit = refinement_threshold(np.r_[good, aggregates, junk], n_hypotheses=500_000)
    assert fit.mode_z == pytest.approx(math.exp(3.0), rel=0.05)
    assert fit.value == pytest.approx(fit.mode_z * math.exp(-2.75 * fit.width))
    assert (good >= fit.value).mean() >= 0.985
    assert (aggregates < fit.value).mean() >= 0.95 and (junk < fit.value).mean() >= 0.97
    alone = refinement_threshold(good, n_hypotheses=500_000)  # no junk: the same rule, the same loss
    assert alone.value == pytest.approx(fit.value, rel=0.02)


def test_noise_floor_is_the_median_maximum_of_normal_noise():
    rng = np.random.default_rng(0)
    maxima = rng.standard_normal((2000, 1000)).max(axis=1)
    assert noise_floor(1000) == pytest.approx(np.median(maxima), abs=0.03)
    assert noise_floor(1) == pytest.approx(0.0, abs=1e-9)
    weak = np.exp(np.random.default_rng(1).normal(1.6, 0.2, 500))  # good particles barely above noise
    fit = refinement_threshold(weak, n_hypotheses=500_000)
    assert fit.value == pytest.approx(noise_floor(500_000)) and "noise floor" in fit.describe()


def test_a_very_narrow_mode_is_capped():
    z = np.exp(np.random.default_rng(2).normal(3.0, 0.005, 400))
    fit = refinement_threshold(z)
    assert fit.value == pytest.approx(0.85 * fit.mode_z) and (z >= fit.value).all()


def test_mode_is_robust_to_much_junk_and_non_finite_values_are_ignored():
    good, aggregates, junk = _sets(0, 500, 150, 300)
    assert modal_zscore(np.r_[good, aggregates, junk]) == pytest.approx(math.exp(3.0), rel=0.05)
    z = np.r_[good, junk, np.nan, np.inf, -np.inf]
    assert refinement_threshold(z).value == pytest.approx(refinement_threshold(np.r_[good, junk]).value)
    with pytest.raises(InputError):
        refinement_threshold(np.array([np.nan]))
