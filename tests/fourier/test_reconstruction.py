"""Reconstruction: noise-free round trip, and against relion_reconstruct on RELION's own particles."""

from __future__ import annotations

import subprocess

import numpy as np
import torch

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.data import (ImageStackReader, SimulationConfig, read_particle_star,
                                   read_volume, simulate_particles, write_particle_star,
                                   write_volume)
from relion_cryopares.fourier import FourierAccumulator, Projector, fsc_curve, resolution_at
from relion_cryopares.geometry import euler_to_matrix, random_rotations, symmetry_matrices
from tests.conftest import needs_relion


def _reconstruct_star(star, root, box, px, batch=200, ssnr=None):
    acc = FourierAccumulator(box)
    with ImageStackReader(root=root) as reader:
        for i in range(0, len(star), batch):
            rows = np.arange(i, min(len(star), i + batch))
            imgs = torch.from_numpy(star.read_images(reader, rows))
            ctf = compute_ctf(star.ctf_parameters(rows), acc.ctf_grid_size(), fftshift=True)
            acc.insert(imgs, euler_to_matrix(torch.from_numpy(star.angles_deg()[rows])),
                       torch.from_numpy(star.origins_angstrom()[rows] / px), ctf)
    return acc


def test_noise_free_round_trip_fsc_099(test_map):
    """3000 random poses with shifts, no CTF: FSC against the input >= 0.99 to 0.9 x Nyquist."""
    vol, _ = test_map
    n = 3000
    a = random_rotations(n, generator=torch.Generator().manual_seed(0)).float()
    shifts = (torch.rand(n, 2, generator=torch.Generator().manual_seed(1)) - 0.5) * 6
    proj, acc = Projector(vol), FourierAccumulator(64)
    for i in range(0, n, 250):
        acc.insert(proj.project(a[i:i + 250], -shifts[i:i + 250]), a[i:i + 250], shifts[i:i + 250])
    f = fsc_curve(acc.reconstruct(), vol)
    assert f[: int(0.9 * 32)].min() >= 0.99, f


def test_symmetry_insertion_equals_explicit_mates(test_map):
    """Inserting with D2 equals inserting every image at its four mate poses."""
    vol, _ = test_map
    sym = symmetry_matrices("D2").float()
    a = random_rotations(20, generator=torch.Generator().manual_seed(2)).float()
    imgs = Projector(vol).project(a)
    acc1, acc2 = FourierAccumulator(64), FourierAccumulator(64)
    acc1.insert(imgs, a, symmetry=sym)
    for g in sym:
        acc2.insert(imgs, a @ g)
    assert torch.allclose(acc1.reconstruct(), acc2.reconstruct(), atol=1e-4)


def test_accumulators_add_and_persist(test_map, tmp_path):
    vol, _ = test_map
    a = random_rotations(40, generator=torch.Generator().manual_seed(3)).float()
    imgs = Projector(vol).project(a)
    whole, part1, part2 = FourierAccumulator(64), FourierAccumulator(64), FourierAccumulator(64)
    whole.insert(imgs, a)
    part1.insert(imgs[:25], a[:25])
    part2.insert(imgs[25:], a[25:])
    part1.save(tmp_path / "p1.pt")
    grown = FourierAccumulator.load(tmp_path / "p1.pt")
    grown += part2
    assert grown.n_particles == 40
    assert torch.allclose(grown.reconstruct(), whole.reconstruct(), atol=1e-4)


@needs_relion
def test_against_relion_reconstruct(test_map, tmp_path):
    """Particles made by relion_project (CTF, noise, known angles and shifts), reconstructed by us and
    by relion_reconstruct --ctf: FSC(ours, RELION) >= 0.9 to 0.8 x Nyquist, and our FSC against the
    true map at least as high as RELION's."""
    vol, px = test_map
    write_volume(tmp_path / "truth.mrc", vol.numpy(), px)
    cfg = SimulationConfig(n_particles=2000, snr=None, max_shift_angstrom=2 * px, seed=5)
    poses = simulate_particles(vol, px, cfg, tmp_path / "poses", project_dir=tmp_path)
    write_particle_star(tmp_path / "poses.star", poses)
    sigma = float(vol.sum(0).std()) * 0.5
    subprocess.run(["relion_project", "--i", "truth.mrc", "--o", "relproj", "--ang", "poses.star",
                    "--ctf", "--angpix", str(px), "--add_noise", "--white_noise", f"{sigma:.5f}"],
                   cwd=tmp_path, check=True, capture_output=True)
    subprocess.run(["relion_reconstruct", "--i", "relproj.star", "--o", "relion_rec.mrc", "--ctf",
                    "--angpix", str(px)], cwd=tmp_path, check=True, capture_output=True)
    star = read_particle_star(tmp_path / "relproj.star")
    ours = _reconstruct_star(star, tmp_path, 64, px).reconstruct()
    theirs = torch.from_numpy(read_volume(tmp_path / "relion_rec.mrc")[0].copy())
    nyq = 32
    f_pair = fsc_curve(ours, theirs)
    assert f_pair[: int(0.8 * nyq)].min() >= 0.9, f_pair
    f_ours, f_theirs = fsc_curve(ours, vol), fsc_curve(theirs, vol)
    assert float(f_ours[1:nyq].mean()) >= float(f_theirs[1:nyq].mean()) - 1e-3, (f_ours, f_theirs)
    assert resolution_at(f_ours, 0.5, 64, px) <= resolution_at(f_theirs, 0.5, 64, px) + 0.05
