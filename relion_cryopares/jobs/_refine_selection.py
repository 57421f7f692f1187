"""The second pruning stage of cryopares_localrefine: which refined particles are kept, and why not.

Every refined particle's chunk record carries ``rlnCryoparesRejectReason``: ``none`` (kept),
``refinement`` (its refinement z-score, ``rlnCryoparesRefineZscore``, is below the stage's
threshold: it does not match the reference) or ``bad_image`` (NaN/Inf pixels, a constant image or
background: never refined). Kept particles go to ``run_data.star`` and into the half maps; the rest
go to ``rejected.star`` with their reason.

The threshold (``--refine_zscore_thr``): ``auto`` fits it once (2.75 widths of the good mode below the
modal z-score of the particles, at least the z that pure noise reaches: :func:`relion_cryopares.pruning.refinement_threshold`)
on the first refined chunk of the job and
stores it in the job's state, so that every later particle (a continue, an on-the-fly Scheme pass)
is judged by the same rule and the half-map sums never need to be recomputed; ``none`` keeps every
refined particle; a number is used as it is.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from relion_cryopares.data import BAD_IMAGE, ParticleStar
from relion_cryopares.pruning import parse_threshold_choice, refinement_threshold

REASON_COLUMN = "rlnCryoparesRejectReason"
KEPT = "none"
REFINEMENT = "refinement"
ZSCORE_COLUMN = "rlnCryoparesRefineZscore"
INFER_SUMMARY = "cryopares_infer_summary.json"

log = logging.getLogger(__name__)


def parse_refine_threshold(text: str) -> str | float:
    """``--refine_zscore_thr``: ``"auto"``, ``"none"`` or a finite number."""
    return parse_threshold_choice(text, "--refine_zscore_thr")


def resolve_threshold(choice: str | float, state: dict, zscores: np.ndarray, n_hypotheses: int) -> tuple[dict, bool]:
    """The stage's threshold record ``{"value", "source", ...}`` and whether it is new (to be stored).

    A stored record (from an earlier chunk or run) always wins; otherwise ``auto`` fits one on the
    finite ``zscores`` of the chunk at hand."""
    stored = state.get("refine_threshold")
    if stored is not None:
        return stored, False
    if choice == "none":
        return {"value": -math.inf, "source": "none: every refined particle kept"}, True
    if choice != "auto":
        return {"value": float(choice), "source": "--refine_zscore_thr"}, True
    finite = zscores[np.isfinite(zscores)]
    if finite.size == 0:  # nothing refined in this chunk (all bad images): fit on a later one
        return {"value": -math.inf, "source": "not fitted yet"}, False
    fit = refinement_threshold(finite, n_hypotheses)
    return {"value": fit.value, "source": fit.describe(), "fit": fit.to_dict()}, True


def reasons(zscores: np.ndarray, bad: np.ndarray, threshold: float) -> np.ndarray:
    """``(n,)`` reason strings: bad image, below the refinement threshold, or kept."""
    z = np.asarray(zscores, dtype=np.float64)
    out = np.where(np.isfinite(z) & (z >= threshold), KEPT, REFINEMENT).astype(object)
    out[np.asarray(bad, dtype=bool)] = BAD_IMAGE
    return out


def kept_mask(star: ParticleStar) -> np.ndarray:
    """``(n,)`` True for the records' kept particles (records without a reason: kept)."""
    if REASON_COLUMN not in star.particles.columns:
        return np.ones(len(star), dtype=bool)
    return star.particles[REASON_COLUMN].astype(str).to_numpy() == KEPT


def split_outputs(done: ParticleStar) -> tuple[ParticleStar, ParticleStar]:
    """``(kept, rejected)``: the kept particles without the reason column, the rejected with it."""
    keep = kept_mask(done)
    kept = done.select(keep)
    if REASON_COLUMN in kept.particles.columns:
        kept = ParticleStar(kept.optics, kept.particles.drop(columns=[REASON_COLUMN]), kept.path,
                            kept.other_blocks)
    return kept, done.select(~keep)


def infer_summary(in_parts: Path) -> dict | None:
    """The ``cryopares_infer`` summary next to the input particles (the network stage), if any."""
    path = Path(in_parts).parent / INFER_SUMMARY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_particle_diameter(summary: dict | None) -> float | None:
    """The particle diameter (Å) of the model that ``cryopares_infer`` used, where it is known."""
    if not summary or not summary.get("model"):
        return None
    try:
        from relion_cryopares.jobs._modeldir import read_model_dir_info

        value = float(read_model_dir_info(summary["model"])["preprocess"]["particle_diameter_angstrom"])
    except Exception:  # the model directory moved or is unreadable: fall back to the default
        return None
    return value if value > 0 else None


def log_stages(log_: logging.Logger, summary: dict | None, done: ParticleStar, threshold: dict | None) -> dict:
    """One ``run.out`` line per pruning stage; returns the counts."""
    r = (done.particles[REASON_COLUMN].astype(str).to_numpy() if REASON_COLUMN in done.particles.columns
         else np.full(len(done), KEPT))
    counts = {"refined": int(len(done)), "kept": int((r == KEPT).sum()),
              "rejected_refinement": int((r == REFINEMENT).sum()), "rejected_bad_image": int((r == BAD_IMAGE).sum())}
    if summary and "kept" in summary:
        log_.info("stage 1 (network, %s): %d of %d particles kept, %d rejected", summary.get("model", "?"),
                  summary["kept"], summary.get("particles", summary["kept"]), summary.get("rejected", 0))
        counts["network"] = {k: summary.get(k) for k in ("particles", "kept", "rejected")}
    thr = "not set" if threshold is None else f"{threshold['value']:.3f} ({threshold['source']})"
    log_.info("stage 2 (refinement z-score >= %s): %d of %d kept, %d rejected; bad images: %d rejected",
              thr, counts["kept"], counts["refined"], counts["rejected_refinement"], counts["rejected_bad_image"])
    return counts
