"""Simulated particles with known poses: the ground truth of every test, the demo and benchmarks.

Projections of a map at random (or given) poses and shifts, multiplied by a per-particle CTF, with
white Gaussian noise at a chosen SNR, written as a RELION 3.1 particle STAR file plus ``.mrcs``
stacks (streaming: memory is bounded by one stack). The true poses are the STAR's own
``rlnAngleRot/Tilt/Psi`` and ``rlnOriginXAngst/YAngst``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relion_cryopares.ctf import CtfParameters, compute_ctf
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import Projector
from relion_cryopares.geometry import euler_to_matrix, matrix_to_euler

from ._stacks import write_stack
from ._star import ParticleStar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Noise: ``sigma² = mean variance of the clean CTF-modulated projections
    (whole box) / snr`` (:func:`estimate_noise_sigma`), or ``noise_sigma`` when given; ``snr=None``
    and no ``noise_sigma`` give noise-free images."""

    n_particles: int
    snr: float | None = 0.1
    defocus_min_angstrom: float = 8000.0
    defocus_max_angstrom: float = 25000.0
    astigmatism_max_angstrom: float = 500.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.1
    bfactor_angstrom2: float = 0.0
    max_shift_angstrom: float = 0.0
    particles_per_stack: int = 500
    seed: int = 0
    ctf: bool = True
    noise_sigma: float | None = None  # overrides the SNR-derived noise level when set


def uniform_random_angles(n: int, generator: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` RELION Euler angles (degrees) of rotations uniform on SO(3)."""
    q = generator.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    m = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], -2)
    return matrix_to_euler(torch.from_numpy(m)).numpy()


def _ctf_table(cfg: SimulationConfig, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mean = rng.uniform(cfg.defocus_min_angstrom, cfg.defocus_max_angstrom, n)
    astig = rng.uniform(0, cfg.astigmatism_max_angstrom, n)
    return {"rlnDefocusU": mean + astig / 2, "rlnDefocusV": mean - astig / 2,
            "rlnDefocusAngle": rng.uniform(-180, 180, n), "rlnPhaseShift": np.zeros(n),
            "rlnCtfBfactor": np.full(n, cfg.bfactor_angstrom2), "rlnCtfScalefactor": np.ones(n)}


def optics_table(pixel_size_angstrom: float, box: int, voltage_kv: float = 300.0,
                 spherical_aberration_mm: float = 2.7, amplitude_contrast: float = 0.1
                 ) -> pd.DataFrame:
    """A one-group RELION 3.1 ``data_optics`` table."""
    return pd.DataFrame({
        "rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
        "rlnVoltage": [voltage_kv], "rlnSphericalAberration": [spherical_aberration_mm],
        "rlnAmplitudeContrast": [amplitude_contrast], "rlnImagePixelSize": [pixel_size_angstrom],
        "rlnImageSize": [box], "rlnImageDimensionality": [2]})


def estimate_noise_sigma(volume: torch.Tensor, pixel_size_angstrom: float, cfg: SimulationConfig,
                         n: int = 256) -> float:
    """Noise standard deviation giving ``cfg.snr``: from ``n`` clean projections at random poses with
    ``cfg``'s CTF distribution (seeded, so good and junk particles share one noise level)."""
    rng = np.random.default_rng(cfg.seed + 101)
    a = euler_to_matrix(torch.from_numpy(uniform_random_angles(n, rng)))
    ctf = None
    if cfg.ctf:
        ctf = compute_ctf(_params(_ctf_table(cfg, n, rng), 0, n, cfg, pixel_size_angstrom),
                          int(volume.shape[-1]), fftshift=True)
    clean = Projector(volume.to(torch.float32)).project(a, None, ctf)
    return float(clean.var(dim=(-2, -1)).mean().sqrt()) / float(cfg.snr) ** 0.5


def simulate_particles(volume: torch.Tensor, pixel_size_angstrom: float, cfg: SimulationConfig,
                       out_dir: str | Path, stem: str = "particles",
                       angles_deg: np.ndarray | None = None,
                       project_dir: str | Path = ".", batch_size: int = 256) -> ParticleStar:
    """Simulate ``cfg.n_particles`` particles of ``volume`` ``(n, n, n)`` and write their stacks.

    Parameters
    ----------
    volume: the map (its box is the particles' box), pixel size ``pixel_size_angstrom``.
    out_dir: where ``{stem}_{k:04d}.mrcs`` stacks go (created).
    angles_deg: ``(n_particles, 3)`` poses to use; uniform random when None.
    project_dir: ``rlnImageName`` paths are written relative to it (RELION's project directory).

    Returns the particle table (not yet written: see ``write_particle_star``).
    """
    rng = np.random.default_rng(cfg.seed)
    n, box = cfg.n_particles, int(volume.shape[-1])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    angles = uniform_random_angles(n, rng) if angles_deg is None else np.asarray(angles_deg, float)
    shifts = rng.uniform(-1, 1, (n, 2)) * cfg.max_shift_angstrom
    ctf_cols = _ctf_table(cfg, n, rng)
    projector = Projector(volume.to(torch.float32))
    noise_rng = torch.Generator().manual_seed(cfg.seed + 1)
    sigma = cfg.noise_sigma
    if sigma is None and cfg.snr is not None:
        sigma = estimate_noise_sigma(volume, pixel_size_angstrom, cfg)
    names, micrographs = [], []
    rel_dir = Path(os.path.relpath(out_dir.resolve(), Path(project_dir).resolve()))
    for s0 in range(0, n, cfg.particles_per_stack):
        s1 = min(n, s0 + cfg.particles_per_stack)
        stack = []
        for b0 in range(s0, s1, batch_size):
            b1 = min(s1, b0 + batch_size)
            a = euler_to_matrix(torch.from_numpy(angles[b0:b1]))
            ctf = None
            if cfg.ctf:
                ctf = compute_ctf(_params(ctf_cols, b0, b1, cfg, pixel_size_angstrom), box,
                                  fftshift=True)
            clean = projector.project(a, torch.from_numpy(-shifts[b0:b1] / pixel_size_angstrom), ctf)
            if sigma is not None:
                clean = clean + sigma * torch.randn(clean.shape, generator=noise_rng)
            stack.append(clean.numpy())
        stack_name = f"{stem}_{s0 // cfg.particles_per_stack:04d}.mrcs"
        write_stack(out_dir / stack_name, np.concatenate(stack), pixel_size_angstrom)
        names += [f"{i - s0 + 1:06d}@{rel_dir / stack_name}" for i in range(s0, s1)]
        micrographs += [str(rel_dir / f"{stem}_{s0 // cfg.particles_per_stack:04d}.mrc")] * (s1 - s0)
    particles = pd.DataFrame({
        "rlnImageName": names, "rlnMicrographName": micrographs,
        "rlnCoordinateX": rng.uniform(box, 4000, n).round(1),
        "rlnCoordinateY": rng.uniform(box, 4000, n).round(1),
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": shifts[:, 0], "rlnOriginYAngst": shifts[:, 1],
        **ctf_cols, "rlnOpticsGroup": np.ones(n, dtype=int),
        "rlnRandomSubset": (np.arange(n) % 2 + 1).astype(int),
        "rlnClassNumber": np.ones(n, dtype=int), "rlnMaxValueProbDistribution": np.ones(n)})
    optics = optics_table(pixel_size_angstrom, box, cfg.voltage_kv, cfg.spherical_aberration_mm,
                          cfg.amplitude_contrast)
    log.info("simulated %d particles (box %d, %.3f A/px, SNR %s) in %s", n, box,
             pixel_size_angstrom, cfg.snr, out_dir)
    return ParticleStar(optics=optics, particles=particles)


def _params(cols: dict[str, np.ndarray], b0: int, b1: int, cfg: SimulationConfig,
            pixel_size_angstrom: float) -> CtfParameters:
    t = {k: torch.from_numpy(np.asarray(v[b0:b1], dtype=np.float64)) for k, v in cols.items()}
    m = b1 - b0

    def full(x: float) -> torch.Tensor:
        return torch.full((m,), float(x), dtype=torch.float64)

    return CtfParameters(
        defocus_u_angstrom=t["rlnDefocusU"], defocus_v_angstrom=t["rlnDefocusV"],
        defocus_angle_deg=t["rlnDefocusAngle"], voltage_kv=full(cfg.voltage_kv),
        spherical_aberration_mm=full(cfg.spherical_aberration_mm),
        amplitude_contrast=full(cfg.amplitude_contrast), phase_shift_deg=t["rlnPhaseShift"],
        bfactor_angstrom2=t["rlnCtfBfactor"], scale=t["rlnCtfScalefactor"],
        pixel_size_angstrom=full(pixel_size_angstrom))


def gaussian_blob_map(box: int, centres_px: np.ndarray, sigma_px: float,
                      amplitudes: np.ndarray | None = None) -> torch.Tensor:
    """``(box, box, box)`` sum of isotropic Gaussians at ``centres_px`` ``(k, 3)`` (x, y, z) measured
    from the box centre."""
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.zeros((box, box, box))
    amps = np.ones(len(centres_px)) if amplitudes is None else amplitudes
    for (cx, cy, cz), a in zip(np.asarray(centres_px, dtype=np.float64), amps):
        vol += float(a) * torch.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
                                    / (2 * sigma_px ** 2))
    return vol


def random_blob_map(box: int, like: torch.Tensor, n_blobs: int = 40, seed: int = 0,
                    radius_fraction: float = 1 / 3.5) -> torch.Tensor:
    """A "different protein" of the same mass: ``n_blobs`` random Gaussian blobs (sigma ``box / 20``)
    inside a sphere of radius ``radius_fraction * box``, scaled so that its integrated density equals
    that of the positive density of ``like`` (for junk particles: projections of the wrong map)."""
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n_blobs, 3))
    pts *= (box * radius_fraction) * rng.uniform(0, 1, (n_blobs, 1)) ** (1 / 3) / np.linalg.norm(
        pts, axis=1, keepdims=True)
    vol = gaussian_blob_map(box, pts, sigma_px=box / 20)
    return vol * float(like.clamp(min=0).sum()) / float(vol.sum())


def with_ligand(volume: torch.Tensor, position_px: tuple[float, float, float] | None = None,
                sigma_px: float = 1.5, relative_density: float = 1.0) -> torch.Tensor:
    """A copy of the map with a small extra density (a "ligand") on the protein's surface: at
    ``position_px`` (x, y, z from the centre) or at the outermost voxel above half the maximum."""
    box = volume.shape[-1]
    if position_px is None:
        c = torch.arange(box, dtype=torch.float32) - box // 2
        z, y, x = torch.meshgrid(c, c, c, indexing="ij")
        r = torch.sqrt(x ** 2 + y ** 2 + z ** 2)
        inside = volume > 0.5 * volume.max()
        i = int(torch.argmax(torch.where(inside, r, torch.zeros_like(r))))
        zi, yi, xi = np.unravel_index(i, volume.shape)
        position_px = (xi - box // 2, yi - box // 2, zi - box // 2)
    blob = gaussian_blob_map(box, np.array([position_px]), sigma_px)
    return volume + relative_density * float(volume.max()) * blob


def simulate_junk(like: torch.Tensor, pixel_size_angstrom: float, cfg: SimulationConfig,
                  out_dir: str | Path, stem: str = "junk", noise_fraction: float = 0.5,
                  project_dir: str | Path = ".", other: torch.Tensor | None = None) -> ParticleStar:
    """Junk particles: a ``noise_fraction`` of pure-noise images and the rest projections of a
    different map (``other``, on the grid of ``like``; default a random-blob map), with the CTF and
    the noise level of :func:`simulate_particles` of ``like`` with ``cfg``. The STAR carries
    ``rlnCryoparesSimJunk`` = 1."""
    sigma = cfg.noise_sigma
    if sigma is None:
        sigma = estimate_noise_sigma(like, pixel_size_angstrom, cfg)
    n_noise = int(round(cfg.n_particles * noise_fraction))
    parts = []
    if cfg.n_particles - n_noise > 0:
        if other is None:
            other = random_blob_map(like.shape[-1], like, seed=cfg.seed + 7)
        elif other.shape != like.shape:
            raise InputError(f"the other map has shape {tuple(other.shape)}, not {tuple(like.shape)}")
        c = SimulationConfig(**{**cfg.__dict__, "n_particles": cfg.n_particles - n_noise,
                                "noise_sigma": sigma})
        parts.append(simulate_particles(other, pixel_size_angstrom, c, out_dir, f"{stem}_wrongmap",
                                        project_dir=project_dir))
    if n_noise > 0:
        c = SimulationConfig(**{**cfg.__dict__, "n_particles": n_noise, "seed": cfg.seed + 3,
                                "noise_sigma": sigma})
        parts.append(simulate_particles(torch.zeros_like(like), pixel_size_angstrom, c, out_dir,
                                        f"{stem}_noise", project_dir=project_dir))
    star = ParticleStar.concat(parts) if len(parts) > 1 else parts[0]
    return star.with_columns(rlnCryoparesSimJunk=np.ones(len(star), dtype=int))


def simulate_junk_variety(like: torch.Tensor, pixel_size_angstrom: float, cfg: SimulationConfig,
                          out_dir: str | Path, stem: str = "junk", n_maps: int = 4,
                          project_dir: str | Path = ".") -> ParticleStar:
    """Known junk of several kinds (for ``cryopares_train --junk_parts``): ``cfg.n_particles`` split
    over ``n_maps`` calls of :func:`simulate_junk`, each half pure noise and half projections of its
    own random-blob map, the maps ranging from 20 to 35 % of the box in radius and from 20 to 65 blobs."""
    parts = []
    for k in range(n_maps):
        n = cfg.n_particles // n_maps + (1 if k < cfg.n_particles % n_maps else 0)
        if n == 0:
            continue
        frac = 0.2 + 0.15 * k / max(n_maps - 1, 1)
        other = random_blob_map(like.shape[-1], like, n_blobs=20 + 45 * k // max(n_maps - 1, 1),
                                seed=cfg.seed * 100 + k, radius_fraction=frac)
        c = SimulationConfig(**{**cfg.__dict__, "n_particles": n, "seed": cfg.seed * 100 + k})
        parts.append(simulate_junk(like, pixel_size_angstrom, c, out_dir, f"{stem}{k}", project_dir=project_dir,
                                   other=other))
    return ParticleStar.concat(parts) if len(parts) > 1 else parts[0]

