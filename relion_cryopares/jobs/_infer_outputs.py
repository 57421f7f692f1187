"""The outputs of cryopares_infer, rebuilt from the input STAR and all stored results every run.

``particles.star`` (kept) and ``rejected.star`` carry every input column plus:

- ``rlnAngleRot/Tilt/Psi``: the network's pose (the probability-weighted mean around the best grid
  rotation, canonical symmetry mate). ``rlnOriginXAngst/YAngst`` are the input's: the network does
  not estimate shifts.
- ``rlnParticleFigureOfMerit``: the network's probability of that pose.
- ``rlnCryoparesScore``: the pruning score (sum of the 10 largest pose probabilities);
  ``rlnCryoparesZscore``: its robust z-score against the half model's validation particles seen
  from the same direction. A particle is kept when ``z >= threshold`` of its half model.
- with ``--top_k K > 1``: ``rlnCryoparesTop<k>AngleRot/Tilt/Psi`` and ``rlnCryoparesTop<k>Probability``
  for ``k = 2..K``: the grid rotations of the next most probable poses (symmetry folded) and their
  probabilities.

``rejected.star`` also has ``rlnCryoparesRejectReason``: ``network`` (z-score below the threshold)
or ``bad_image`` (NaN/Inf pixels, a constant image or background: never seen by the network; its
pose columns keep the input's values, 0 where it has none, and its probability, score and
z-score are 0). ``particles.star`` has no such column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from relion_cryopares.data import BAD_IMAGE, ParticleStar, write_particle_star
from relion_cryopares.relion import atomic_path, atomic_write

STAR_COMMENT = ("# cryopares_infer: rlnAngleRot/Tilt/Psi predicted by the network; rlnOriginXAngst/YAngst "
                "are the input's (the network does not estimate shifts)\n")


#: Column of ``rejected.star`` saying why a particle was rejected: :data:`NETWORK` or ``bad_image``.
REASON_COLUMN = "rlnCryoparesRejectReason"
#: Rejected by the network's pruning (z-score below the threshold of its half model).
NETWORK = "network"


def top_k_columns(k: int) -> tuple[str, str, str]:
    """The Euler-angle columns of the network's ``k``-th pose (k >= 2)."""
    return tuple(f"rlnCryoparesTop{k}Angle{a}" for a in ("Rot", "Tilt", "Psi"))


def result_columns(results: dict[str, np.ndarray], index: np.ndarray, top_k: int) -> dict[str, np.ndarray]:
    """STAR columns from ``results`` rows ``index`` (one per particle)."""
    ang = results["angles_deg"][index]
    cols = {"rlnAngleRot": ang[:, 0], "rlnAngleTilt": ang[:, 1], "rlnAnglePsi": ang[:, 2],
            "rlnParticleFigureOfMerit": results["probability"][index].astype(np.float64),
            "rlnCryoparesScore": results["score"][index].astype(np.float64),
            "rlnCryoparesZscore": results["zscore"][index].astype(np.float64)}
    for k in range(2, top_k + 1):
        a = results["topk_angles_deg"][index, k - 2]
        cols.update(zip(top_k_columns(k), (a[:, 0], a[:, 1], a[:, 2])))
        cols[f"rlnCryoparesTop{k}Probability"] = results["topk_probs"][index, k - 2].astype(np.float64)
    return cols


def with_bad_image_poses(star: ParticleStar, columns: dict[str, np.ndarray], bad: np.ndarray
                         ) -> dict[str, np.ndarray]:
    """``columns`` with the input's (finite) angles at the bad images: they have no prediction."""
    out = dict(columns)
    for label in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
        if bad.any() and label in star.particles.columns:
            given = pd.to_numeric(star.particles[label], errors="coerce").to_numpy(dtype=np.float64)
            out[label] = np.where(bad & np.isfinite(given), given, out[label])
    return out


def split_with_reasons(out: ParticleStar, keep: np.ndarray, bad: np.ndarray
                       ) -> tuple[ParticleStar, ParticleStar]:
    """``(kept, rejected)``: the rejected with :data:`REASON_COLUMN` (``bad_image`` where ``bad``,
    else ``network``); the kept without it (also when the input had one)."""
    kept = out.select(keep)
    if REASON_COLUMN in kept.particles.columns:
        kept = ParticleStar(kept.optics, kept.particles.drop(columns=[REASON_COLUMN]), kept.path,
                            kept.other_blocks)
    reason = np.where(bad, BAD_IMAGE, NETWORK)[~keep]
    rejected = out.select(~keep).with_columns(**{REASON_COLUMN: reason.astype(object)})
    return kept, rejected


def log_rejections(log, names: np.ndarray, problems: np.ndarray, keep: np.ndarray, bad: np.ndarray,
                   first: int = 5) -> dict[str, int]:
    """Log how many particles were rejected for each reason and the first bad images with their
    problem; returns the counts by reason."""
    counts = {NETWORK: int((~keep & ~bad).sum()), BAD_IMAGE: int(bad.sum())}
    log.info("rejected: %d by the network (z-score below the threshold, reason %s), %d bad images "
             "(reason %s)", counts[NETWORK], NETWORK, counts[BAD_IMAGE], BAD_IMAGE)
    if counts[BAD_IMAGE]:
        kinds, n = np.unique(problems[bad], return_counts=True)
        rows = np.flatnonzero(bad)[:first]
        log.warning("%d bad images rejected, not predicted (%s); first: %s%s", counts[BAD_IMAGE],
                    ", ".join(f"{c} {k}" for k, c in zip(kinds, n)),
                    "; ".join(f"{names[r]}: {problems[r]}" for r in rows),
                    "; ..." if counts[BAD_IMAGE] > first else "")
    return counts


def match_results(names: np.ndarray, results: dict[str, np.ndarray] | None) -> np.ndarray:
    """Row of ``results`` (unique ``names``) for each of ``names`` (``-1`` where none)."""
    if results is None:
        return np.full(len(names), -1, dtype=np.int64)
    return pd.Index(results["names"]).get_indexer(names)


def write_star_with_comment(path, star: ParticleStar) -> None:
    """``write_particle_star`` with :data:`STAR_COMMENT` as its first line (atomic)."""
    with atomic_path(path) as tmp:
        write_particle_star(tmp, star)
        body = tmp.read_bytes()
        with open(tmp, "wb") as fh:
            fh.write(STAR_COMMENT.encode() + b"\n" + body)


def write_zscore_histogram(path, zscore: np.ndarray, halves: np.ndarray, keep: np.ndarray,
                           thresholds: dict[int, float | None]) -> None:
    """Histogram of the z-scores of kept and rejected particles with the threshold(s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = np.asarray(zscore, dtype=np.float64)
    finite = np.isfinite(z)
    lo, hi = (np.percentile(z[finite], [0.5, 99.5]) if finite.any() else (-5.0, 5.0))
    bins = np.linspace(min(lo, -5.0), max(hi, 3.0), 81)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    zc = np.clip(z, bins[0], bins[-1])
    ax.hist(zc[keep], bins=bins, color="tab:blue", alpha=0.75, label=f"kept ({int(keep.sum())})")
    ax.hist(zc[~keep], bins=bins, color="tab:red", alpha=0.75, label=f"rejected ({int((~keep).sum())})")
    styles = {1: "-", 2: "--"}
    for half, thr in thresholds.items():
        if thr is not None and np.isfinite(thr):
            ax.axvline(thr, color="k", ls=styles.get(half, ":"), lw=1.2,
                       label=f"threshold half {half}: {thr:.2f}")
    ax.set_xlabel("directional robust z-score of the pruning score")
    ax.set_ylabel("particles")
    ax.set_title("cryopares_infer: pruning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def write_angular_distribution(path, angles_deg: np.ndarray) -> None:
    """Counts of the kept particles' viewing directions (rot, tilt) on a Mollweide map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rot = np.deg2rad(((angles_deg[:, 0] + 180.0) % 360.0) - 180.0) if len(angles_deg) else np.zeros(0)
    lat = np.deg2rad(90.0 - angles_deg[:, 1]) if len(angles_deg) else np.zeros(0)
    rows = int(np.clip(round(np.sqrt(len(angles_deg) / 8.0)), 12, 90))  # ~4+ particles per cell on average
    lon_edges = np.linspace(-np.pi, np.pi, 2 * rows + 1)
    lat_edges = np.arcsin(np.linspace(-1.0, 1.0, rows + 1))  # equal-area cells
    counts, _, _ = np.histogram2d(rot, lat, bins=[lon_edges, lat_edges])
    fig = plt.figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot(111, projection="mollweide")
    mesh = ax.pcolormesh(lon_edges, lat_edges, counts.T, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, orientation="horizontal", fraction=0.05, pad=0.08,
                 label="kept particles per cell (equal area)")
    ax.set_title(f"viewing directions of {len(angles_deg)} kept particles "
                 "(longitude rlnAngleRot, latitude 90 - rlnAngleTilt)", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.set_xticklabels([])
    ax.tick_params(labelsize=7)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
