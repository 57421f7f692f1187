"""PoseModel: shapes, determinism, what goes into the state_dict, save/load, exact in-plane
equivariance of everything after the encoder."""

from __future__ import annotations

import json

import pytest
import torch

from relion_cryopares.errors import InputError
from relion_cryopares.model import ModelConfig, PoseModel, load_model, save_model, state_dict_bytes


@pytest.fixture(scope="module")
def tiny():
    return PoseModel(ModelConfig.preset("tiny"))


def test_forward_shape_and_eval_determinism(tiny):
    cfg = tiny.config
    x = torch.randn(3, cfg.in_channels, cfg.box, cfg.box)
    tiny.eval()
    with torch.no_grad():
        a, b = tiny(x), tiny(x)
    assert a.shape == (3, 72 * 8**cfg.grid_order)
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()


def test_state_dict_holds_no_fixed_tables(tiny):
    state = tiny.state_dict()
    params = {name for name, _ in tiny.named_parameters()}
    extra = set(state) - params
    # the only persistent buffers are batch-norm statistics
    assert all(k.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
               for k in extra), extra
    for name, buf in tiny.named_buffers():
        if name not in state:
            assert name.rsplit(".", 1)[-1].startswith("_")
    assert sum(b.numel() for n, b in tiny.named_buffers() if n not in state) > 0


def test_paper_state_dict_is_small_without_building_tables(micro_config):
    skeleton = PoseModel(ModelConfig.preset("paper"), build_tables=False)
    n_params = sum(p.numel() for p in skeleton.parameters())
    size = state_dict_bytes(skeleton)
    assert size < 1e9
    assert 5e6 < n_params < 1e8
    full_keys = set(PoseModel(micro_config()).state_dict())
    assert set(PoseModel(micro_config(), build_tables=False).state_dict()) == full_keys


def test_save_load_round_trip(tmp_path, tiny):
    cfg = tiny.config
    with torch.no_grad():  # make batch-norm statistics non-trivial
        tiny.train()
        tiny(torch.randn(4, cfg.in_channels, cfg.box, cfg.box))
    tiny.eval()
    x = torch.randn(2, cfg.in_channels, cfg.box, cfg.box)
    with torch.no_grad():
        expected = tiny(x)
    save_model(tmp_path / "m", tiny)
    assert json.loads((tmp_path / "m" / "model_config.json").read_text())["grid_order"] == cfg.grid_order
    assert (tmp_path / "m" / "model.pt").stat().st_size < 1.2 * state_dict_bytes(tiny) + 1e5
    loaded = load_model(tmp_path / "m")
    assert not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)


def test_config_round_trip_and_presets(tmp_path):
    for name in ("tiny", "paper"):
        cfg = ModelConfig.preset(name)
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    paper = ModelConfig.preset("paper")
    assert (paper.box, paper.lmax, paper.grid_order, paper.in_channels) == (160, 12, 4, 8)
    assert paper.n_rotations == 294912
    assert ModelConfig.preset("tiny", grid_order=3).grid_order == 3
    with pytest.raises(InputError):
        ModelConfig.preset("huge")
    with pytest.raises(InputError):
        ModelConfig.from_dict({"box": 64, "colour": "red"})
    with pytest.raises(InputError):
        ModelConfig(box=8)


def test_head_is_exactly_equivariant_to_90_degree_in_plane_rotations(tiny):
    """Everything after the encoder: rotating the feature map by 90 degrees (pose Rz(-90) @ A, i.e.
    psi + 90) shifts the logits by n_psi / 4 along psi on every pixel."""
    tiny.eval()
    fmap = torch.randn(2, tiny.encoder.out_channels, 15, 15)

    def head(f):
        x = tiny.s2_conv(tiny.image_to_sphere(f))
        return tiny.grid_logits(tiny.so3_conv(tiny.activation(x))[:, 0])

    with torch.no_grad():
        a, b = head(fmap), head(torch.rot90(fmap, 1, dims=(-2, -1)))
    n_psi = 6 * 2**tiny.config.grid_order
    a, b = a.view(2, -1, n_psi), b.view(2, -1, n_psi)
    assert torch.allclose(b, torch.roll(a, n_psi // 4, dims=-1), atol=1e-4)
    assert not torch.allclose(b, a, atol=1e-2)
