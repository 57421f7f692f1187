"""A model directory: ``model.pt`` (the ``state_dict``) and ``model_config.json``."""

from __future__ import annotations

from pathlib import Path

import torch

from relion_cryopares.errors import InputError

from ._config import ModelConfig
from ._pose_model import PoseModel

WEIGHTS_NAME = "model.pt"
CONFIG_NAME = "model_config.json"


def save_model(path_dir: str | Path, model: PoseModel, config: ModelConfig | None = None) -> Path:
    """Write ``model.pt`` (``state_dict`` only: parameters and norm statistics, no fixed tables) and
    ``model_config.json`` into ``path_dir`` (created). Returns the directory."""
    config = model.config if config is None else config
    if config != model.config:
        raise InputError("config differs from the model's own config")
    folder = Path(path_dir)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = folder / (WEIGHTS_NAME + ".tmp")
    torch.save(state, tmp)
    tmp.replace(folder / WEIGHTS_NAME)
    config.to_json(folder / CONFIG_NAME)
    return folder


def load_model(path_dir: str | Path, map_location: str | torch.device = "cpu") -> PoseModel:
    """Rebuild a :class:`PoseModel` from a directory written by :func:`save_model`.

    Weights are read with ``torch.load(weights_only=True)``; the model is returned in eval mode on
    ``map_location``.
    """
    folder = Path(path_dir)
    config = ModelConfig.from_json(folder / CONFIG_NAME)
    try:
        state = torch.load(folder / WEIGHTS_NAME, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot read model weights: {exc}", folder / WEIGHTS_NAME) from exc
    model = PoseModel(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"weights do not match {CONFIG_NAME}: {exc}", folder / WEIGHTS_NAME) from exc
    return model.to(map_location).eval()
