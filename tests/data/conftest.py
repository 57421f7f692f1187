"""Fixtures for the data-layer tests: the shared real data and small synthetic stacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir

@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``shared/data`` next to the repository (real public cryo-EM files); skip if absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared/data (real test data) not found next to the repository")
    return path


@pytest.fixture
def needs_relion():
    """Skip unless RELION's command-line tools are on PATH."""
    if shutil.which("relion_star_handler") is None:
        pytest.skip("RELION binaries not on PATH")
