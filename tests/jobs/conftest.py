"""Fixtures for job tests: a RELION project with simulated particles of the shipped map."""

from __future__ import annotations

from pathlib import Path

import pytest

from relion_cryopares.data import (SimulationConfig, simulate_particles, write_particle_star,
                                   write_volume)
from tests.relion_project import make_project


def simulated_project(root: Path, test_map, n: int = 600, snr: float | None = 0.5,
                      seed: int = 11, max_shift_angstrom: float = 8.0) -> Path:
    """A RELION project with ``Import/job001/particles.star`` (+ stacks) and ``truth.mrc``."""
    vol, px = test_map
    project = make_project(root)
    cfg = SimulationConfig(n_particles=n, snr=snr, seed=seed, max_shift_angstrom=max_shift_angstrom,
                           particles_per_stack=200)
    star = simulate_particles(vol, px, cfg, project / "Import" / "job001" / "Particles",
                              project_dir=project)
    write_particle_star(project / "Import" / "job001" / "particles.star", star)
    write_volume(project / "truth.mrc", vol.numpy(), px)
    return project


@pytest.fixture
def sim_project(tmp_path, test_map) -> Path:
    return simulated_project(tmp_path / "project", test_map)
