"""Simulated particles with known poses: the ground truth of every test, the demo and benchmarks.

Projections of a map at random (or given) poses and shifts, multiplied by a per-particle CTF, with
white Gaussian noise at a chosen SNR, written as a RELION 3.1 particle STAR file plus ``.mrcs``
stacks (streaming: memory is bounded by one stack). The true poses are the STAR's own
``rlnAngleRot/Tilt/Psi`` and ``rlnOriginXAngst/YAngst``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relion_cryopares.ctf import CtfParameters, compute_ctf
from relion_cryopares.fourier import Projector
from relion_cryopares.geometry import euler_to_matrix, matrix_to_euler

from ._stacks import write_stack
from ._star import ParticleStar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Noise: ``sigma² = mean variance of the clean CTF-modulated projections
    (whole box) / snr``; ``snr=None`` gives noise-free images."""

    n_particles: int
    snr: float | None = 0.1
    defocus_min_angstrom: float = 8000.0
    defocus_max_angstrom: float = 25000.0
    astigmatism_max_angstrom: float = 500.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor_angstrom2: float = 0.0
    max_shift_angstrom: float = 0.0
    particles_per_stack: int = 500
    seed: int = 0
    ctf: bool = True


def uniform_random_angles(n: int, generator: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` RELION Euler angles (degrees) of rotations uniform on SO(3)."""
    q = generator.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    m = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
    return matrix_to_euler(torch.from_numpy(m)).numpy()


def _ctf_table(cfg: SimulationConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mean = rng.uniform(cfg.defocus_min_angstrom, cfg.defocus_max_angstrom, n)
    astig = rng.uniform(0, cfg.astigmatism_max_angstrom, n)
    return {"rlnDefocusU": mean + astig / 2, "rlnDefocusV": mean - astig / 2,
            "rlnDefocusAngle": rng.uniform(-180, 180, n), "rlnPhaseShift": np.zeros(n),
            "rlnCtfBfactor": np.full(n, cfg.bfactor_angstrom2), "rlnCtfScalefactor": np.ones(n)}


def optics_table(pixel_size_angstrom: float, box: int, voltage_kv: float = 300.0,
                 spherical_aberration_mm: float = 2.7, amplitude_contrast: float = 0.1
                 ) -> pd.DataFrame:
    """A one-group RELION 3.1 ``data_optics`` table."""
    return pd.DataFrame({
        "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
        "rlnVoltage": [voltage_kv], "rlnSphericalAberration": [spherical_aberration_mm],
        "rlnAmplitudeContrast": [amplitude_contrast], "rlnImagePixelSize": [pixel_size_angstrom],
        "rlnImageSize": [box], "rlnImageDimensionality": [2]})


def simulate_particles(volume: torch.Tensor, pixel_size_angstrom: float, cfg: SimulationConfig,
                       out_dir: str | Path, stem: str = "particles",
                       angles_deg: np.ndarray | None = None,
                       project_dir: str | Path = ".", batch_size: int = 256) -> ParticleStar:
    """Simulate ``cfg.n_particles`` particles of ``volume`` ``(n, n, n)`` and write their stacks.

    Parameters
    ----------
    volume: the map (its box is the particles' box), pixel size ``pixel_size_angstrom``.
    out_dir: where ``{stem}_{k:04d}.mrcs`` stacks go (created).
    angles_deg: ``(n_particles, 3)`` poses to use; uniform random when None.
    project_dir: ``rlnImageName`` paths are written relative to it (RELION's project directory).

    Returns the particle table (not yet written: see ``write_particle_star``).
    """
    rng = np.random.default_rng(cfg.seed)
    n, box = cfg.n_particles, int(volume.shape[-1])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    angles = uniform_random_angles(n, rng) if angles_deg is None else np.asarray(angles_deg, float)
    shifts = rng.uniform(-1, 1, (n, 2)) * cfg.max_shift_angstrom
    ctf_cols = _ctf_table(cfg, n, rng)
    projector = Projector(volume.to(torch.float32))
    noise_rng = torch.Generator().manual_seed(cfg.seed + 1)
    sigma = None
    names, micrographs = [], []
    rel_dir = Path(os.path.relpath(out_dir.resolve(), Path(project_dir).resolve()))
    for s0 in range(0, n, cfg.particles_per_stack):
        s1 = min(n, s0 + cfg.particles_per_stack)
        stack = []
        for b0 in range(s0, s1, batch_size):
            b1 = min(s1, b0 + batch_size)
            a = euler_to_matrix(torch.from_numpy(angles[b0:b1]))
            ctf = None
            if cfg.ctf:
                ctf = compute_ctf(_params(ctf_cols, b0, b1, cfg, pixel_size_angstrom), box,
                                  fftshift=True)
            clean = projector.project(a, torch.from_numpy(-shifts[b0:b1] / pixel_size_angstrom), ctf)
            if cfg.snr is not None:
                if sigma is None:  # fixed for the whole set, from the first batch
                    sigma = float(clean.var(dim=(-2, -1)).mean().sqrt()) / cfg.snr ** 0.5
                clean = clean + sigma * torch.randn(clean.shape, generator=noise_rng)
            stack.append(clean.numpy())
        stack_name = f"{stem}_{s0 // cfg.particles_per_stack:04d}.mrcs"
        write_stack(out_dir / stack_name, np.concatenate(stack), pixel_size_angstrom)
        names += [f"{i - s0 + 1:06d}@{rel_dir / stack_name}" for i in range(s0, s1)]
        micrographs += [str(rel_dir / f"{stem}_{s0 // cfg.particles_per_stack:04d}.mrc")] * (s1 - s0)
    particles = pd.DataFrame({
        "rlnImageName": names, "rlnMicrographName": micrographs,
        "rlnCoordinateX": rng.uniform(box, 4000, n).round(1),
        "rlnCoordinateY": rng.uniform(box, 4000, n).round(1),
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": shifts[:, 0], "rlnOriginYAngst": shifts[:, 1],
        **ctf_cols, "rlnOpticsGroup": np.ones(n, dtype=int),
        "rlnRandomSubset": (np.arange(n) % 2 + 1).astype(int),
        "rlnClassNumber": np.ones(n, dtype=int), "rlnMaxValueProbDistribution": np.ones(n)})
    optics = optics_table(pixel_size_angstrom, box, cfg.voltage_kv, cfg.spherical_aberration_mm,
                          cfg.amplitude_contrast)
    log.info("simulated %d particles (box %d, %.3f A/px, SNR %s) in %s", n, box,
             pixel_size_angstrom, cfg.snr, out_dir)
    return ParticleStar(optics=optics, particles=particles)


def _params(cols: dict[str, np.ndarray], b0: int, b1: int, cfg: SimulationConfig,
            pixel_size_angstrom: float) -> CtfParameters:
    t = {k: torch.from_numpy(np.asarray(v[b0:b1], dtype=np.float64)) for k, v in cols.items()}
    m = b1 - b0

    def full(x: float) -> torch.Tensor:
        return torch.full((m,), float(x), dtype=torch.float64)

    return CtfParameters(
        defocus_u_angstrom=t["rlnDefocusU"], defocus_v_angstrom=t["rlnDefocusV"],
        defocus_angle_deg=t["rlnDefocusAngle"], voltage_kv=full(cfg.voltage_kv),
        spherical_aberration_mm=full(cfg.spherical_aberration_mm),
        amplitude_contrast=full(cfg.amplitude_contrast), phase_shift_deg=t["rlnPhaseShift"],
        bfactor_angstrom2=t["rlnCtfBfactor"], scale=t["rlnCtfScalefactor"],
        pixel_size_angstrom=full(pixel_size_angstrom))
