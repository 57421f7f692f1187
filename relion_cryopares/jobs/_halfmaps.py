"""Gold-standard half maps from a particle STAR with poses: shared by every job that reconstructs.

Particles stream through in batches (memory bounded by the box); each half set (rlnRandomSubset)
goes into its own :class:`FourierAccumulator`, which can be saved and grown on a continue.
Particles of optics groups with another pixel size or box are resampled to the reconstruction grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.data import ImageStackReader, ParticleStar, image_problems, write_volume
from relion_cryopares.fourier import (FourierAccumulator, centre_crop_or_pad_images, fsc_curve,
                                      fsc_to_ssnr, masked_fsc_corrected, resample_images, resolution_at)
from relion_cryopares.geometry import euler_to_matrix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructionGrid:
    """The box (px) and pixel size (Å) of the maps."""

    box: int
    pixel_size_angstrom: float

    @staticmethod
    def of(star: ParticleStar) -> "ReconstructionGrid":
        """The grid of the particles' most common optics group."""
        sizes, pix = star.image_size_px(), star.pixel_size_angstrom()
        values, counts = np.unique(np.stack([sizes, pix], 1), axis=0, return_counts=True)
        box, px = values[int(np.argmax(counts))]
        return ReconstructionGrid(int(box), float(px))


def particle_images_on_grid(star: ParticleStar, rows: np.ndarray, reader: ImageStackReader,
                            grid: ReconstructionGrid) -> torch.Tensor:
    """Images ``(k, box, box)`` of ``rows``, resampled/cropped to ``grid`` where needed."""
    images = torch.from_numpy(star.read_images(reader, rows))
    pix = star.pixel_size_angstrom()[rows]
    if images.shape[-1] == grid.box and np.allclose(pix, grid.pixel_size_angstrom):
        return images
    out = torch.empty((len(rows), grid.box, grid.box))
    for p in np.unique(pix):
        sel = np.flatnonzero(pix == p)
        r = resample_images(images[sel], float(p), grid.pixel_size_angstrom)
        out[sel] = centre_crop_or_pad_images(r, grid.box)
    return out


def insert_particles(acc: FourierAccumulator, star: ParticleStar, rows: np.ndarray,
                     reader: ImageStackReader, grid: ReconstructionGrid,
                     symmetry: torch.Tensor | None, weights: np.ndarray | None = None,
                     angles_deg: np.ndarray | None = None,
                     origins_angstrom: np.ndarray | None = None) -> list[str | None]:
    """Insert the particles ``rows`` of ``star`` into ``acc`` (CTF, shifts, weights, symmetry).

    ``angles_deg``/``origins_angstrom`` ``(len(rows), 3/2)`` override the STAR's poses. Bad images
    (:func:`~relion_cryopares.data.image_problems`: NaN/Inf pixels, a constant image) are skipped,
    never inserted (one would spoil the whole map); returns each row's problem (None: inserted)."""
    images = particle_images_on_grid(star, rows, reader, grid)
    problems = image_problems(images)
    good = np.array([p is None for p in problems], dtype=bool)
    if not good.all():
        if not good.any():
            return problems
        rows, images = rows[good], images[torch.from_numpy(good)]
        weights = None if weights is None else np.asarray(weights)[good]
        angles_deg = None if angles_deg is None else np.asarray(angles_deg)[good]
        origins_angstrom = None if origins_angstrom is None else np.asarray(origins_angstrom)[good]
    ang = star.angles_deg()[rows] if angles_deg is None else angles_deg
    org = star.origins_angstrom()[rows] if origins_angstrom is None else origins_angstrom
    params = star.ctf_parameters(rows)
    params = type(params)(**{**params.__dict__, "pixel_size_angstrom":
                             torch.full((len(rows),), grid.pixel_size_angstrom, dtype=torch.float64)})
    ctf = compute_ctf(params, acc.ctf_grid_size(), fftshift=True, device=acc.device)
    flipped = _phase_flipped(star, rows)
    if flipped.any():  # data already multiplied by sign(CTF): only |CTF| remains to correct
        ctf[torch.from_numpy(flipped)] = ctf[torch.from_numpy(flipped)].abs()
    acc.insert(images, euler_to_matrix(torch.from_numpy(np.asarray(ang, np.float64))),
               torch.from_numpy(np.asarray(org, np.float64) / grid.pixel_size_angstrom), ctf,
               None if weights is None else torch.from_numpy(np.asarray(weights, np.float32)),
               symmetry)
    return problems


def _phase_flipped(star: ParticleStar, rows: np.ndarray) -> np.ndarray:
    groups = star.optics_groups()
    numbers = star.optics_group_numbers()[rows]
    return np.array([groups[int(g)].ctf_phase_flipped for g in numbers], dtype=bool)


@dataclass
class HalfMapResult:
    """Maps and FSC of a finished reconstruction."""

    half1: torch.Tensor
    half2: torch.Tensor
    full: torch.Tensor
    fsc: np.ndarray
    resolution_0143_angstrom: float
    resolution_05_angstrom: float
    n_particles: tuple[float, float]


def finish_half_maps(acc1: FourierAccumulator, acc2: FourierAccumulator,
                     grid: ReconstructionGrid, mask: torch.Tensor | None = None
                     ) -> HalfMapResult:
    """Half maps (each Wiener-regularised with its own SSNR from the half-map FSC), the full map
    from both halves, and the FSC of the half maps (when ``mask`` is given: masked and corrected for
    the mask by phase randomisation, :func:`~relion_cryopares.fourier.masked_fsc_corrected`)."""
    plain1, plain2 = acc1.reconstruct(), acc2.reconstruct()
    fsc_plain = fsc_curve(plain1, plain2) if mask is None else masked_fsc_corrected(plain1, plain2, mask)
    half1 = acc1.reconstruct(ssnr=fsc_to_ssnr(fsc_plain, full_map=False))
    half2 = acc2.reconstruct(ssnr=fsc_to_ssnr(fsc_plain, full_map=False))
    both = FourierAccumulator(acc1.box, acc1.padded_size // acc1.box, acc1.device)
    both += acc1
    both += acc2
    full = both.reconstruct(ssnr=fsc_to_ssnr(fsc_plain, full_map=True))
    fsc = (fsc_curve(half1, half2) if mask is None
           else masked_fsc_corrected(half1, half2, mask)).cpu().numpy()
    return HalfMapResult(half1, half2, full, fsc,
                         resolution_at(fsc, 0.143, grid.box, grid.pixel_size_angstrom),
                         resolution_at(fsc, 0.5, grid.box, grid.pixel_size_angstrom),
                         (acc1.n_particles, acc2.n_particles))


def write_half_map_outputs(out_dir: Path, result: HalfMapResult, grid: ReconstructionGrid,
                           prefix: str = "run") -> dict[str, Path]:
    """RELION Refine3D names: ``run_half{1,2}_class001_unfil.mrc``, ``run_class001.mrc``,
    ``run_fsc.star`` and ``fsc.png``; every file written atomically."""
    from relion_cryopares.jobs._fscfiles import write_fsc_plot, write_fsc_star

    paths = {"half1": out_dir / f"{prefix}_half1_class001_unfil.mrc",
             "half2": out_dir / f"{prefix}_half2_class001_unfil.mrc",
             "map": out_dir / f"{prefix}_class001.mrc",
             "fsc_star": out_dir / f"{prefix}_fsc.star", "fsc_png": out_dir / "fsc.png"}
    write_volume(paths["half1"], result.half1.cpu().numpy(), grid.pixel_size_angstrom)
    write_volume(paths["half2"], result.half2.cpu().numpy(), grid.pixel_size_angstrom)
    write_volume(paths["map"], result.full.cpu().numpy(), grid.pixel_size_angstrom)
    write_fsc_star(paths["fsc_star"], result, grid)
    write_fsc_plot(paths["fsc_png"], result, grid)
    return paths


def iterate_batches(rows: np.ndarray, batch_size: int) -> Sequence[np.ndarray]:
    """``rows`` split in consecutive batches."""
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


ProgressCallback = Callable[[int], None]
