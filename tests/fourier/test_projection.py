"""Projection: our projector against torch-fourier-slice's and against relion_project."""

from __future__ import annotations

import subprocess

import numpy as np
import torch
from torch_fourier_slice import project_3d_to_2d

from relion_cryopares.data import (ImageStackReader, SimulationConfig, read_particle_star,
                                   simulate_particles, write_particle_star, write_volume)
from relion_cryopares.fourier import Projector
from relion_cryopares.geometry import euler_to_matrix
from tests.conftest import needs_relion


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_projector_matches_torch_fourier_slice(test_map):
    vol, _ = test_map
    angles = torch.tensor([[30.0, 50.0, 70.0], [0.0, 0.0, 0.0], [100.0, 90.0, -20.0]])
    a = euler_to_matrix(angles)
    ours = Projector(vol).project(a)
    theirs = project_3d_to_2d(vol, a.transpose(-1, -2), pad_factor=2.0)
    for i in range(3):
        assert _corr(ours[i].numpy(), theirs[i].numpy()) > 0.999


def test_identity_projection_is_sum_along_z(test_map):
    vol, _ = test_map
    proj = Projector(vol).project(torch.eye(3)[None])[0]
    assert _corr(proj.numpy(), vol.sum(0).numpy()) > 0.998


def test_shift_moves_content_by_plus_shift(test_map):
    vol, _ = test_map
    p = Projector(vol)
    a = torch.eye(3)[None]
    base = p.project(a)[0]
    moved = p.project(a, torch.tensor([[3.0, -2.0]]))[0]  # +3 px in x, -2 px in y
    assert torch.allclose(moved, torch.roll(base, shifts=(-2, 3), dims=(0, 1)), atol=1e-3 * base.abs().max())


@needs_relion
def test_projection_matches_relion_project(test_map, tmp_path):
    """Same STAR (poses, shifts, astigmatic CTF): per-image correlation >= 0.99 with RELION."""
    vol, px = test_map
    cfg = SimulationConfig(n_particles=24, snr=None, max_shift_angstrom=3 * px, seed=3,
                           astigmatism_max_angstrom=3000.0)
    star = simulate_particles(vol, px, cfg, tmp_path / "ours", project_dir=tmp_path)
    write_particle_star(tmp_path / "ours.star", star)
    write_volume(tmp_path / "map.mrc", vol.numpy(), px)
    subprocess.run(["relion_project", "--i", "map.mrc", "--o", "relion", "--ang", "ours.star",
                    "--ctf", "--angpix", str(px)], cwd=tmp_path, check=True, capture_output=True)
    theirs = read_particle_star(tmp_path / "relion.star")
    assert len(theirs) == len(star)
    with ImageStackReader(root=tmp_path) as reader:
        ours_img = star.read_images(reader)
        theirs_img = theirs.read_images(reader)
    corrs = [_corr(o, t) for o, t in zip(ours_img, theirs_img)]
    assert min(corrs) >= 0.99, corrs
