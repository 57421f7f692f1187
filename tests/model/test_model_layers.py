"""Equivariance and agreement with e3nn of the individual layers."""

from __future__ import annotations

import torch
from e3nn import nn as e3nn_nn

from relion_cryopares.geometry import random_rotations
from relion_cryopares.model import ImageToSphere, S2Conv, SO3Activation, SO3Conv, UNet
from relion_cryopares.model._so3_fourier import evaluate_so3, so3_dim, wigner_blocks

LMAX = 5


def _rotate_s2(x, blocks):
    out, start = [], 0
    for d in blocks:
        n = d.shape[-1]
        out.append(x[..., start:start + n] @ d.T.to(x))
        start += n
    return torch.cat(out, -1)


def _rotate_so3(x, blocks):
    """Left translation: coefficients psi_l -> D_l(R) psi_l (signal F(g) -> F(R.T g))."""
    out, start = [], 0
    for d in blocks:
        n = d.shape[-1]
        out.append((d.to(x) @ x[..., start:start + n * n].unflatten(-1, (n, n))).flatten(-2))
        start += n * n
    return torch.cat(out, -1)


def test_s2_conv_is_equivariant():
    r = random_rotations(1)[0]
    blocks = wigner_blocks(LMAX, r)
    conv = S2Conv(3, 4, LMAX, filter_order=1, filter_max_beta_deg=60.0)
    x = torch.randn(2, 3, (LMAX + 1) ** 2)
    with torch.no_grad():
        out, out_rot = conv(x), conv(_rotate_s2(x, blocks))
    assert torch.allclose(out_rot, _rotate_so3(out, blocks), atol=1e-5)
    # as signals on SO(3): rotating the input by R left-translates the output, F'(R g) = F(g)
    g = random_rotations(30)
    f = evaluate_so3(out.double(), g, LMAX)
    f_rot = evaluate_so3(out_rot.double(), r @ g, LMAX)
    assert torch.allclose(f, f_rot, atol=1e-4)


def test_so3_conv_is_equivariant():
    blocks = wigner_blocks(LMAX, random_rotations(1)[0])
    conv = SO3Conv(4, 2, LMAX, max_angle_deg=15.0, steps=5)
    x = torch.randn(2, 4, so3_dim(LMAX))
    with torch.no_grad():
        assert torch.allclose(conv(_rotate_so3(x, blocks)), _rotate_so3(conv(x), blocks), atol=1e-5)


def test_so3_activation_matches_e3nn():
    for lmax, resolution in ((4, 4), (3, 2)):
        ours = SO3Activation(lmax, resolution)
        ref = e3nn_nn.SO3Activation(lmax, lmax, torch.relu, resolution)
        x = torch.randn(3, 2, so3_dim(lmax))
        assert torch.allclose(ours.grid.to_grid(x), ref.grid_in.to_grid(x), atol=1e-4)
        assert torch.allclose(ours(x), ref(x), atol=1e-4)
        assert not any(True for _ in ours.state_dict())  # nothing persistent


def test_unet_shapes_and_odd_sizes():
    net = UNet(8, (4, 8, 8, 16, 16), decoder_blocks=4, kernel_size=3, norm="group")
    out = net(torch.randn(2, 8, 64, 64))
    assert out.shape == (2, net.out_channels, 32, 32)
    assert net(torch.randn(1, 8, 50, 50)).shape[-2:] == (25, 25)


def test_image_to_sphere_is_deterministic_and_in_plane_equivariant():
    """Rotating the feature map by 90 degrees (odd size: the centre pixel is the rotation centre)
    rotates the S2 signal by Rz(-90 deg): image(r) -> image(R^-1 r) is the pose R @ A."""
    proj = ImageToSphere(6, 5, 4, LMAX, order=2, blur_px=1.0).eval()
    fmap = torch.randn(2, 6, 15, 15)
    with torch.no_grad():
        a, b = proj(fmap), proj(fmap)
        rotated = proj(torch.rot90(fmap, 1, dims=(-2, -1)))
    assert torch.equal(a, b)
    rz = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(rotated, _rotate_s2(a, wigner_blocks(LMAX, rz)), atol=1e-5)
