"""Simulated training sets: the shipped map (C1) and its D2-symmetrised version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import affine_transform

from relion_cryopares.data import SimulationConfig, simulate_particles, write_particle_star, write_volume
from relion_cryopares.geometry import symmetry_matrices

#: Accuracy-test data: SNR 1 (noise variance = mean variance of the CTF-modulated projections),
#: defocus 0.8-2.5 um, shifts up to 5 A, 2000 particles, box 64 at 5.7 A/px.
N_PARTICLES = 2000
SNR = 1.0


def symmetrise(volume: torch.Tensor, symmetry: str) -> torch.Tensor:
    """The average of ``volume`` ``(n, n, n)`` (zyx) over the operators ``L`` of ``symmetry``:
    ``V_sym(r) = mean_L V(L r)`` about the centre voxel ``n // 2``; trilinear."""
    vol = volume.numpy()
    n = vol.shape[0]
    centre = np.full(3, n // 2, dtype=np.float64)
    flip = np.eye(3)[::-1]  # xyz <-> zyx
    out = np.zeros_like(vol)
    ops = symmetry_matrices(symmetry).numpy()
    for op in ops:
        m = flip @ op @ flip
        out += affine_transform(vol, m, offset=centre - m @ centre, order=1)
    return torch.from_numpy(out / len(ops))


def make_training_project(root: Path, volume: torch.Tensor, pixel_size: float, n: int = N_PARTICLES,
                          snr: float = SNR, seed: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "default_pipeline.star").write_text(
        "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n")
    cfg = SimulationConfig(n_particles=n, snr=snr, seed=seed, max_shift_angstrom=5.0, particles_per_stack=500)
    star = simulate_particles(volume, pixel_size, cfg, root / "Import" / "job001" / "Particles", project_dir=root)
    write_particle_star(root / "Import" / "job001" / "particles.star", star)
    write_volume(root / "reference.mrc", volume.numpy(), pixel_size)
    return root


@pytest.fixture(scope="session")
def c1_project(tmp_path_factory, test_map) -> Path:
    vol, px = test_map
    return make_training_project(tmp_path_factory.mktemp("c1") / "project", vol.clone(), px)


@pytest.fixture(scope="session")
def d2_project(tmp_path_factory, test_map) -> Path:
    vol, px = test_map
    return make_training_project(tmp_path_factory.mktemp("d2") / "project", symmetrise(vol.clone(), "D2"), px,
                                 seed=5)
