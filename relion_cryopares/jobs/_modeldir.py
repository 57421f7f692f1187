"""The model directory written by ``cryopares_train`` and read by ``cryopares_infer``.

::

    <o>/cryopares_model.json      version, symmetry, preprocessing, halves present
    <o>/half1/model.pt            state_dict (model.save_model), no fixed tables
    <o>/half1/model_config.json   ModelConfig
    <o>/half1/preprocess.json     PreprocessConfig
    <o>/half1/pruning.json        DirectionalNormaliser + zscore_threshold + threshold_source
    <o>/half1/training.json       training summary (learning curves, best epoch, ...)
    <o>/half2/...                 the same for the model of half set 2

Each half model was trained only on particles of its half set (``rlnRandomSubset``), so inference
assigns half-set ``k`` particles with model ``k`` and the half maps stay independent.
Every file is written atomically; missing or inconsistent files raise :class:`InputError` with one
line naming the path.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from relion_cryopares.data import PreprocessConfig
from relion_cryopares.errors import InputError
from relion_cryopares.model import ModelConfig, PoseModel, load_model, save_model
from relion_cryopares.pruning import DirectionalNormaliser
from relion_cryopares.relion import read_json, write_json_atomic

log = logging.getLogger(__name__)

MODEL_DIR_VERSION = 1
TOP_FILE = "cryopares_model.json"
PREPROCESS_FILE = "preprocess.json"
PRUNING_FILE = "pruning.json"
TRAINING_FILE = "training.json"
HALF_FILES = ("model.pt", "model_config.json", PREPROCESS_FILE, PRUNING_FILE, TRAINING_FILE)


def half_dir(model_dir: str | Path, half: int) -> Path:
    """``<model_dir>/half<half>``."""
    if half not in (1, 2):
        raise ValueError(f"half must be 1 or 2, got {half}")
    return Path(model_dir) / f"half{half}"


@dataclass
class HalfModel:
    """One trained half model, ready for inference (eval mode, on the chosen device)."""

    half: int
    model: PoseModel
    model_config: ModelConfig
    preprocess: PreprocessConfig
    normaliser: DirectionalNormaliser
    zscore_threshold: float
    threshold_source: str
    training: dict = field(default_factory=dict)


@dataclass
class ModelDir:
    """A loaded model directory: ``halves[1]``, ``halves[2]`` (those present), symmetry, preprocessing."""

    path: Path
    version: int
    symmetry: str
    preprocess: PreprocessConfig
    halves: dict[int, HalfModel]

    def half(self, half: int) -> HalfModel:
        """The model of half set ``half``; InputError when the directory lacks it."""
        if half not in self.halves:
            raise InputError(f"no model for half set {half} (has {sorted(self.halves)})", self.path)
        return self.halves[half]


def _write_top(model_dir: Path, symmetry_name: str, preprocess: PreprocessConfig, half: int) -> None:
    top_path = model_dir / TOP_FILE
    top = read_json(top_path, default=None)
    halves: set[int] = set()
    if isinstance(top, dict) and top.get("version") == MODEL_DIR_VERSION:
        if top.get("symmetry") != symmetry_name or top.get("preprocess") != preprocess.to_dict():
            log.warning("%s: replacing a model directory made with other settings", top_path)
        else:
            halves = {int(h) for h in top.get("halves", [])}
    halves.add(half)
    write_json_atomic(top_path, {"version": MODEL_DIR_VERSION, "package": "relion-cryopares",
                                 "symmetry": symmetry_name, "preprocess": preprocess.to_dict(),
                                 "halves": sorted(halves)})


def save_half_model(model_dir: str | Path, half: int, model: PoseModel, model_config: ModelConfig,
                    preprocess_config: PreprocessConfig, normaliser: DirectionalNormaliser,
                    threshold: float, threshold_source: str, symmetry_name: str,
                    training_summary: dict) -> Path:
    """Write ``<model_dir>/half<half>/`` (see the module docstring) and update ``cryopares_model.json``.

    Returns the half directory.
    """
    if model_config.box != preprocess_config.box_nnet:
        raise InputError(f"model box {model_config.box} differs from the preprocessing box "
                         f"{preprocess_config.box_nnet}")
    if model_config.in_channels != preprocess_config.n_channels:
        raise InputError(f"model takes {model_config.in_channels} channels but preprocessing makes "
                         f"{preprocess_config.n_channels}")
    folder = half_dir(model_dir, half)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, model, model_config)
    write_json_atomic(folder / PREPROCESS_FILE, preprocess_config.to_dict())
    write_json_atomic(folder / PRUNING_FILE, {"normaliser": normaliser.to_dict(),
                                              "zscore_threshold": float(threshold),
                                              "threshold_source": str(threshold_source)})
    write_json_atomic(folder / TRAINING_FILE, training_summary)
    _write_top(Path(model_dir), symmetry_name, preprocess_config, half)
    return folder


def _read(path: Path) -> dict:
    if not path.is_file():
        raise InputError("missing file of the cryoPARES model directory", path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read ({type(exc).__name__}: {exc})".replace("\n", " "), path) from None
    if not isinstance(data, dict):
        raise InputError("not a JSON object", path)
    return data


def read_model_dir_info(model_dir: str | Path) -> dict:
    """The checked contents of ``cryopares_model.json`` (version, symmetry, preprocess, halves)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise InputError("model directory not found (expected a cryopares_train job directory)", folder)
    top = _read(folder / TOP_FILE)
    if top.get("version") != MODEL_DIR_VERSION:
        raise InputError(f"model directory version {top.get('version')!r}; this relion-cryopares reads "
                         f"version {MODEL_DIR_VERSION}", folder / TOP_FILE)
    for key in ("symmetry", "preprocess", "halves"):
        if key not in top:
            raise InputError(f"missing key {key!r}", folder / TOP_FILE)
    return top


def _load_half(folder: Path, half: int, top_pre: PreprocessConfig, device) -> HalfModel:
    hdir = half_dir(folder, half)
    for name in HALF_FILES:
        if not (hdir / name).is_file():
            raise InputError("missing file of the cryoPARES model directory", hdir / name)
    pre = PreprocessConfig.from_dict(_read(hdir / PREPROCESS_FILE))
    if pre != top_pre:
        raise InputError(f"preprocessing differs from {TOP_FILE} (box {pre.box_nnet} vs {top_pre.box_nnet}, "
                         f"{pre.angpix_nnet} vs {top_pre.angpix_nnet} A/px)", hdir / PREPROCESS_FILE)
    model = load_model(hdir, map_location=device)
    if model.config.box != pre.box_nnet or model.config.in_channels != pre.n_channels:
        raise InputError(f"model input ({model.config.in_channels} x {model.config.box} px) does not match "
                         f"the preprocessing ({pre.n_channels} x {pre.box_nnet} px)", hdir / "model_config.json")
    pruning = _read(hdir / PRUNING_FILE)
    try:
        normaliser = DirectionalNormaliser.from_dict(pruning["normaliser"])
        threshold = float(pruning["zscore_threshold"])
        source = str(pruning.get("threshold_source", "unknown"))
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise InputError(f"invalid pruning data ({exc})", hdir / PRUNING_FILE) from None
    return HalfModel(half, model, model.config, pre, normaliser, threshold, source,
                     _read(hdir / TRAINING_FILE))


def load_model_dir(model_dir: str | Path, device: str | torch.device = "cpu",
                   halves: tuple[int, ...] | None = None) -> ModelDir:
    """Load a model directory (the ``cryopares_train`` job directory) for inference.

    ``halves``: which half models to load (default: all present). Models are in eval mode on
    ``device``. Raises InputError (one line naming the path) for a missing directory or file, an
    unknown version, or inconsistent boxes/preprocessing.
    """
    folder = Path(model_dir)
    top = read_model_dir_info(folder)
    try:
        pre = PreprocessConfig.from_dict(top["preprocess"])
        present = [int(h) for h in top["halves"]]
    except (TypeError, ValueError) as exc:
        raise InputError(f"invalid contents ({exc})", folder / TOP_FILE) from None
    wanted = present if halves is None else list(halves)
    missing = [h for h in wanted if h not in present]
    if missing or not wanted:
        raise InputError(f"no model for half set(s) {missing or [1, 2]} (has {present})", folder / TOP_FILE)
    loaded = {h: _load_half(folder, h, pre, device) for h in wanted}
    return ModelDir(folder, int(top["version"]), str(top["symmetry"]), pre, loaded)
