"""Shared fixtures: the shared test data, the shipped demo map, RELION availability."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import relion_cryopares  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``shared/data`` beside the checkout (or ``$CRYOPARES_SHARED_DATA``, or /work/shared/data)."""
    env = os.environ.get("CRYOPARES_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data",
                                                REPO / "shared" / "data", Path("/work/shared/data")]:
        if cand.is_dir():
            return cand
    return None


def has_relion() -> bool:
    return shutil.which("relion_reconstruct") is not None


needs_relion = pytest.mark.skipif(not has_relion(), reason="RELION binaries not on PATH")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data not available")
    return d


@pytest.fixture(scope="session")
def test_map() -> tuple[torch.Tensor, float]:
    """The shipped demo map (EMD-1832, 64^3 at 5.7 A): ``(volume, pixel_size_angstrom)``."""
    from relion_cryopares.data import read_volume

    vol, px = read_volume(REPO / "relion_cryopares" / "assets" / "emd_1832.map")
    return torch.from_numpy(np.ascontiguousarray(vol)), float(px)
