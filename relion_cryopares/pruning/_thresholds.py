"""Automatic z-score thresholds for pruning (a particle with ``z < threshold`` is junk).

- :func:`threshold_from_junk` (known junk particles given, e.g. a RELION Select job's rejected
  particles): the threshold maximising Youden's J = TPR + TNR - 1, where TPR is the fraction of good
  particles kept (``z >= t``) and TNR the fraction of junk rejected (``z < t``). Maximising J is the
  same as maximising the balanced accuracy ``(TPR + TNR) / 2``, so the result does not depend on how
  many junk particles were given. Ties are broken by the largest margin (midpoint between the two
  neighbouring z values).
- :func:`threshold_from_validation` (no junk given): the ``quantile`` of the validation z-scores
  (default 0.05: keep the top 95 % of the good distribution; about 5 % of good particles are lost,
  every junk particle scoring lower than that is removed).
- :func:`network_threshold`: the first (network) stage's policy in the two-stage pruning. The
  second stage (the local refinement's z-score, :mod:`._refinement`) rejects junk far better
  (AUROC 0.99-1.00 per junk kind against 0.53-0.98 for the network on realistic simulated
  extractions), so the network stage is lenient and must not lose good particles: without known
  junk the 0.5 % validation quantile; with known junk Youden's threshold, but never above the 1 %
  validation quantile.
- :func:`auroc`: probability that a random good particle scores higher than a random junk one
  (ties count half), the Mann-Whitney U statistic.
"""

from __future__ import annotations

import numpy as np
import torch

from relion_cryopares.errors import InputError


def _as_array(x, name: str) -> np.ndarray:
    a = torch.as_tensor(x).detach().cpu().double().reshape(-1).numpy() if isinstance(x, torch.Tensor) \
        else np.asarray(x, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise InputError(f"{name}: no finite z-scores")
    return a


def auroc(z_good, z_junk) -> float:
    """Area under the ROC curve of ``z`` separating good (high) from junk (low) particles."""
    g, j = _as_array(z_good, "good particles"), _as_array(z_junk, "junk particles")
    values = np.concatenate([g, j])
    ranks = _average_ranks(values)
    u = ranks[: g.size].sum() - g.size * (g.size + 1) / 2.0
    return float(u / (g.size * j.size))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_v = values[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_v[1:] != sorted_v[:-1]]))
    ends = np.concatenate([starts[1:], [values.size]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1.0
    return ranks


def threshold_from_junk(z_good, z_junk) -> float:
    """The z threshold maximising Youden's J (= balanced accuracy) between good and junk particles.

    Candidates are the midpoints between consecutive distinct z values (plus values just outside
    the range); a particle is kept when ``z >= threshold``.
    """
    g, j = np.sort(_as_array(z_good, "good particles")), np.sort(_as_array(z_junk, "junk particles"))
    values = np.unique(np.concatenate([g, j]))
    cands = np.concatenate([[values[0] - 1.0], 0.5 * (values[1:] + values[:-1]), [values[-1] + 1.0]])
    kept_good = 1.0 - np.searchsorted(g, cands, side="left") / g.size
    rejected_junk = np.searchsorted(j, cands, side="left") / j.size
    youden = kept_good + rejected_junk - 1.0
    best = np.flatnonzero(youden >= youden.max() - 1e-12)
    # among equally good thresholds take the middle one (widest margin)
    return float(cands[best[len(best) // 2]])


def threshold_from_validation(z_valid, quantile: float = 0.05) -> float:
    """The ``quantile`` of the validation z-scores: keeps ``1 - quantile`` of good particles."""
    if not 0.0 <= quantile < 1.0:
        raise InputError(f"quantile must be in [0, 1), got {quantile}")
    return float(np.quantile(_as_array(z_valid, "validation particles"), quantile))


#: Network stage without known junk: the validation quantile used as the threshold.
NETWORK_QUANTILE = 0.005
#: Network stage with known junk: Youden's threshold is capped at this validation quantile.
NETWORK_MAX_QUANTILE = 0.01


def network_threshold(z_valid, z_junk=None) -> tuple[float, str]:
    """The network stage's threshold and its source (module docstring): from the validation z-scores
    ``z_valid`` alone, or with the z-scores of known junk ``z_junk``."""
    if z_junk is None:
        return threshold_from_validation(z_valid, NETWORK_QUANTILE), f"validation_quantile_{NETWORK_QUANTILE:g}"
    cap = threshold_from_validation(z_valid, NETWORK_MAX_QUANTILE)
    return min(threshold_from_junk(z_valid, z_junk), cap), "junk_particles"


def parse_threshold_choice(text: str, option: str) -> str | float:
    """A job's threshold option (``option`` names it in errors): ``"auto"``, ``"none"`` (also
    ``off``/``no``) or a finite number."""
    word = str(text).strip().lower()
    if word in ("auto", "none"):
        return word
    if word in ("off", "no"):
        return "none"
    try:
        value = float(word)
    except ValueError:
        raise InputError(f"{option} expects auto, none or a number, got {text!r}") from None
    if not np.isfinite(value):
        raise InputError(f"{option} must be finite, got {text!r}")
    return value
