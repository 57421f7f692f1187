"""The model directory: save both halves, load them back identically, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from relion_cryopares.data import PreprocessConfig
from relion_cryopares.errors import InputError
from relion_cryopares.geometry import random_rotations
from relion_cryopares.jobs._modeldir import load_model_dir, save_half_model
from relion_cryopares.model import ModelConfig, PoseModel
from relion_cryopares.pruning import DirectionalNormaliser


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("job") / "External" / "job020"
    cfg = ModelConfig.preset("tiny", box=32)
    pre = PreprocessConfig(box_nnet=32, particle_diameter_angstrom=150.0, angpix_nnet=5.7)
    rot = random_rotations(200, generator=torch.Generator().manual_seed(0))
    norm = DirectionalNormaliser.fit(torch.rand(200), rot)
    models = {}
    for half in (1, 2):
        models[half] = PoseModel(cfg).eval()
        save_half_model(out, half, models[half], cfg, pre, norm, -2.5 + half, "validation", "D2",
                        {"epochs": [1, 2], "val_median_error_deg": [50.0, 30.0]})
    return out, models, pre


def test_round_trip(saved):
    out, models, pre = saved
    md = load_model_dir(out)
    assert md.symmetry == "D2" and md.preprocess == pre and sorted(md.halves) == [1, 2]
    top = json.loads((out / "cryopares_model.json").read_text())
    assert top["halves"] == [1, 2] and top["version"] == 1
    x = torch.randn(3, 8, 32, 32)
    for half in (1, 2):
        h = md.half(half)
        assert not h.model.training
        assert h.zscore_threshold == -2.5 + half and h.threshold_source == "validation"
        assert h.training["val_median_error_deg"] == [50.0, 30.0]
        with torch.no_grad():
            assert torch.equal(h.model(x), models[half](x))
    only = load_model_dir(out, halves=(2,))
    assert list(only.halves) == [2]
    with pytest.raises(InputError, match="half set 1"):
        only.half(1)


def test_missing_and_inconsistent(saved, tmp_path):
    out, _, _ = saved
    with pytest.raises(InputError, match="not found"):
        load_model_dir(tmp_path / "nothing")
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "half2" / "pruning.json").unlink()
    with pytest.raises(InputError, match=r"half2/pruning.json"):
        load_model_dir(copy)
    top = json.loads((copy / "cryopares_model.json").read_text())
    (copy / "cryopares_model.json").write_text(json.dumps({**top, "version": 99}))
    with pytest.raises(InputError, match="version 99"):
        load_model_dir(copy)
    (copy / "cryopares_model.json").write_text(json.dumps(top))
    pre = json.loads((copy / "half1" / "preprocess.json").read_text())
    (copy / "half1" / "preprocess.json").write_text(json.dumps({**pre, "box_nnet": 48}))
    with pytest.raises(InputError, match="preprocess.json"):
        load_model_dir(copy, halves=(1,))
    # a message is one line naming the path
    try:
        load_model_dir(copy, halves=(1,))
    except InputError as exc:
        assert "\n" not in str(exc) and str(copy) in str(exc)


def test_box_mismatch_refused_at_save(tmp_path):
    cfg = ModelConfig.preset("tiny", box=32)
    pre = PreprocessConfig(box_nnet=48, particle_diameter_angstrom=150.0)
    rot = random_rotations(50)
    with pytest.raises(InputError, match="box"):
        save_half_model(tmp_path, 1, PoseModel(cfg, build_tables=False), cfg, pre,
                        DirectionalNormaliser.fit(torch.rand(50), rot), 0.0, "validation", "C1", {})
