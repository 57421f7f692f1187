"""The pose network (Image2Sphere, Klee et al. ICLR 2023, as used by cryoPARES).

``PoseModel(config)(images) -> logits`` over the HEALPix SO(3) grid of
:func:`relion_cryopares.geometry.so3_grid` (RELION pose matrices); :func:`predict_poses` turns logits
into poses, probabilities and pruning scores; :func:`grid_targets` and :func:`pose_cross_entropy`
are the training labels and loss; :func:`save_model` / :func:`load_model` read and write a model
directory (``model.pt`` + ``model_config.json``). Fixed tables are never saved with the weights.
"""

from relion_cryopares.model._activation import SO3Activation, SO3GridTransform
from relion_cryopares.model._config import ModelConfig
from relion_cryopares.model._convs import S2Conv, SO3Conv
from relion_cryopares.model._encoder import UNet
from relion_cryopares.model._grid_logits import GridLogits
from relion_cryopares.model._image_to_sphere import ImageToSphere
from relion_cryopares.model._io import load_model, save_model
from relion_cryopares.model._loss import grid_targets, pose_cross_entropy, uniform_kl
from relion_cryopares.model._pose_model import PoseModel, state_dict_bytes
from relion_cryopares.model._predict import PosePrediction, fold_probabilities, predict_poses

__all__ = [
    "GridLogits",
    "ImageToSphere",
    "ModelConfig",
    "PoseModel",
    "PosePrediction",
    "S2Conv",
    "SO3Activation",
    "SO3Conv",
    "SO3GridTransform",
    "UNet",
    "fold_probabilities",
    "grid_targets",
    "load_model",
    "pose_cross_entropy",
    "predict_poses",
    "save_model",
    "state_dict_bytes",
    "uniform_kl",
]
