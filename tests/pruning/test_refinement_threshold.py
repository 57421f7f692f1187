"""The second stage's automatic threshold (pruning.refinement_threshold) on synthetic z-score sets.

Log-normal modes as the refinement z-scores of simulated particles look (good: log z ~ 3.0 +- 0.2
with a 10 % tail at 2.5 +- 0.3; junk: log z ~ 1.5 +- 0.4). Measured over seeds 0-9 (700 good,
300 junk): good kept 97.1-98.1 %, junk rejected 96.7-99.3 %; good only: the same good fraction.
"""

from __future__ import annotations

import numpy as np
import pytest

from relion_cryopares.errors import InputError
from relion_cryopares.pruning import modal_zscore, noise_floor, refinement_threshold


def _sets(seed: int, n_good: int = 700, n_junk: int = 300):
    rng = np.random.default_rng(seed)
    tail = rng.random(n_good) < 0.1
    good = np.exp(np.where(tail, rng.normal(2.5, 0.3, n_good), rng.normal(3.0, 0.2, n_good)))
    return good, np.exp(rng.normal(1.5, 0.4, n_junk))


@pytest.mark.parametrize("seed", range(5))
def test_half_the_modal_z_separates_good_from_junk(seed):
    good, junk = _sets(seed)
    fit = refinement_threshold(np.r_[good, junk], n_hypotheses=50_000)
    assert fit.mode_z == pytest.approx(np.exp(3.0), rel=0.1)
    assert fit.value == pytest.approx(0.5 * fit.mode_z)
    assert (good >= fit.value).mean() >= 0.965
    assert (junk < fit.value).mean() >= 0.95
    alone = refinement_threshold(good, n_hypotheses=50_000)  # no junk: the same rule, the same loss
    assert alone.value == pytest.approx(fit.value, rel=0.05)


def test_noise_floor_is_the_median_maximum_of_normal_noise():
    rng = np.random.default_rng(0)
    maxima = rng.standard_normal((2000, 1000)).max(axis=1)
    assert noise_floor(1000) == pytest.approx(np.median(maxima), abs=0.03)
    assert noise_floor(1) == pytest.approx(0.0, abs=1e-9)
    weak = np.exp(np.random.default_rng(1).normal(1.6, 0.2, 500))  # good particles barely above noise
    fit = refinement_threshold(weak, n_hypotheses=50_000)
    assert fit.value == pytest.approx(noise_floor(50_000)) and "noise floor" in fit.describe()


def test_mode_is_robust_to_much_junk_and_non_finite_values_are_ignored():
    good, junk = _sets(0, 500, 450)
    assert modal_zscore(np.r_[good, junk]) == pytest.approx(np.exp(3.0), rel=0.1)
    z = np.r_[good, junk, np.nan, np.inf, -np.inf]
    assert refinement_threshold(z).value == pytest.approx(refinement_threshold(np.r_[good, junk]).value)
    with pytest.raises(InputError):
        refinement_threshold(np.array([np.nan]))
