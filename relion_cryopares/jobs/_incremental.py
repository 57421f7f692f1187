"""Incremental half-map state: the Fourier sums of both half sets plus the names of the particles
they contain, saved together atomically, so a killed or continued job never counts a particle twice
nor loses one that was finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from relion_cryopares.fourier import FourierAccumulator
from relion_cryopares.relion import atomic_path

log = logging.getLogger(__name__)


@dataclass
class HalfMapState:
    """Accumulators of half sets 1 and 2, the particles (``rlnImageName``) inside them (``done``:
    inserted or skipped), the skipped bad images with their problem (``skipped``), and a ``key``
    describing everything that must not change between runs (grid, symmetry, weighting)."""

    key: dict
    box: int
    acc: dict[int, FourierAccumulator] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def new(key: dict, box: int, device: torch.device | str = "cpu") -> "HalfMapState":
        return HalfMapState(key, box, {h: FourierAccumulator(box, device=device) for h in (1, 2)})

    def save(self, path: Path) -> None:
        """Write sums, names and key in one file (temporary file + rename)."""
        state = {"key": self.key, "box": self.box, "done": sorted(self.done), "skipped": dict(self.skipped),
                 "sums1": self.acc[1]._sums.cpu(), "n1": self.acc[1].n_particles,
                 "sums2": self.acc[2]._sums.cpu(), "n2": self.acc[2].n_particles}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @staticmethod
    def load_or_new(path: Path, key: dict, box: int, device: torch.device | str = "cpu"
                    ) -> "HalfMapState":
        """The saved state when it exists and its key matches, else a new one (logged)."""
        if path.exists():
            state = torch.load(path, map_location=device, weights_only=True)
            if state["key"] == key and state["box"] == box:
                out = HalfMapState.new(key, box, device)
                for h in (1, 2):
                    out.acc[h]._sums = state[f"sums{h}"].to(device)
                    out.acc[h].n_particles = float(state[f"n{h}"])
                out.done = set(state["done"])
                out.skipped = dict(state.get("skipped", {}))
                log.info("continuing: %d particles already in the half maps", len(out.done))
                return out
            log.warning("%s was made with other settings (%s); starting the half maps again",
                        path, state["key"])
        return HalfMapState.new(key, box, device)
