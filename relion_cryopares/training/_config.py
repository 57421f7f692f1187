"""Training hyper-parameters: one frozen dataclass with the paper's values and a tiny preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from relion_cryopares._configdict import config_from_dict, config_to_dict
from relion_cryopares.errors import InputError

from ._augment import AugmentConfig


@dataclass(frozen=True)
class TrainingConfig:
    """How one half model is trained (defaults: cryoPARES's paper values).

    Batches of ``batch_size`` particles, each repeated as ``n_copies`` differently augmented
    copies; gradients accumulated over ``accumulate_batches`` batches, clipped to norm
    ``grad_clip``; RAdam (``learning_rate``, ``weight_decay``); the learning rate is multiplied by
    ``lr_factor`` after ``lr_patience`` epochs without improvement of the monitored validation
    metric (median geodesic error with symmetry), training stops after ``early_stop_patience``
    such epochs or ``epochs`` epochs. Loss: weighted cross-entropy (``rlnMaxValueProbDistribution``;
    particles below ``min_weight`` are dropped) with ``label_smoothing``. ``val_fraction`` of each
    half set is held out for validation (seeded). ``pretrain_epochs`` epochs on particles simulated
    from the reference (when one is given) come first, with noise at ``pretrain_snr``.
    ``cache_mb``: keep preprocessed images in memory when they fit (0: never).

    Known junk particles (``cryopares_train --junk_parts``): a ``junk_holdout_fraction`` of them
    (chosen by hashed image name) sets the pruning threshold; the rest are shown to the network
    during training ("outlier exposure"): each batch of ``batch_size`` particles gets
    ``junk_batch_size`` junk particles whose loss, weighted ``junk_loss_weight``, is the KL
    divergence from the uniform distribution over the grid to the predicted one, so the network
    learns to spread its probability (low pruning score) on images that are not the protein.
    ``junk_loss_weight`` 0 turns it off (junk then only sets the threshold).
    """

    epochs: int = 100
    batch_size: int = 32
    n_copies: int = 4
    accumulate_batches: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 5e-6
    label_smoothing: float = 0.05
    grad_clip: float = 5.0
    lr_patience: int = 5
    lr_factor: float = 0.5
    early_stop_patience: int = 11
    val_fraction: float = 0.3
    min_weight: float = 0.01
    pretrain_epochs: int = 5
    pretrain_snr: float = 0.1
    val_batch_size: int = 64
    cache_mb: float = 1024.0
    seed: int = 0
    junk_loss_weight: float = 0.5
    junk_batch_size: int = 8
    junk_holdout_fraction: float = 0.3
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_dict(self.augment))
        problems = []
        for name in ("batch_size", "n_copies", "accumulate_batches", "val_batch_size", "junk_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        for name in ("epochs", "pretrain_epochs", "lr_patience", "early_stop_patience"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0.0 < self.val_fraction < 1.0:
            problems.append("val_fraction must be in (0, 1)")
        if not 0.0 < self.junk_holdout_fraction <= 1.0 or self.junk_loss_weight < 0:
            problems.append("junk_holdout_fraction must be in (0, 1] and junk_loss_weight >= 0")
        if not 0.0 < self.lr_factor <= 1.0 or self.learning_rate <= 0:
            problems.append("learning_rate must be > 0 and lr_factor in (0, 1]")
        if problems:
            raise InputError("invalid training configuration: " + "; ".join(problems))

    @staticmethod
    def preset(name: str, **overrides) -> "TrainingConfig":
        """``"paper"`` (cryoPARES) or ``"tiny"`` (learns in minutes on 2 CPU cores), with overrides."""
        if name not in _PRESETS:
            raise InputError(f"unknown training preset {name!r}; known: {sorted(_PRESETS)}")
        return dataclasses.replace(_PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @staticmethod
    def from_dict(d: dict) -> "TrainingConfig":
        return config_from_dict(TrainingConfig, d, "training")


_PRESETS = {
    "paper": TrainingConfig(),
    # tiny: no accumulation and a 10x learning rate, so a tiny model learns in a few hundred steps
    # (tests, CPU demos); patience as in the paper
    "tiny": TrainingConfig(epochs=30, batch_size=32, n_copies=1, accumulate_batches=1,
                           learning_rate=1e-2, pretrain_epochs=2, pretrain_snr=0.3),
}
