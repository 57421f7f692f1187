"""3D maps: real EMDB headers, voxel size, axis order, cubic/3D checks, atomic writes."""

from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pytest
import torch

from relion_cryopares.data import read_volume, write_volume
from relion_cryopares.errors import InputError


@pytest.mark.parametrize("name, size, voxel", [
    ("maps_emdb/emd_5625.map", 56, 4.23),
    ("maps_emdb/emd_1832.map", 64, 5.7),
    ("models/3j9g_potential_ps4_4_simulated.mrc", 64, 4.4),
])
def test_real_maps(shared_data, name, size, voxel):
    volume, voxel_size = read_volume(shared_data / name)
    assert volume.shape == (size,) * 3 and volume.dtype == np.float32
    assert voxel_size == pytest.approx(voxel, abs=1e-4)
    with mrcfile.open(str(shared_data / name)) as mrc:
        np.testing.assert_array_equal(volume, mrc.data)


def test_zero_voxel_size_is_returned_with_a_warning(shared_data, caplog):
    with caplog.at_level(logging.WARNING):
        volume, voxel_size = read_volume(shared_data / "maps_aspire" / "clean70SRibosome_vol_65p.mrc")
    assert volume.shape == (65, 65, 65) and voxel_size == 0.0
    assert "voxel size is 0" in caplog.text


def test_write_read_round_trip(tmp_path):
    volume = np.random.default_rng(0).normal(size=(20, 20, 20))
    write_volume(tmp_path / "v.mrc", volume, 1.25)
    back, voxel = read_volume(tmp_path / "v.mrc")
    assert voxel == pytest.approx(1.25) and back.dtype == np.float32
    np.testing.assert_allclose(back, volume.astype(np.float32))
    with mrcfile.open(str(tmp_path / "v.mrc")) as mrc:
        assert mrc.is_volume() and mrc.header.mode == 2
    write_volume(tmp_path / "t.mrc", torch.from_numpy(volume), 2.0)  # tensors too
    np.testing.assert_allclose(read_volume(tmp_path / "t.mrc")[0], volume.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc", "v.mrc"]


def test_non_standard_axis_order_is_brought_to_zyx(tmp_path):
    zyx = np.random.default_rng(1).normal(size=(8, 8, 8)).astype(np.float32)
    stored = np.ascontiguousarray(np.transpose(zyx, (2, 1, 0)))  # sections x, rows y, columns z
    with mrcfile.new(str(tmp_path / "p.mrc")) as mrc:
        mrc.set_data(stored)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
        mrc.voxel_size = 1.0
    np.testing.assert_array_equal(read_volume(tmp_path / "p.mrc")[0], zyx)


def test_bad_volumes(tmp_path):
    with pytest.raises(InputError, match="map.mrc: map not found"):
        read_volume(tmp_path / "map.mrc")
    with mrcfile.new(str(tmp_path / "map.mrc")) as mrc:
        mrc.set_data(np.zeros((60, 64, 64), dtype=np.float32))
        mrc.voxel_size = 1.0
    with pytest.raises(InputError) as info:
        read_volume(tmp_path / "map.mrc")
    assert str(info.value) == f"{tmp_path / 'map.mrc'}: volume is not cubic (64 x 64 x 60)"
    with mrcfile.new(str(tmp_path / "flat.mrc")) as mrc:
        mrc.set_data(np.zeros((64, 64), dtype=np.float32))
    with pytest.raises(InputError, match="flat.mrc: not a 3D map"):
        read_volume(tmp_path / "flat.mrc")
    with mrcfile.new(str(tmp_path / "aniso.mrc")) as mrc:
        mrc.set_data(np.zeros((8, 8, 8), dtype=np.float32))
        mrc.voxel_size = (1.0, 1.0, 2.0)
    with pytest.raises(InputError, match="voxel size differs between axes"):
        read_volume(tmp_path / "aniso.mrc")
