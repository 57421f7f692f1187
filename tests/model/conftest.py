"""Model tests: a private table cache per session, small configurations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from relion_cryopares.model import ModelConfig


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("RELION_CRYOPARES_CACHE", str(tmp_path_factory.mktemp("table_cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, single-threaded: these tensors are small, and OpenMP threads spinning on a busy
    shared runner made the optimisation test 6x slower."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _micro_config(**overrides) -> ModelConfig:
    """Smaller than "tiny": for optimisation tests on 2 CPU cores."""
    base = dataclasses.replace(
        ModelConfig.preset("tiny"), box=32, unet_widths=(4, 4, 8, 8, 16), unet_decoder_blocks=3,
        sphere_channels=8, s2_channels=8, lmax=4, so3_channels=4, activation_resolution=4,
        so3_filter_steps=3, grid_order=1,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def micro_config():
    """A factory of micro configurations: ``micro_config(**overrides) -> ModelConfig``."""
    return _micro_config
