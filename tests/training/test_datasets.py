"""Streaming datasets: batch reads through DataLoader workers equal in-process reads; labels;
splits; the simulated (pre-training) dataset."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from relion_cryopares.data import (BatchIndexSampler, ParticleDataset, PreprocessConfig,
                                   SimulatedParticleDataset, read_particle_star, read_volume)
from relion_cryopares.geometry import euler_to_matrix
from relion_cryopares.training import maybe_in_memory, split_half

PRE = PreprocessConfig(box_nnet=32, particle_diameter_angstrom=300.0, angpix_nnet=11.4)


def _star(project):
    return read_particle_star(project / "Import/job001/particles.star")


def test_workers_read_the_same_batches(c1_project, monkeypatch):
    monkeypatch.chdir(c1_project)
    star = _star(c1_project)
    rows = np.arange(0, 300, 3)
    ds = ParticleDataset(star, rows, PRE, finish=True, max_open_files=2)
    sampler = BatchIndexSampler(len(ds), 16, shuffle=True, seed=1, epoch=2)
    plain = list(DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0))
    workers = list(DataLoader(ds, sampler=sampler, batch_size=None, num_workers=2))
    assert len(plain) == len(workers) == 7
    for a, b in zip(plain, workers):
        assert torch.equal(a["index"], b["index"])
        assert torch.allclose(a["images"], b["images"], atol=1e-4)  # workers run 1 thread
    first = plain[0]
    assert first["images"].shape == (16, 8, 32, 32)
    truth = euler_to_matrix(torch.from_numpy(star.angles_deg()[rows[first["index"].numpy()]])).float()
    assert torch.allclose(first["matrices"], truth, atol=1e-6)
    assert torch.equal(first["weights"], torch.ones(16))
    assert ds.reader.n_open <= 2
    # every position once per epoch; the order depends on the epoch; a resumed epoch skips batches
    seen = np.sort(np.concatenate([b["index"].numpy() for b in plain]))
    assert np.array_equal(seen, np.arange(len(ds)))
    other = BatchIndexSampler(len(ds), 16, shuffle=True, seed=1, epoch=3).batches()
    assert not np.array_equal(other[0], sampler.batches()[0])
    resumed = BatchIndexSampler(len(ds), 16, shuffle=True, seed=1, epoch=2, start_batch=3)
    assert len(resumed) == 4 and np.array_equal(next(iter(resumed)), sampler.batches()[3])


def test_in_memory_copy_matches_streaming(c1_project, monkeypatch):
    monkeypatch.chdir(c1_project)
    star = _star(c1_project)
    stream = ParticleDataset(star, np.arange(40), PRE, finish=True)
    mem = maybe_in_memory(ParticleDataset(star, np.arange(40), PRE, finish=False), PRE, True, 100)
    assert type(mem).__name__ == "InMemoryDataset"
    pos = np.array([5, 1, 30])
    assert torch.allclose(mem[pos]["images"], stream[pos]["images"], atol=1e-5)
    too_big = maybe_in_memory(ParticleDataset(star, np.arange(40), PRE, finish=False), PRE, True, 0.0)
    assert isinstance(too_big, ParticleDataset) and too_big.finish


def test_split_weights_and_halves(c1_project):
    star = _star(c1_project)
    w = np.ones(len(star))
    w[:10] = 0.001  # below the 0.01 minimum: dropped
    star = star.with_columns(rlnMaxValueProbDistribution=w)
    s1 = split_half(star, 1, 0.3, 0.01, seed=0)
    s2 = split_half(star, 2, 0.3, 0.01, seed=0)
    subsets = star.random_subset()
    assert set(s1.train) | set(s1.val) | set(s1.dropped) == set(np.flatnonzero(subsets == 1))
    assert not set(s1.train) & set(s1.val)
    assert not (set(s1.train) | set(s1.val)) & (set(s2.train) | set(s2.val))
    assert len(s1.dropped) == 5 and all(w[s1.dropped] < 0.01)
    assert abs(len(s1.val) / (len(s1.val) + len(s1.train)) - 0.3) < 0.01
    again = split_half(star, 1, 0.3, 0.01, seed=0)
    assert np.array_equal(again.val, s1.val)
    assert not np.array_equal(split_half(star, 1, 0.3, 0.01, seed=1).val, s1.val)
    ds = ParticleDataset(star.select(np.arange(20)), None, PRE)
    assert torch.allclose(ds.weights[:10], torch.full((10,), 0.001))


def test_simulated_dataset_resembles_the_real_particles(c1_project, monkeypatch):
    """Noise-free simulation at the particles' poses, shifts and CTFs correlates with the real
    (noisy) particle images; with noise it is deterministic per batch."""
    monkeypatch.chdir(c1_project)
    star = _star(c1_project)
    vol, px = read_volume(c1_project / "reference.mrc")
    rows = np.arange(8)
    real = ParticleDataset(star, rows, PRE, finish=False)[np.arange(8)]["images"]
    clean = SimulatedParticleDataset(torch.from_numpy(vol.copy()), px, star, rows, PRE, snr=0.0)[np.arange(8)]
    corr = [float(torch.corrcoef(torch.stack([real[i, 0].flatten(), clean["images"][i, 0].flatten()]))[0, 1])
            for i in range(8)]
    assert min(corr) > 0.5, corr  # SNR 1 data
    noisy = SimulatedParticleDataset(torch.from_numpy(vol.copy()), px, star, rows, PRE, snr=0.3)
    assert noisy.noise_sigma > 0
    assert torch.equal(noisy[np.arange(8)]["images"], noisy[np.arange(8)]["images"])
    assert torch.equal(noisy[np.arange(8)]["matrices"], clean["matrices"])


def test_mixed_optics_groups_in_one_batch(c1_project, monkeypatch):
    """Particles of a second optics group (half the pixel size, twice the box) in the same batch
    preprocess like the originals."""
    import pandas as pd

    from relion_cryopares.data import ImageStackReader, ParticleStar, write_stack
    from relion_cryopares.fourier import resample_images

    monkeypatch.chdir(c1_project)
    star = _star(c1_project).select(np.arange(12))
    with ImageStackReader() as reader:
        images = torch.from_numpy(star.read_images(reader, np.arange(6, 12)))
    px = float(star.pixel_size_angstrom()[0])
    fine = resample_images(images, px, px / 2)
    write_stack(c1_project / "fine.mrcs", fine.numpy(), px / 2)
    optics = pd.concat([star.optics, star.optics.assign(rlnOpticsGroup=2, rlnOpticsGroupName="fine",
                                                        rlnImagePixelSize=px / 2, rlnImageSize=fine.shape[-1])],
                       ignore_index=True)
    particles = star.particles.copy()
    particles.loc[6:, "rlnOpticsGroup"] = 2
    particles.loc[6:, "rlnImageName"] = [f"{i:06d}@fine.mrcs" for i in range(1, 7)]
    mixed = ParticleStar(optics, particles)
    a = ParticleDataset(star, None, PRE)[np.arange(12)]["images"]
    b = ParticleDataset(mixed, None, PRE)[np.arange(12)]["images"]
    assert b.shape == a.shape
    for i in range(12):
        corr = torch.corrcoef(torch.stack([a[i].flatten(), b[i].flatten()]))[0, 1]
        assert corr > 0.99, (i, float(corr))


def test_unusable_images_get_weight_zero_and_finite_channels(c1_project, monkeypatch, tmp_path):
    """NaN/Inf pixels or a constant image in a training stack never end training: the image is
    zeroed and its weight is 0, streamed or kept in memory."""
    import mrcfile

    from relion_cryopares.data import parse_image_name, write_particle_star

    monkeypatch.chdir(c1_project)
    star = _star(c1_project).select(np.arange(12))
    for row, value in ((2, np.nan), (5, np.inf), (7, None)):
        index, stack = parse_image_name(star.image_names()[row])
        copy = tmp_path / f"bad{row}.mrcs"
        with mrcfile.open(stack) as src:
            data = np.array(src.data[index:index + 1])
        data[0] = 3.0 if value is None else data[0]
        if value is not None:
            data[0, 4:9, 4:9] = value
        with mrcfile.new(copy) as dst:
            dst.set_data(data.astype(np.float32))
        star.particles.loc[row, "rlnImageName"] = f"000001@{copy}"
    write_particle_star(tmp_path / "bad.star", star)
    for ds in (ParticleDataset(read_particle_star(tmp_path / "bad.star"), None, PRE, finish=True),
               maybe_in_memory(ParticleDataset(read_particle_star(tmp_path / "bad.star"), None, PRE, finish=False),
                               PRE, True, 100)):
        batch = ds[np.arange(12)]
        assert torch.isfinite(batch["images"]).all()
        assert batch["weights"].tolist() == [0.0 if i in (2, 5, 7) else 1.0 for i in range(12)]
