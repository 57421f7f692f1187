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

from relion_cryopares.data import (ParticleDataset, PreprocessConfig, SimulationConfig, read_particle_star,
                                   read_volume, simulate_junk)
from relion_cryopares.geometry import so3_grid_resolution_deg, symmetry_matrices
from relion_cryopares.model import ModelConfig, PoseModel
from relion_cryopares.pruning import DirectionalNormaliser, auroc, threshold_from_junk
from relion_cryopares.training import HalfTrainer, TrainingConfig, evaluate, maybe_in_memory, split_half
from tests.training.conftest import SNR

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
    if symmetry == "C1":
        _check_pruning(result.model, val, project, tmp_path)


def _check_pruning(model, val, project, tmp_path):
    """Pure-noise junk (same CTFs and noise level as the good particles) gets lower directional
    z-scores than the good validation particles. (Projections of a wrong map are separated only
    with outlier exposure in training: tests/jobs/test_infer.py.)"""
    vol, px = read_volume(project / "reference.mrc")
    cfg = SimulationConfig(n_particles=200, snr=SNR, seed=3, max_shift_angstrom=5.0)
    junk_star = simulate_junk(torch.from_numpy(vol.copy()), px, cfg, tmp_path / "junk", noise_fraction=1.0,
                              project_dir=project)
    junk = ParticleDataset(junk_star, None, PRE, finish=True)

    def run(ds):
        batches = [ds[np.arange(i, min(i + 64, len(ds)))] for i in range(0, len(ds), 64)]
        return evaluate(model, batches, None, torch.device("cpu"))

    good, bad = run(val), run(junk)
    norm = DirectionalNormaliser.fit(good.scores, good.matrices)
    z_good, z_bad = norm.zscore(good.scores, good.matrices), norm.zscore(bad.scores, bad.matrices)
    area = auroc(z_good, z_bad)
    t = threshold_from_junk(z_good, z_bad)
    kept, rejected = float((z_good >= t).float().mean()), float((z_bad < t).float().mean())
    print(f"pruning (noise junk): AUROC {area:.3f}; threshold z {t:.2f} keeps {kept:.1%} of good, "
          f"rejects {rejected:.1%} of junk")
    # the kept/rejected fractions of a threshold (with outlier exposure, on unseen junk and another
    # protein) are checked end to end in tests/jobs/test_infer.py; this 14-epoch model is at the edge
    # of convergence and its Youden split varies between runs (kept 78-90 % here)
    assert area > 0.85
