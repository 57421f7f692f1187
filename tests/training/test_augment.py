"""Augmentations: the in-plane rotation label update checked against projections of the map."""

from __future__ import annotations

import numpy as np
import torch

from relion_cryopares.fourier import Projector
from relion_cryopares.geometry import geodesic_distance_deg, random_rotations
from relion_cryopares.training import AugmentConfig, Augmenter, inplane_rotation, rotate_shift_images


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_rotating_the_image_is_the_projection_at_rz_times_a(test_map):
    """Project at pose A, rotate the image by a: it is the projection at Rz(a) @ A, not Rz(-a) @ A."""
    vol, _ = test_map
    proj = Projector(vol)
    a_mat = random_rotations(6, generator=torch.Generator().manual_seed(1))
    angles = torch.tensor([20.0, 75.0, 120.0, 200.0, 290.0, -45.0])
    rotated = rotate_shift_images(proj.project(a_mat).float()[:, None], angles, torch.zeros(6, 2))[:, 0]
    right = proj.project(inplane_rotation(angles).double() @ a_mat).float()
    wrong = proj.project(inplane_rotation(-angles).double() @ a_mat).float()
    for i in range(6):
        assert _corr(rotated[i], right[i]) > 0.99
        assert _corr(rotated[i], wrong[i]) < 0.9


def test_shift_moves_content_like_the_projector(test_map):
    vol, _ = test_map
    proj = Projector(vol)
    a_mat = random_rotations(3, generator=torch.Generator().manual_seed(2))
    shift = torch.tensor([[3.0, -2.0], [0.0, 4.0], [-5.0, 1.0]])
    moved = rotate_shift_images(proj.project(a_mat).float()[:, None], torch.zeros(3), shift)[:, 0]
    expected = proj.project(a_mat, shift.double()).float()
    assert all(_corr(moved[i], expected[i]) > 0.999 for i in range(3))


def test_augmenter_updates_labels_consistently(test_map):
    """Whatever the augmenter does, its label is the pose whose projection matches the image."""
    vol, _ = test_map
    proj = Projector(vol)
    a_mat = random_rotations(8, generator=torch.Generator().manual_seed(3))
    images = proj.project(a_mat).float()[:, None]
    aug = Augmenter(AugmentConfig(p_rotate=1.0, p_shift=0.0, p_noise=0.0, p_blur=0.0, p_erase=0.0))
    out, labels = aug(images, a_mat.float(), torch.Generator().manual_seed(0))
    assert geodesic_distance_deg(labels.double(), a_mat).min() > 0.1  # rotated
    relabelled = proj.project(labels.double()).float()
    assert all(_corr(out[i, 0], relabelled[i]) > 0.99 for i in range(8))
    # all augmentations on: finite, same shape, deterministic for a seed
    full = Augmenter(AugmentConfig(p_rotate=1.0, p_shift=1.0, p_noise=1.0, p_blur=1.0, p_erase=1.0))
    x1, l1 = full(images.repeat(1, 2, 1, 1), a_mat.float(), torch.Generator().manual_seed(5))
    x2, l2 = full(images.repeat(1, 2, 1, 1), a_mat.float(), torch.Generator().manual_seed(5))
    assert x1.shape == (8, 2, 64, 64) and torch.isfinite(x1).all()
    assert torch.equal(x1, x2) and torch.equal(l1, l2)
    assert np.allclose(torch.linalg.det(l1.double()).numpy(), 1.0)
