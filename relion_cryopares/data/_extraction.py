"""Simulated particle extractions that look like real ones, with known ground truth.

Each image is made on a canvas of twice the box (shifted neighbours do not wrap around): the
projections of the map (the particle, a neighbour, the copies of an aggregate) and the projected
density of non-protein objects (carbon edge, ice: :mod:`._junk_painters`) are multiplied by the CTF
on the canvas (proteins with the optics' amplitude contrast, carbon and ice with their own), by the
detector MTF, cropped to the box; then detector noise is added, the image is normalised as RELION's
extraction does (background outside the particle circle mean 0, std 1; protein white as in RELION's
inverted extraction), and for some particles a strip along one side is set to 0 (a micrograph edge).

Detector model (``detector=True``; ``f`` = spatial frequency in units of Nyquist, 0..1 on the axes):

- signal MTF ``sinc(pi f / 2)`` (a counting detector's pixel aperture: 0.64 at Nyquist);
- noise power spectrum ``(0.25 + 0.75 sinc²(pi f / 2)) * (1 + 2.5 exp(-(f / 0.05)²))``: a counting
  detector's noise falls less than its MTF² (DQE(Nyquist) / DQE(0) = 0.73), and the low-frequency
  excess stands for ice-thickness and charging variations (2.5x more power below 0.05 Nyquist, i.e.
  below 1 / (40 px)). The noise spectrum is scaled to unit mean over the canvas grid.

Noise level: ``sigma² = mean variance over the box of clean centred good particles (CTF, MTF) / snr``,
set once for the whole set (junk shares it). Kinds of junk: ``carbon`` (a film edge across the box
near the centre), ``ice`` (a dense ellipsoid of 0.5-1.5 particle diameters), ``aggregate`` (the
centred particle and 2-3 more copies 0.25-0.6 diameters away), ``other_protein`` (another map),
``noise`` (noise only). ``neighbour_fraction`` of good particles have a neighbour 0.75-1.1 diameters
away. The truth is in ``rlnCryoparesSim*`` columns (kind, junk, neighbour, edge strip, pose; also in
the pose columns): the pose of the centred projection; random for carbon, ice and noise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import Projector, resample_volume
from relion_cryopares.fourier._fft import irfft2_centred, radial_frequency_2d, rfft2_centred, shift_rfft2
from relion_cryopares.geometry import euler_to_matrix

from . import _junk_painters as paint
from ._simulate import _ctf_table, _params, optics_table, random_blob_map, uniform_random_angles
from ._stacks import write_stack
from ._star import ParticleStar

log = logging.getLogger(__name__)

JUNK_KINDS = ("carbon", "ice", "aggregate", "other_protein", "noise")
MTF_NOISE_WHITE = 0.25      # share of the noise power that is not shaped by the MTF
LOW_FREQ_EXCESS = 2.5       # relative excess noise power at zero frequency
LOW_FREQ_WIDTH_NYQUIST = 0.05


@dataclass(frozen=True)
class ExtractionConfig:
    """What to simulate (see the module docstring); CTF ranges as :class:`SimulationConfig`."""

    n_good: int
    junk_fraction: float = 0.3
    junk_kinds: tuple[str, ...] = JUNK_KINDS
    neighbour_fraction: float = 0.15
    edge_strip_fraction: float = 0.03
    snr: float = 0.05
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    pixel_size_angstrom: float | None = None
    box: int | None = None
    defocus_min_angstrom: float = 8000.0
    defocus_max_angstrom: float = 25000.0
    astigmatism_max_angstrom: float = 500.0
    bfactor_angstrom2: float = 0.0
    max_shift_angstrom: float = 0.0
    detector: bool = True
    particle_diameter_angstrom: float | None = None
    optics_group: int = 1
    optics_group_name: str = "opticsGroup1"
    particles_per_stack: int = 500
    seed: int = 0


def detector_filters(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal MTF and noise amplitude spectrum (module docstring), ``(size, size//2+1)`` each, centred
    rfft layout; the noise amplitude gives unit variance to filtered unit white noise."""
    def shapes(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mtf = torch.sinc(f / 2)
        nps = (MTF_NOISE_WHITE + (1 - MTF_NOISE_WHITE) * mtf ** 2) * (
            1 + LOW_FREQ_EXCESS * torch.exp(-(f / LOW_FREQ_WIDTH_NYQUIST) ** 2))
        return mtf, nps
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    _, nps_full = shapes(2 * torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2))
    mtf, nps = shapes(2 * radial_frequency_2d(size).to(torch.float64))
    return mtf.float(), torch.sqrt(nps / nps_full.mean()).float()


def particle_diameter_angstrom(volume: torch.Tensor, pixel_size_angstrom: float) -> float:
    """Twice the 99th percentile of the distance from the box centre of the voxels above 10 % of the
    map's maximum (robust to specks of noise); ``0.8 * box`` when no voxel qualifies."""
    n = volume.shape[-1]
    c = torch.arange(n, dtype=torch.float32) - n // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r = torch.sqrt(x ** 2 + y ** 2 + z ** 2)[volume > 0.1 * volume.max()]
    if r.numel() < 10:
        return 0.8 * n * pixel_size_angstrom
    return 2 * (float(torch.quantile(r, 0.99)) + 0.5) * pixel_size_angstrom


def _kinds(cfg: ExtractionConfig, rng: np.random.Generator) -> np.ndarray:
    unknown = sorted(set(cfg.junk_kinds) - set(JUNK_KINDS))
    if unknown:
        raise InputError(f"unknown junk kinds {unknown} (known: {', '.join(JUNK_KINDS)})")
    if not 0 <= cfg.junk_fraction < 1:
        raise InputError(f"junk fraction {cfg.junk_fraction} is not in [0, 1)")
    n_junk = int(round(cfg.n_good / (1 - cfg.junk_fraction))) - cfg.n_good if cfg.junk_kinds else 0
    k = len(cfg.junk_kinds)
    counts = [n_junk // k + (i < n_junk % k) for i in range(k)]
    kinds = np.array(["good"] * cfg.n_good + [j for j, c in zip(cfg.junk_kinds, counts) for _ in range(c)],
                     dtype=object)
    return kinds[rng.permutation(len(kinds))]


def _plan(cfg: ExtractionConfig, kinds: np.ndarray, box: int, diameter_px: float,
          px: float, rng: np.random.Generator) -> dict:
    """Every random choice, drawn for every particle (used where its kind needs it)."""
    n = len(kinds)
    good = kinds == "good"

    def around(lo: float, hi: float, k: int) -> np.ndarray:  # (n, k, 2) offsets, lo..hi diameters
        phi, dist = rng.uniform(0, 2 * np.pi, (n, k)), rng.uniform(lo, hi, (n, k)) * diameter_px
        return np.stack([dist * np.cos(phi), dist * np.sin(phi)], -1)

    plan = dict(
        kinds=kinds, angles=uniform_random_angles(n, rng),
        origins=rng.uniform(-1, 1, (n, 2)) * cfg.max_shift_angstrom, ctf=_ctf_table(cfg, n, rng),
        neighbour=good & (rng.random(n) < cfg.neighbour_fraction),
        strip=good & (rng.random(n) < cfg.edge_strip_fraction),
        strip_side=rng.integers(0, 4, n), strip_px=np.round(rng.uniform(0.10, 0.35, n) * box).astype(int),
        extra_angles=uniform_random_angles(3 * n, rng).reshape(n, 3, 3),
        neighbour_offsets=around(0.75, 1.1, 1), aggregate_offsets=around(0.25, 0.6, 3),
        n_aggregate=rng.integers(2, 4, n),
        carbon_angle=rng.uniform(0, 2 * np.pi, n), carbon_offset=rng.uniform(-0.15, 0.15, n) * box,
        carbon_density=rng.uniform(*paint.CARBON_DENSITY_PEAKS, n),
        ice_centre=rng.uniform(-0.25, 0.25, (n, 2)) * diameter_px,
        ice_axes=rng.uniform(0.25, 0.75, (n, 1)) * diameter_px * rng.uniform(0.7, 1.0, (n, 2)),
        ice_angle=rng.uniform(0, np.pi, n))
    plan["shifts_px"] = -plan["origins"] / px
    return plan


class _Renderer:
    """Turns rows of a plan into images (module docstring for the steps)."""

    def __init__(self, volume: torch.Tensor, other: torch.Tensor, px: float, cfg: ExtractionConfig,
                 diameter_px: float):
        self.box, self.canvas, self.px, self.cfg = volume.shape[-1], 2 * volume.shape[-1], px, cfg
        self.diameter_px, self.corner = diameter_px, self.canvas // 2 - self.box // 2  # box inside canvas
        self.pure = {q: dataclasses.replace(cfg, amplitude_contrast=q) for q in (0.0, 1.0)}
        self.projectors = {"good": Projector(volume), "other": Projector(other)}
        mtf, noise = detector_filters(self.canvas)
        self.mtf, self.noise_amp = (mtf, noise) if cfg.detector else (None, None)
        c = torch.arange(self.box, dtype=torch.float32) - self.box // 2
        self.background = (c[:, None] ** 2 + c[None, :] ** 2) > min(diameter_px / 2, 0.45 * self.box) ** 2
        rng = np.random.default_rng(cfg.seed + 101)
        poses = euler_to_matrix(torch.from_numpy(uniform_random_angles(32, rng)))
        clean = self.projectors["good"].project(poses)
        self.peak = float(clean.amax(dim=(-2, -1)).mean())  # projected density of one particle's peak
        est = _plan(dataclasses.replace(cfg, neighbour_fraction=0.0, edge_strip_fraction=0.0,
                                        max_shift_angstrom=0.0),
                    np.array(["good"] * 64, dtype=object), self.box, diameter_px, px, rng)
        signal_var = float(self.clean(est, 0, 64).var(dim=(-2, -1)).mean())
        self.sigma = (signal_var / cfg.snr) ** 0.5
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.paint_gen = torch.Generator().manual_seed(cfg.seed + 2)

    def _proteins(self, plan: dict, b0: int, b1: int) -> torch.Tensor:
        """Centred rfft ``(b, canvas, canvas//2+1)`` of the projected proteins of rows b0:b1."""
        rows, mats, shifts, which = [], [], [], []
        for i in range(b0, b1):
            kind, s = plan["kinds"][i], plan["shifts_px"][i]
            copies = []
            if kind in ("good", "aggregate", "other_protein"):
                copies.append((plan["angles"][i], s))
            if kind == "good" and plan["neighbour"][i]:
                copies.append((plan["extra_angles"][i, 0], s + plan["neighbour_offsets"][i, 0]))
            if kind == "aggregate":
                copies += [(plan["extra_angles"][i, k], s + plan["aggregate_offsets"][i, k])
                           for k in range(plan["n_aggregate"][i])]
            for a, sh in copies:
                rows.append(i - b0), mats.append(a), shifts.append(sh)
                which.append("other" if kind == "other_protein" else "good")
        out = torch.zeros((b1 - b0, self.canvas, self.canvas // 2 + 1), dtype=torch.complex64)
        which = np.array(which)
        for name, projector in self.projectors.items():
            sel = np.flatnonzero(which == name)
            if sel.size == 0:
                continue
            proj = projector.project(euler_to_matrix(torch.from_numpy(np.stack(mats)[sel])))
            p = self.corner
            f = rfft2_centred(torch.nn.functional.pad(proj, [p, self.canvas - self.box - p] * 2))
            f = shift_rfft2(f, torch.from_numpy(np.stack(shifts)[sel]), self.canvas)
            out.index_add_(0, torch.from_numpy(np.array(rows)[sel]), f)
        return out

    def _objects(self, plan: dict, b0: int, b1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected density of carbon and ice (centred rfft) and its amplitude contrast, ``(b,)``."""
        kinds = plan["kinds"][b0:b1]
        dens = torch.zeros((b1 - b0, self.canvas, self.canvas))
        q = torch.zeros(b1 - b0, dtype=torch.float64)
        for kind, contrast in (("carbon", paint.CARBON_AMPLITUDE_CONTRAST),
                               ("ice", paint.ICE_AMPLITUDE_CONTRAST)):
            sel = np.flatnonzero(kinds == kind)
            if sel.size == 0:
                continue
            i = sel + b0
            if kind == "carbon":
                d = paint.carbon_edge(self.canvas, plan["carbon_angle"][i], plan["carbon_offset"][i],
                                      plan["carbon_density"][i], self.paint_gen)
            else:
                axes = plan["ice_axes"][i]
                d = paint.ice_blob(self.canvas, plan["ice_centre"][i], axes, plan["ice_angle"][i],
                                   paint.ICE_DENSITY_PEAKS_PER_DIAMETER * 2 * axes.max(1) / self.diameter_px)
            dens[torch.from_numpy(sel)] = d * self.peak
            q[torch.from_numpy(sel)] = contrast
        return rfft2_centred(dens), q

    def clean(self, plan: dict, b0: int, b1: int) -> torch.Tensor:
        """``(b, box, box)`` noise-free images of rows b0:b1 (CTF, MTF, cropped)."""
        phase, amp = (compute_ctf(_params(plan["ctf"], b0, b1, self.pure[q], self.px), self.canvas,
                                  fftshift=True) for q in (0.0, 1.0))  # pure phase / amplitude contrast

        def ctf(q: torch.Tensor | float) -> torch.Tensor:
            q = torch.as_tensor(q, dtype=torch.float32).reshape(-1, 1, 1)
            return torch.sqrt(1 - q ** 2) * phase + q * amp
        f = ctf(self.cfg.amplitude_contrast) * self._proteins(plan, b0, b1)
        kinds = plan["kinds"][b0:b1]
        if np.isin(kinds, ("carbon", "ice")).any():
            obj, q = self._objects(plan, b0, b1)
            f = f + ctf(q) * obj
        if self.mtf is not None:
            f = f * self.mtf
        s = self.corner
        return irfft2_centred(f, self.canvas)[:, s:s + self.box, s:s + self.box]

    def images(self, plan: dict, b0: int, b1: int) -> np.ndarray:
        """``(b, box, box)`` finished images: clean + detector noise, normalised, edge strips."""
        noise = torch.randn((b1 - b0, self.canvas, self.canvas), generator=self.noise_gen)
        if self.noise_amp is not None:
            noise = irfft2_centred(rfft2_centred(noise) * self.noise_amp, self.canvas)
        s = self.corner
        x = self.clean(plan, b0, b1) + self.sigma * noise[:, s:s + self.box, s:s + self.box]
        bg = x[:, self.background]
        x = (x - bg.mean(1)[:, None, None]) / bg.std(1)[:, None, None]
        for i in np.flatnonzero(plan["strip"][b0:b1]):
            w, side = plan["strip_px"][b0 + i], plan["strip_side"][b0 + i]
            region = [(slice(None), slice(0, w)), (slice(None), slice(self.box - w, None)),
                      (slice(0, w), slice(None)), (slice(self.box - w, None), slice(None))][side]
            x[i][region] = 0.0
        return x.numpy()


def simulate_extraction(volume: torch.Tensor, pixel_size_angstrom: float, cfg: ExtractionConfig,
                        out_dir: str | Path, stem: str = "extract", project_dir: str | Path = ".",
                        other_volume: torch.Tensor | None = None) -> ParticleStar:
    """Simulate an extraction of ``cfg.n_good`` particles of ``volume`` ``(n, n, n)`` (pixel size
    ``pixel_size_angstrom``) plus junk, write ``{stem}_{k:04d}.mrcs`` stacks in ``out_dir`` and return
    the particle table (``rlnImageName`` relative to ``project_dir``; not yet written).

    ``other_volume``: the ``other_protein`` map on the grid of ``volume`` (resampled alike); default
    a random-blob map of the same mass. Deterministic for ``cfg.seed``.
    """
    px = float(cfg.pixel_size_angstrom or pixel_size_angstrom)
    n_in = int(volume.shape[-1])
    natural = int(round(n_in * pixel_size_angstrom / px))
    box = int(cfg.box or natural + natural % 2)
    vol = resample_volume(volume.to(torch.float32), pixel_size_angstrom, px, box)
    if other_volume is None:
        other = random_blob_map(box, vol, seed=cfg.seed + 7)
    elif other_volume.shape != volume.shape:
        raise InputError(f"the other map has shape {tuple(other_volume.shape)}, not {tuple(volume.shape)}")
    else:
        other = resample_volume(other_volume.to(torch.float32), pixel_size_angstrom, px, box)
    diameter_px = (cfg.particle_diameter_angstrom or particle_diameter_angstrom(vol, px)) / px
    rng = np.random.default_rng(cfg.seed)
    plan = _plan(cfg, _kinds(cfg, rng), box, diameter_px, px, rng)
    renderer = _Renderer(vol, other, px, cfg, diameter_px)
    n, batch = len(plan["kinds"]), max(4, min(64, 2 ** 21 // box ** 2))  # memory: ~64 canvases of 128²
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel_dir = Path(os.path.relpath(out_dir.resolve(), Path(project_dir).resolve()))
    names, micrographs = [], []
    for s0 in range(0, n, cfg.particles_per_stack):
        s1 = min(n, s0 + cfg.particles_per_stack)
        stack = np.concatenate([renderer.images(plan, b0, min(s1, b0 + batch))
                                for b0 in range(s0, s1, batch)])
        name = f"{stem}_{s0 // cfg.particles_per_stack:04d}"
        write_stack(out_dir / f"{name}.mrcs", stack, px)
        names += [f"{i - s0 + 1:06d}@{rel_dir / name}.mrcs" for i in range(s0, s1)]
        micrographs += [str(rel_dir / f"{name}.mrc")] * (s1 - s0)
    kinds, angles, origins = plan["kinds"], plan["angles"], plan["origins"]
    particles = pd.DataFrame({
        "rlnImageName": names, "rlnMicrographName": micrographs,
        "rlnCoordinateX": rng.uniform(box, 4000, n).round(1),
        "rlnCoordinateY": rng.uniform(box, 4000, n).round(1),
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": origins[:, 0], "rlnOriginYAngst": origins[:, 1], **plan["ctf"],
        "rlnOpticsGroup": np.full(n, cfg.optics_group, dtype=int),
        "rlnRandomSubset": (np.arange(n) % 2 + 1).astype(int),
        "rlnCryoparesSimKind": kinds.astype(str), "rlnCryoparesSimJunk": (kinds != "good").astype(int),
        "rlnCryoparesSimNeighbour": plan["neighbour"].astype(int),
        "rlnCryoparesSimEdgeStrip": plan["strip"].astype(int),
        "rlnCryoparesSimAngleRot": angles[:, 0], "rlnCryoparesSimAngleTilt": angles[:, 1],
        "rlnCryoparesSimAnglePsi": angles[:, 2],
        "rlnCryoparesSimOriginXAngst": origins[:, 0], "rlnCryoparesSimOriginYAngst": origins[:, 1]})
    optics = optics_table(px, box, cfg.voltage_kv, cfg.spherical_aberration_mm, cfg.amplitude_contrast)
    optics["rlnOpticsGroup"], optics["rlnOpticsGroupName"] = cfg.optics_group, cfg.optics_group_name
    log.info("simulated an extraction of %d particles (%d good, junk %s; box %d, %.3f A/px, SNR %s) in %s",
             n, cfg.n_good, {k: int((kinds == k).sum()) for k in cfg.junk_kinds}, box, px, cfg.snr, out_dir)
    return ParticleStar(optics=optics, particles=particles)
