"""Known junk in training: the hashed exposure/hold-out split and the uniform-KL loss. Its effect
on pruning (AUROC against another protein 0.81 without, 0.99 with) is measured end to end in
tests/jobs/test_infer.py; the trainer's junk batches run there and in test_trainer_takes_junk."""

from __future__ import annotations

import math

import numpy as np
import torch

from relion_cryopares.data import PreprocessConfig
from relion_cryopares.model import ModelConfig, PoseModel, uniform_kl
from relion_cryopares.training import HalfTrainer, InMemoryDataset, TrainingConfig, split_junk


def test_split_junk_is_stable_and_near_the_fraction():
    names = [f"{i:06d}@Extract/job007/mic{i // 100}.mrcs" for i in range(5000)]
    exposure, held = split_junk(names, 0.3)
    assert len(np.intersect1d(exposure, held)) == 0 and len(exposure) + len(held) == len(names)
    assert abs(len(held) / len(names) - 0.3) < 0.03
    # the same name goes to the same side whatever the order and the other particles
    perm = np.random.default_rng(0).permutation(len(names))[:1000]
    _, held2 = split_junk([names[i] for i in perm], 0.3)
    assert set(perm[held2].tolist()) == set(held.tolist()) & set(perm.tolist())


def test_uniform_kl_is_zero_for_flat_and_grows_with_peakedness():
    n = 4608
    flat = torch.zeros(3, n)
    assert abs(float(uniform_kl(flat))) < 1e-5
    peaked = flat.clone()
    peaked[:, 0] = 20.0
    value = float(uniform_kl(peaked))
    # KL(u || p) with p = (e^20, 1, ..., 1) / Z: log Z - mean(log-numerators)
    z = math.exp(20.0) + n - 1
    assert abs(value - (math.log(z) - 20.0 / n - math.log(n))) < 1e-3
    assert float(uniform_kl(flat + torch.randn(3, n))) > 0


def test_trainer_takes_junk_batches(tmp_path):
    pre = PreprocessConfig(box_nnet=32, particle_diameter_angstrom=300.0, angpix_nnet=11.4)
    gen = torch.Generator().manual_seed(0)
    mats = torch.eye(3).expand(32, 3, 3).clone()
    good = InMemoryDataset(torch.randn(32, 2, 32, 32, generator=gen), mats, torch.ones(32), pre, finish=False)
    val = InMemoryDataset(torch.randn(8, 2, 32, 32, generator=gen), mats[:8], torch.ones(8), pre, finish=True)
    junk = InMemoryDataset(torch.randn(20, 2, 32, 32, generator=gen), mats[:20], torch.ones(20), pre, finish=False)
    losses = {}
    for weight in (0.0, 1.0):
        cfg = TrainingConfig.preset("tiny", epochs=1, batch_size=16, pretrain_epochs=0, junk_loss_weight=weight)
        torch.manual_seed(0)
        trainer = HalfTrainer(PoseModel(ModelConfig.preset("tiny", box=32)), good, val, cfg, pre, None,
                              tmp_path / str(weight), {"w": weight}, junk_ds=junk)
        assert (trainer.junk_ds is None) == (weight == 0)
        losses[weight] = trainer.fit().curves["train_loss"][0]
    # the same good batches, plus the (positive) junk term
    assert losses[1.0] > losses[0.0]
