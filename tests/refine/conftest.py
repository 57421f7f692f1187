"""Simulated particles shared by the refinement tests (one simulation per session); single-threaded
torch (OpenMP threads spin on busy CI runners and make 2 threads many times slower than 1)."""

from __future__ import annotations

import pytest
import torch

from tests.refine._simulated import Simulated, simulate


@pytest.fixture(scope="session")
def particles(test_map, tmp_path_factory) -> Simulated:
    """160 particles of EMD-1832, box 64 at 5.7 Å, SNR 0.1, starts up to 5° and 3 px off."""
    return simulate(test_map, tmp_path_factory.mktemp("refine_particles"), n=160, seed=7)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
