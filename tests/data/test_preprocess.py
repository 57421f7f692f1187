"""Preprocessing: shapes, background statistics, phase flipping (incl. pre-flipped data), optics
groups with other pixel sizes, mask and filter bank."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from relion_cryopares.ctf import CtfParameters, compute_ctf, phase_flip
from relion_cryopares.data import PreprocessConfig, finish_channels, prepare_channels, preprocess_particles
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import Projector, irfft2_centred, resample_images, rfft2_centred
from relion_cryopares.geometry import random_rotations


def _projections(test_map, n=6, seed=0):
    vol, px = test_map
    rot = random_rotations(n, generator=torch.Generator().manual_seed(seed))
    ctf = CtfParameters.constant(n, defocus_u_angstrom=15000.0, pixel_size_angstrom=px)
    clean = Projector(vol).project(rot.to(torch.float64), None, compute_ctf(ctf, vol.shape[-1], fftshift=True))
    return clean.float(), ctf, px


def _cfg(px, **kw):
    return PreprocessConfig(**{"box_nnet": 64, "particle_diameter_angstrom": 220.0, "angpix_nnet": px, **kw})


def test_shapes_channels_dtype(test_map):
    images, ctf, px = _projections(test_map)
    cfg = _cfg(px, box_nnet=48)
    out = preprocess_particles(images, torch.full((6,), px), ctf, torch.zeros(6, dtype=torch.bool), cfg)
    assert out.shape == (6, 8, 48, 48) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert cfg.n_channels == 8


def test_background_is_normalised(test_map):
    images, ctf, px = _projections(test_map)
    images = images * 37.0 + 5.0 + torch.randn_like(images) * 3.0
    cfg = _cfg(px)
    two = prepare_channels(images, torch.full((6,), px), ctf, torch.zeros(6, dtype=torch.bool), cfg)
    c = torch.arange(64) - 32
    outside = (c[:, None] ** 2 + c[None] ** 2) > (cfg.radius_px) ** 2
    bg = two[..., outside]
    assert torch.allclose(bg.mean(-1), torch.zeros(6, 2), atol=1e-4)
    assert torch.allclose(bg.std(-1), torch.ones(6, 2), atol=1e-4)


def test_phase_flip_channel_and_pre_flipped_data(test_map):
    images, ctf, px = _projections(test_map)
    cfg = _cfg(px)
    pix = torch.full((6,), px)
    normal = prepare_channels(images, pix, ctf, torch.zeros(6, dtype=torch.bool), cfg)
    # the second channel is the phase-flipped first one
    sign = torch.sign(compute_ctf(ctf, 64, fftshift=True))
    assert not torch.allclose(normal[:, 0], normal[:, 1], atol=0.1)
    # data flipped already (rlnCtfDataArePhaseFlipped = 1) give the same two channels: no second flip
    flipped_data = irfft2_centred(phase_flip(rfft2_centred(images), sign), 64)
    pre = prepare_channels(flipped_data, pix, ctf, torch.ones(6, dtype=torch.bool), cfg)
    assert torch.allclose(pre, normal, atol=2e-3)
    # flipping makes a CTF-modulated projection (4 um defocus) look more like the clean projection
    vol, _ = test_map
    far = CtfParameters.constant(1, defocus_u_angstrom=40000.0, pixel_size_angstrom=px)
    truth = Projector(vol).project(torch.eye(3, dtype=torch.float64)[None])
    modulated = irfft2_centred(rfft2_centred(truth.float()) * compute_ctf(far, 64, fftshift=True), 64)
    one = prepare_channels(modulated, pix[:1], far, torch.zeros(1, dtype=torch.bool), cfg)
    f_truth = rfft2_centred(truth[0].float())
    strong = (compute_ctf(far, 64, fftshift=True)[0].abs() > 0.3) & (f_truth.abs() > 1e-3 * f_truth.abs().max())
    agree = [float(((rfft2_centred(one[0, k]) * f_truth.conj()).real[strong] > 0).float().mean()) for k in (0, 1)]
    assert agree[1] > 0.99 and agree[0] < 0.8, agree  # flipped: every phase right; raw: CTF sign flips


def test_other_pixel_size_gives_same_input(test_map):
    """An optics group at half the pixel size (twice the box) preprocesses to the same input."""
    images, ctf, px = _projections(test_map)
    fine = resample_images(images, px, px / 2)  # (6, 128, 128) at px / 2
    ctf_fine = dataclasses.replace(ctf, pixel_size_angstrom=torch.full((6,), px / 2, dtype=torch.float64))
    cfg = _cfg(px)
    a = preprocess_particles(images, torch.full((6,), px), ctf, torch.zeros(6, dtype=torch.bool), cfg)
    b = preprocess_particles(fine, torch.full((6,), px / 2), ctf_fine, torch.zeros(6, dtype=torch.bool), cfg)
    corr = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    assert corr > 0.99, corr


def test_mixed_pixel_sizes_in_one_batch(test_map):
    images, ctf, px = _projections(test_map)
    pix = torch.tensor([px, px, px, 4.0, 4.0, 4.0])
    ctf = dataclasses.replace(ctf, pixel_size_angstrom=pix.double())
    cfg = _cfg(px)
    out = preprocess_particles(images, pix, ctf, torch.zeros(6, dtype=torch.bool), cfg)
    ref = preprocess_particles(images[3:], pix[3:], ctf.select(slice(3, 6)),
                               torch.zeros(3, dtype=torch.bool), cfg)
    assert torch.allclose(out[3:], ref, atol=1e-5)


def test_mask_and_filter_bank(test_map):
    images, ctf, px = _projections(test_map)
    cfg = _cfg(px, particle_diameter_angstrom=200.0)
    two = prepare_channels(images, torch.full((6,), px), ctf, torch.zeros(6, dtype=torch.bool), cfg)
    out = finish_channels(two, cfg)
    # corners are masked
    assert out[..., :3, :3].abs().max() < 1e-4
    # sigma 0 is the masked image itself; larger sigmas are smoother (less high-frequency power)
    from relion_cryopares.data import circular_mask
    assert torch.allclose(out[:, 0], two[:, 0] * circular_mask(cfg), atol=1e-5)
    assert torch.allclose(out[:, 4], two[:, 1] * circular_mask(cfg), atol=1e-5)
    hf = [float((out[:, k, :, 1:] - out[:, k, :, :-1]).pow(2).mean()) for k in range(4)]
    assert hf[0] > hf[1] > hf[2] > hf[3]


def test_device_follows_input(test_map):
    images, ctf, px = _projections(test_map, n=2)
    out = preprocess_particles(images.double(), torch.full((2,), px), ctf,
                               torch.zeros(2, dtype=torch.bool), _cfg(px))
    assert out.device == images.device and out.dtype == torch.float32
    if torch.cuda.is_available():
        gpu = preprocess_particles(images.cuda(), torch.full((2,), px), ctf,
                                   torch.zeros(2, dtype=torch.bool), _cfg(px))
        assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), out, atol=1e-4)


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(box_nnet=128, particle_diameter_angstrom=150.0)
    assert cfg.angpix_nnet == 1.5 and cfg.sigmas_px == (0.0, 0.3, 1.0, 2.0)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    import json
    assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError):
        PreprocessConfig(box_nnet=4, particle_diameter_angstrom=100.0)
    with pytest.raises(InputError):
        PreprocessConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(InputError):
        preprocess_particles(torch.zeros(2, 8, 9), torch.ones(2), CtfParameters.constant(
            2, defocus_u_angstrom=1e4, pixel_size_angstrom=1.0), torch.zeros(2, dtype=torch.bool), cfg)
