"""Checkpoints: an abort mid-epoch and a resume give the same model as an uninterrupted run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from relion_cryopares.data import ParticleDataset, PreprocessConfig, read_particle_star
from relion_cryopares.errors import JobAborted
from relion_cryopares.model import ModelConfig, PoseModel
from relion_cryopares.training import (CHECKPOINT_NAME, HalfTrainer, TrainingConfig, load_checkpoint,
                                       maybe_in_memory, split_half)

PRE = PreprocessConfig(box_nnet=32, particle_diameter_angstrom=300.0, angpix_nnet=11.4)
CFG = TrainingConfig.preset("tiny", epochs=2, batch_size=16, n_copies=2, val_batch_size=32)


@pytest.fixture(scope="module")
def small_sets(c1_project):
    import os
    cwd = os.getcwd()
    os.chdir(c1_project)
    try:
        star = read_particle_star("Import/job001/particles.star").select(np.arange(200))
        split = split_half(star, 1, CFG.val_fraction, CFG.min_weight, CFG.seed)
        train = maybe_in_memory(ParticleDataset(star, split.train, PRE, finish=False), PRE, False, 100)
        val = maybe_in_memory(ParticleDataset(star, split.val, PRE, finish=False), PRE, True, 100)
    finally:
        os.chdir(cwd)
    return train, val


def _trainer(sets, workdir, should_abort=lambda: False, cfg=CFG):
    torch.manual_seed(0)
    model = PoseModel(ModelConfig.preset("tiny", box=32))
    return HalfTrainer(model, sets[0], sets[1], cfg, PRE, None, workdir, {"k": 1}, should_abort=should_abort)


def test_abort_mid_epoch_then_resume_matches_uninterrupted(small_sets, tmp_path):
    reference = _trainer(small_sets, tmp_path / "ref").fit()

    calls = {"n": 0}

    def abort_after_three_batches():
        calls["n"] += 1
        return calls["n"] == 3

    with pytest.raises(JobAborted):
        _trainer(small_sets, tmp_path / "run", abort_after_three_batches).fit()
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert state["epoch"] == 0 and state["step"] == 3 and not state["curves"]["epoch"]

    resumed_trainer = _trainer(small_sets, tmp_path / "run")
    resumed = resumed_trainer.fit()
    assert resumed_trainer.resumed_from == 0 and resumed.curves["epoch"] == [1, 2]
    for key in ("train_loss", "val_loss", "val_median_error_deg"):
        assert np.allclose(resumed.curves[key], reference.curves[key], rtol=1e-4, atol=1e-4), key
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_finished_run_is_not_repeated_and_other_key_restarts(small_sets, tmp_path):
    first = _trainer(small_sets, tmp_path / "w").fit()
    again = _trainer(small_sets, tmp_path / "w")
    result = again.fit()
    assert again.resumed_from == 2 and result.curves["epoch"] == first.curves["epoch"]
    longer = _trainer(small_sets, tmp_path / "w", cfg=dataclasses.replace(CFG, epochs=3))
    assert longer.fit().curves["epoch"] == [1, 2, 3] and longer.resumed_from == 2
    torch.manual_seed(0)
    other = HalfTrainer(PoseModel(ModelConfig.preset("tiny", box=32)), small_sets[0], small_sets[1], CFG, PRE,
                        None, tmp_path / "w", {"k": 2})
    other.fit()
    assert other.resumed_from == 0
