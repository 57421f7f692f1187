"""A tiny model trained on simulated particles (known poses, CTF, noise) learns their poses.

Data (conftest): 2000 particles of the shipped map (C1) or of its D2-symmetrised version, SNR 1,
defocus 0.8-2.5 um, shifts up to 5 A; all in one half set, so one model trains on 1400 and is
validated on 600. Network input 32 px at 11.4 A/px; the tiny preset (grid order 2: 15 degree
steps), 14 epochs (C1) or 10 (D2, which learns faster). Pass: validation median geodesic error (with symmetry) below 2 grid steps
(30 degrees); chance is ~126 degrees for C1 and ~78 degrees for D2 (the first epoch's numbers).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from relion_cryopares.data import ParticleDataset, PreprocessConfig, read_particle_star
from relion_cryopares.geometry import so3_grid_resolution_deg, symmetry_matrices
from relion_cryopares.model import ModelConfig, PoseModel
from relion_cryopares.training import HalfTrainer, TrainingConfig, maybe_in_memory, split_half

log = logging.getLogger(__name__)

PRE = PreprocessConfig(box_nnet=32, particle_diameter_angstrom=300.0, angpix_nnet=11.4)
EPOCHS = {"C1": 14, "D2": 10}


@pytest.mark.slow
@pytest.mark.parametrize("project_name, symmetry", [("c1_project", "C1"), ("d2_project", "D2")])
def test_tiny_model_learns_poses(request, project_name, symmetry, tmp_path, monkeypatch):
    project = request.getfixturevalue(project_name)
    monkeypatch.chdir(project)
    star = read_particle_star("Import/job001/particles.star")
    star = star.with_columns(rlnRandomSubset=np.ones(len(star), dtype=int))
    cfg = TrainingConfig.preset("tiny", epochs=EPOCHS[symmetry])
    split = split_half(star, 1, cfg.val_fraction, cfg.min_weight, cfg.seed)
    train = maybe_in_memory(ParticleDataset(star, split.train, PRE, finish=False), PRE, False, 512)
    val = maybe_in_memory(ParticleDataset(star, split.val, PRE, finish=False), PRE, True, 512)
    torch.manual_seed(0)
    model = PoseModel(ModelConfig.preset("tiny", box=PRE.box_nnet))
    result = HalfTrainer(model, train, val, cfg, PRE, symmetry_matrices(symmetry), tmp_path / "train",
                         {"test": symmetry}).fit()
    step = so3_grid_resolution_deg(model.config.grid_order)
    errors = result.curves["val_median_error_deg"]
    print(f"{symmetry}: validation median error per epoch {np.round(errors, 1).tolist()} "
          f"(grid step {step} deg)")
    assert errors[0] > 60.0  # an untrained model is at chance
    assert result.best_median_error_deg < 2 * step
    assert result.curves["train_loss"][-1] < result.curves["train_loss"][0] - 2.0
