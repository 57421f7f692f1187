"""Simulated particles with known poses for the refinement tests (the shipped EMD-1832 map).

Box 64 at 5.7 Å (Nyquist 11.4 Å), CTF (defocus 0.8-2.5 µm), white noise at SNR 0.1 over the box.
The starting poses are the true ones turned by a random rotation of up to ``max_angle_deg`` about
a random axis; the starting origins are the true ones moved by up to ``max_shift_px`` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.data import (ImageStackReader, ParticleStar, SimulationConfig, simulate_particles,
                                   write_particle_star)
from relion_cryopares.geometry import euler_to_matrix, matrix_to_euler
from relion_cryopares.refine import rotation_vector_to_matrix

SNR = 0.1


@dataclass
class Simulated:
    star: ParticleStar  # true poses
    start: ParticleStar  # perturbed poses and origins
    images: torch.Tensor  # (n, box, box)
    ctf: torch.Tensor  # (n, box, box//2+1) centred rfft layout
    true_poses: torch.Tensor  # (n, 3, 3) float64
    start_poses: torch.Tensor
    true_origins_px: torch.Tensor  # (n, 2)
    start_origins_px: torch.Tensor
    pixel_size_angstrom: float


def perturb(star: ParticleStar, seed: int, max_angle_deg: float = 5.0, max_shift_px: float = 3.0
            ) -> ParticleStar:
    """``star`` with poses turned by up to ``max_angle_deg`` and origins moved by up to ``max_shift_px``."""
    n = len(star)
    rng = np.random.default_rng(seed)
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0.0, max_angle_deg, n)
    true = euler_to_matrix(torch.from_numpy(star.angles_deg()))
    start = rotation_vector_to_matrix(torch.from_numpy(axis * angle[:, None])) @ true
    angles = matrix_to_euler(start).numpy()
    phi, mag = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, max_shift_px, n)
    px = float(star.pixel_size_angstrom()[0])
    origins = star.origins_angstrom() + px * np.stack([mag * np.cos(phi), mag * np.sin(phi)], axis=1)
    return star.with_columns(rlnAngleRot=angles[:, 0], rlnAngleTilt=angles[:, 1], rlnAnglePsi=angles[:, 2],
                             rlnOriginXAngst=origins[:, 0], rlnOriginYAngst=origins[:, 1])


def simulate(test_map, root: Path, n: int, seed: int = 7, snr: float | None = SNR,
             volume: torch.Tensor | None = None, max_angle_deg: float = 5.0, max_shift_px: float = 3.0,
             max_true_shift_px: float = 2.0) -> Simulated:
    """Simulate ``n`` particles of the map (or ``volume``) under ``root`` (the project directory)."""
    vol, px = test_map
    vol = vol if volume is None else volume
    cfg = SimulationConfig(n_particles=n, snr=snr, seed=seed, max_shift_angstrom=max_true_shift_px * px)
    star = simulate_particles(vol, px, cfg, root / "Sim", project_dir=root)
    write_particle_star(root / "truth.star", star)
    start = perturb(star, seed + 1000, max_angle_deg, max_shift_px)
    write_particle_star(root / "start.star", start)
    with ImageStackReader(root=root) as reader:
        images = torch.from_numpy(star.read_images(reader))
    ctf = compute_ctf(star.ctf_parameters(), vol.shape[-1], fftshift=True)
    return Simulated(star, start, images, ctf, euler_to_matrix(torch.from_numpy(star.angles_deg())),
                     euler_to_matrix(torch.from_numpy(start.angles_deg())),
                     torch.from_numpy(star.origins_angstrom() / px), torch.from_numpy(start.origins_angstrom() / px),
                     px)
