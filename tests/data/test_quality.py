"""Bad particle images (data.image_problems) and particles whose image is not in its stack
(data.check_image_indices)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from relion_cryopares.data import (BAD_IMAGE, ParticleStar, bad_image_mask, check_image_indices, image_problems,
                                   write_stack)
from relion_cryopares.errors import InputError


def _images() -> torch.Tensor:
    x = torch.randn(7, 32, 32, generator=torch.Generator().manual_seed(0))
    x[0, 3, 3] = float("nan")
    x[1, 20, 5] = float("inf")
    x[2, 7, 7] = -float("inf")
    x[3] = 7.0  # constant image
    x[4] = 0.0  # constant background: only the particle circle varies
    x[4, 14:18, 14:18] = 1.0
    x[5, :4] = 0.0  # a zero strip at a micrograph edge is fine
    return x


def test_image_problems_each_kind():
    x = _images()
    assert image_problems(x, radius_px=10) == ["non-finite pixels", "non-finite pixels", "non-finite pixels",
                                               "constant image", "constant background", None, None]
    # no particle circle: the whole image is the background
    assert image_problems(x)[3:] == ["constant image", None, None, None]
    assert bad_image_mask(x, 10).tolist() == [True] * 5 + [False] * 2
    assert BAD_IMAGE == "bad_image"


def test_image_problems_inputs():
    x = _images()
    assert image_problems(x.numpy(), 10) == image_problems(x, 10)  # numpy
    assert image_problems(x.to(torch.float16), 10)[:5] == image_problems(x, 10)[:5]
    assert image_problems(torch.zeros(2, 16, 16, dtype=torch.int16)) == ["constant image"] * 2
    assert image_problems(torch.zeros(0, 16, 16)) == []
    assert image_problems(torch.randn(2, 16, 24), 4) == [None, None]  # not square
    assert image_problems(torch.randn(2, 16, 16), radius_px=100) == [None, None]  # circle fills the box
    with pytest.raises(ValueError):
        image_problems(torch.zeros(16, 16))


def _star(names, path=None) -> ParticleStar:
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]})
    return ParticleStar(optics, pd.DataFrame({"rlnImageName": names, "rlnOpticsGroup": 1}), path)


def test_check_image_indices(tmp_path):
    (tmp_path / "Extract").mkdir()
    write_stack(tmp_path / "Extract/a.mrcs", np.zeros((3, 8, 8), np.float32), 1.0)
    write_stack(tmp_path / "Extract/b.mrcs", np.zeros((1, 8, 8), np.float32), 1.0)
    good = ["000001@Extract/a.mrcs", "3@Extract/a.mrcs", "1@Extract/b.mrcs:mrcs", "Extract/b.mrcs"]
    check_image_indices(_star(good), root=tmp_path)
    star = _star(good + ["000004@Extract/a.mrcs", "2@Extract/b.mrcs"], tmp_path / "particles.star")
    with pytest.raises(InputError) as info:
        check_image_indices(star, root=tmp_path)
    assert str(info.value) == (f"{tmp_path / 'particles.star'}: row 5: particle 000004@Extract/a.mrcs is past "
                               "the end of its stack Extract/a.mrcs (3 images) (and 1 more particle past the "
                               "end of its stack)")
    with pytest.raises(InputError, match=r"row 2: stack Extract/c.mrcs of particle 1@Extract/c.mrcs not found"):
        check_image_indices(_star(good[:1] + ["1@Extract/c.mrcs"], tmp_path / "p.star"), root=tmp_path)
    with pytest.raises(InputError, match="bad image name"):
        check_image_indices(_star(["x@Extract/a.mrcs"]), root=tmp_path)
