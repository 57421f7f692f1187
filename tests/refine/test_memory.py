"""Batch sizes from bytes per particle x rotation and the device's budget."""

from __future__ import annotations

import torch

from relion_cryopares.refine import bytes_per_particle, choose_batch_size


def test_bytes_grow_with_rotations_and_box():
    small = bytes_per_particle(33, 400, 1500, 89, 64)
    assert bytes_per_particle(123, 400, 1500, 89, 64) > small
    assert bytes_per_particle(33, 1600, 6000, 89, 128) > small


def test_batch_size_bounds():
    cpu = torch.device("cpu")
    per = bytes_per_particle(123, 450, 1500, 137, 64)
    b = choose_batch_size(per, cpu)
    assert 1 <= b <= 4096
    assert choose_batch_size(10 ** 15, cpu) == 1
    assert choose_batch_size(1, cpu, maximum=77) == 77
