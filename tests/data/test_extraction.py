"""Simulated extractions (data/_extraction.py): counts per kind, determinism, optics groups, the edge
strips, neighbours, the normalisation, the detector noise spectrum and the junk's low frequencies.

Margins are from measured values (seeds fixed): noted next to each threshold.
"""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from relion_cryopares.data import (ExtractionConfig, ParticleStar, particle_diameter_angstrom,
                                   read_particle_star, simulate_extraction, write_particle_star)
from relion_cryopares.errors import InputError


def _run(test_map, tmp: Path, cfg: ExtractionConfig) -> tuple[ParticleStar, np.ndarray]:
    vol, px = test_map
    star = simulate_extraction(vol, px, cfg, tmp / "Extract", project_dir=tmp)
    images = np.concatenate([mrcfile.read(p) for p in sorted((tmp / "Extract").glob("*.mrcs"))])
    return star, images


def _kinds(star: ParticleStar) -> np.ndarray:
    return star.column("rlnCryoparesSimKind").astype(str)


def _lowpass_variance(images: np.ndarray, sigma_cycles_per_px: float = 0.05) -> np.ndarray:
    """``(b,)`` variance of the images after a Gaussian low-pass (sigma in cycles/px)."""
    k = np.fft.fftfreq(images.shape[-1])
    lp = np.fft.ifft2(np.fft.fft2(images) * np.exp(-(k[:, None] ** 2 + k[None] ** 2)
                                                   / (2 * sigma_cycles_per_px ** 2))).real
    return lp.var(axis=(-2, -1))


def _radius_px(n: int) -> np.ndarray:
    c = np.arange(n) - n // 2
    return np.hypot(c[:, None], c[None, :])


@pytest.fixture(scope="module")
def extraction(test_map, tmp_path_factory):
    cfg = ExtractionConfig(n_good=100, seed=3, edge_strip_fraction=0.1, max_shift_angstrom=5.0,
                           particles_per_stack=60)
    return (cfg, *_run(test_map, tmp_path_factory.mktemp("extraction"), cfg))


def test_counts_truth_columns_and_interleaving(extraction):
    cfg, star, images = extraction
    kinds = _kinds(star)
    assert len(star) == len(images) == 143  # round(100 / 0.7)
    assert {k: int((kinds == k).sum()) for k in set(kinds)} == {
        "good": 100, "carbon": 9, "ice": 9, "aggregate": 9, "other_protein": 8, "noise": 8}
    np.testing.assert_array_equal(star.column("rlnCryoparesSimJunk"), (kinds != "good").astype(int))
    assert star.column("rlnCryoparesSimNeighbour")[kinds != "good"].sum() == 0
    assert star.column("rlnCryoparesSimEdgeStrip")[kinds != "good"].sum() == 0
    for c in ("AngleRot", "AngleTilt", "AnglePsi", "OriginXAngst", "OriginYAngst"):
        np.testing.assert_array_equal(star.column(f"rlnCryoparesSim{c}"), star.column(f"rln{c}"))
    np.testing.assert_array_equal(star.column("rlnRandomSubset"), np.arange(len(star)) % 2 + 1)
    assert set(kinds[:60]) == set(kinds)  # the first stack already has every kind
    assert star.image_names()[-1] == "000023@Extract/extract_0002.mrcs"  # 143 = 60 + 60 + 23


def test_deterministic_for_a_seed(test_map, tmp_path, extraction):
    cfg, star, images = extraction
    again, images2 = _run(test_map, tmp_path, cfg)
    assert again.particles.equals(star.particles) and again.optics.equals(star.optics)
    np.testing.assert_allclose(images2, images, atol=1e-5)
    other, _ = _run(test_map, tmp_path / "seed4", ExtractionConfig(n_good=100, seed=4))
    assert not np.array_equal(_kinds(other), _kinds(star))


def test_second_optics_group_and_concat(test_map, tmp_path, extraction):
    cfg, star, _ = extraction
    cfg2 = ExtractionConfig(n_good=10, voltage_kv=200.0, pixel_size_angstrom=4.56, box=80, optics_group=2,
                            optics_group_name="krios200", spherical_aberration_mm=2.0, seed=1)
    star2, images2 = _run(test_map, tmp_path, cfg2)
    assert images2.shape[1:] == (80, 80)
    row = star2.optics.iloc[0]
    assert (row["rlnOpticsGroup"], row["rlnOpticsGroupName"], row["rlnImageSize"]) == (2, "krios200", 80)
    assert (row["rlnVoltage"], row["rlnImagePixelSize"], row["rlnSphericalAberration"]) == (200.0, 4.56, 2.0)
    assert (star2.column("rlnOpticsGroup") == 2).all()
    both = ParticleStar.concat([star, star2])
    write_particle_star(tmp_path / "both.star", both)
    back = read_particle_star(tmp_path / "both.star")
    groups = back.optics_groups()
    assert sorted(groups) == [1, 2] and groups[2].voltage_kv == 200.0 and groups[1].image_size_px == 64
    assert groups[2].pixel_size_angstrom == pytest.approx(4.56)
    assert (back.column("rlnCryoparesSimKind")[:len(star)] == _kinds(star)).all()


def test_edge_strips_are_constant(extraction):
    _, star, images = extraction
    strip = star.column("rlnCryoparesSimEdgeStrip") == 1
    assert strip.sum() >= 5  # 10 % of 100 good: 16 measured
    w = int(0.1 * images.shape[-1])
    for im in images[strip]:
        sides = [im[:, :w], im[:, -w:], im[:w], im[-w:]]
        assert any(np.all(s == 0) for s in sides)
    for im in images[~strip]:
        assert not any(np.all(s == 0) for s in (im[:, :w], im[:, -w:], im[:w], im[-w:]))


def test_background_is_normalised(test_map, extraction):
    _, star, images = extraction
    vol, px = test_map
    n = images.shape[-1]
    radius = min(particle_diameter_angstrom(vol, px) / px / 2, 0.45 * n)
    background = _radius_px(n) ** 2 > radius ** 2
    plain = (_kinds(star) == "good") & (star.column("rlnCryoparesSimEdgeStrip") == 0)
    bg = images[plain][:, background]
    np.testing.assert_allclose(bg.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(bg.std(1), 1, atol=2e-3)


def test_neighbours_add_density_away_from_the_centre(test_map, tmp_path):
    cfg = ExtractionConfig(n_good=120, junk_fraction=0.0, neighbour_fraction=0.5, edge_strip_fraction=0.0,
                           snr=1.0, seed=5)
    star, images = _run(test_map, tmp_path, cfg)
    neighbour = star.column("rlnCryoparesSimNeighbour") == 1
    assert 40 < neighbour.sum() < 80  # 61 measured
    outer = _lowpass_variance(np.where(_radius_px(images.shape[-1]) > 0.4 * images.shape[-1], images, 0))
    # measured: mean 0.019 with a neighbour, 0.0069 without
    assert outer[neighbour].mean() > 2 * outer[~neighbour].mean()


@pytest.mark.parametrize("detector", [True, False])
def test_detector_noise_spectrum(test_map, tmp_path, detector):
    cfg = ExtractionConfig(n_good=20, junk_fraction=0.8, junk_kinds=("noise",), seed=4, detector=detector)
    star, images = _run(test_map, tmp_path, cfg)
    noise = images[_kinds(star) == "noise"]
    assert len(noise) == 80
    n = noise.shape[-1]
    power = np.abs(np.fft.fftshift(np.fft.fft2(noise), axes=(-2, -1))) ** 2
    shell = np.round(_radius_px(n)).astype(int)
    ps = np.array([power[:, shell == k].mean() for k in range(n // 2 + 1)])
    ps /= ps[4:9].mean()
    high, mid, low = ps[26:33].mean(), ps[6:13].mean(), ps[1:3].mean()
    if detector:  # measured: high / mid 0.65 (model 0.6), low 1.96 (shell 1: 2.5)
        assert high / mid < 0.8 and low > 1.5
    else:  # white: 1.01 and 1.06 measured
        assert 0.9 < high / mid < 1.1 and low < 1.25


def test_carbon_and_ice_have_strong_low_frequencies(extraction):
    _, star, images = extraction
    kinds, lowpass = _kinds(star), _lowpass_variance(images)
    good = np.median(lowpass[kinds == "good"])  # 0.022 measured
    assert np.median(lowpass[kinds == "carbon"]) > 5 * good  # 0.41 measured
    assert np.median(lowpass[kinds == "ice"]) > 5 * good  # 0.80 measured


def test_bad_configurations(test_map, tmp_path):
    vol, px = test_map
    with pytest.raises(InputError):
        simulate_extraction(vol, px, ExtractionConfig(n_good=4, junk_kinds=("dust",)), tmp_path)
    with pytest.raises(InputError):
        simulate_extraction(vol, px, ExtractionConfig(n_good=4), tmp_path, other_volume=vol[:10, :10, :10])
