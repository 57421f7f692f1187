"""Scoring results against simulated ground truth (``rlnCryoparesSim*`` columns of the simulators).

Used by the tests, the demo and ``benchmarks/``: angular and shift errors of poses, the fraction of
each simulated kind (good particles and every junk kind) that a selection keeps, and the final
resolution a job wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from relion_cryopares.data import ParticleStar
from relion_cryopares.geometry import euler_to_matrix, geodesic_distance_deg

TRUE_ANGLES = ("rlnCryoparesSimAngleRot", "rlnCryoparesSimAngleTilt", "rlnCryoparesSimAnglePsi")
TRUE_ORIGINS = ("rlnCryoparesSimOriginXAngst", "rlnCryoparesSimOriginYAngst")
KIND = "rlnCryoparesSimKind"


def angular_error_deg(star: ParticleStar, symmetry: torch.Tensor | None = None) -> np.ndarray:
    """``(n,)`` geodesic distance (degrees) between each particle's pose and its true pose, the
    smallest over the symmetry mates when ``symmetry`` ``(G, 3, 3)`` is given."""
    true = euler_to_matrix(torch.from_numpy(np.array(star.particles[list(TRUE_ANGLES)], dtype=np.float64)))
    est = euler_to_matrix(torch.from_numpy(star.angles_deg()))
    return geodesic_distance_deg(est, true, symmetry).numpy()


def shift_error_angstrom(star: ParticleStar) -> np.ndarray:
    """``(n,)`` distance (Å) between each particle's origin and its true origin."""
    true = star.particles[list(TRUE_ORIGINS)].to_numpy(np.float64)
    return np.linalg.norm(star.origins_angstrom() - true, axis=1)


def kinds(star: ParticleStar) -> np.ndarray:
    """``(n,)`` simulated kind of each particle (``"good"`` or a junk kind)."""
    return star.column(KIND).astype(str)


def of_kind(star: ParticleStar, kind: str) -> ParticleStar:
    """The particles of one simulated kind."""
    return star.select(kinds(star) == kind)


def kept_fraction_per_kind(every: ParticleStar, kept: ParticleStar) -> dict[str, tuple[int, float]]:
    """For each kind of ``every`` particle: ``(count, fraction whose rlnImageName is in kept)``."""
    names = set(kept.image_names())
    is_kept = np.array([n in names for n in every.image_names()])
    k = kinds(every)
    return {kind: (int((k == kind).sum()), float(is_kept[k == kind].mean())) for kind in np.unique(k)}


def final_resolution_angstrom(job_dir: str | Path) -> float:
    """``_rlnFinalResolution`` of a job's ``run_fsc.star`` (NaN when absent)."""
    for line in (Path(job_dir) / "run_fsc.star").read_text().splitlines():
        if line.startswith("_rlnFinalResolution"):
            return float(line.split()[1])
    return float("nan")
