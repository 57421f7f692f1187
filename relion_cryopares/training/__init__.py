"""Training of the pose network: configuration, augmentation, half-set splits, the loop with
checkpoints, evaluation.

:class:`TrainingConfig` (``preset("paper" | "tiny")``) holds every hyper-parameter;
:func:`split_half` picks a half set's training and validation particles; :class:`HalfTrainer`
trains one half model (resumable); :func:`evaluate` runs a model over a dataset (poses, pruning
scores, errors). :class:`Augmenter` and :func:`inplane_rotation` are the augmentations and the
label update of in-plane rotations. :class:`EpochProgress` is the progress line within an epoch.
"""

from relion_cryopares.training._augment import (AugmentConfig, Augmenter, inplane_rotation,
                                                rotate_shift_images)
from relion_cryopares.training._checkpoint import BEST_MODEL_NAME, CHECKPOINT_NAME, load_checkpoint, save_atomic
from relion_cryopares.training._config import TrainingConfig
from relion_cryopares.training._evaluate import Evaluation, evaluate
from relion_cryopares.training._loop import CURVE_KEYS, HalfTrainer, TrainResult
from relion_cryopares.training._memory import InMemoryDataset, maybe_in_memory
from relion_cryopares.training._plot import write_learning_curves
from relion_cryopares.training._progress import EpochProgress
from relion_cryopares.training._split import HalfSplit, split_half, split_junk

__all__ = [
    "AugmentConfig", "Augmenter", "BEST_MODEL_NAME", "CHECKPOINT_NAME", "CURVE_KEYS", "EpochProgress", "Evaluation",
    "HalfSplit", "HalfTrainer", "InMemoryDataset", "TrainResult", "TrainingConfig", "evaluate",
    "inplane_rotation", "load_checkpoint", "maybe_in_memory", "rotate_shift_images", "save_atomic",
    "split_half", "split_junk", "write_learning_curves",
]
