"""Local refinement of poses and shifts against a reference: the search for one batch of particles.

1. Coarse search: candidate poses ``Q(v) @ A`` for every rotation vector ``v`` of the local grid
   (:mod:`._grid`), scored at every allowed shift (:mod:`._match`) using the Fourier band up to
   ``coarse_shell`` (a prefix of the band: cheaper, and a smoother landscape).
2. Sub-step refinement (``fine``):

   - ``"grid"`` (default): a 3x3x3 grid at ``step / 3`` around the best coarse point scored with the
     full band, then the maximum of the least-squares quadratic through those 27 scores.
   - ``"quadratic"``: the quadratic through the best coarse point and its 26 lattice neighbours
     (no extra projections; coarse-band scores).
   - ``"none"``: the best coarse point.

3. Final pose: scored at every shift with the full band, the shift refined below a pixel by
   parabolic fits. The peak's significance (:mod:`._significance`) uses the correlation map of the
   final pose at shifts far outside the search window as the noise reference.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from relion_cryopares.geometry import canonical_symmetry_mate
from relion_cryopares.fourier import Projector, irfft2_centred, rfft2_centred, shift_rfft2, soft_sphere_mask

from ._band import Band, BandSlicer
from ._global import GlobalScan
from ._grid import LocalGrid, cube_offsets, local_rotation_grid, rotation_vector_to_matrix
from ._match import ShiftWindow, best_shift, build_bank, score_shifts, shift_phases
from ._peaks import quadratic_peak_3d
from ._significance import null_zscore, peak_significance
from ._spectra import whitening_weights

log = logging.getLogger(__name__)

FINE_MODES = ("none", "quadratic", "grid")


@dataclass(frozen=True)
class RefineConfig:
    """What the local search does (pixels are the particles' pixels).

    ``range_deg``/``step_deg``: the rotation-vector grid; ``shift_range_px``: largest change of the
    origin; ``max_shell``: highest Fourier shell used (the reference's low-pass, ``box * pixel /
    resolution``); ``min_shell``: lowest (1 skips only the DC term); ``coarse_shell``: highest shell
    of the coarse search (None: ``max_shell``); ``mask_radius_px``: soft circular mask (cosine edge
    of ``mask_edge_px`` outside the radius) on the centred images for the search (None: none);
    ``fine``: sub-step refinement (module docstring); ``grid_shape``: ``"ball"`` (isotropic,
    default) or ``"cube"`` of rotation vectors; ``global_starts``: this many extra starting poses per
    particle from a coarse scan of all of SO(3) (:mod:`._global`; 0: none), on the HEALPix grid of
    ``global_order`` scored up to Fourier shell ``global_shell``; ``polish``: with several starts, one
    more search centred on the best pose (:meth:`LocalRefiner.refine`).
    """

    range_deg: float = 6.0
    step_deg: float = 2.0
    shift_range_px: float = 5.0
    max_shell: int = 32
    min_shell: int = 1
    coarse_shell: int | None = None
    mask_radius_px: float | None = None
    mask_edge_px: float = 5.0
    fine: str = "grid"
    grid_shape: str = "ball"
    global_starts: int = 0
    global_order: int = 2
    global_shell: int = 8
    polish: bool = True

    def __post_init__(self) -> None:
        if self.fine not in FINE_MODES:
            raise ValueError(f"fine must be one of {FINE_MODES}, not {self.fine!r}")


def coarse_shell(box: int, pixel_size_angstrom: float, radius_angstrom: float, step_deg: float,
                 max_shell: int) -> int:
    """Highest shell of the coarse search: the resolution at which one grid step moves the edge of the
    particle by a quarter of a resolution element (``4 * radius * step``), at least 8 shells."""
    resolution = 4.0 * radius_angstrom * math.radians(step_deg)
    shell = int(math.floor(box * pixel_size_angstrom / max(resolution, 1e-6)))
    return int(min(max_shell, max(8, shell)))


def search_config(box: int, pixel_size_angstrom: float, range_deg: float = 6.0, step_deg: float = 2.0,
                  lowpass_angstrom: float = 6.0, particle_diameter_angstrom: float | None = None,
                  shift_range_angstrom: float | None = None, fine: str = "grid",
                  mask: bool = True, global_starts: int = 3) -> RefineConfig:
    """The search for particles of ``box`` px at ``pixel_size_angstrom``, from the job's parameters.

    Particle diameter default ``0.8 * box * pixel``; shift range default 20 % of the particle
    radius; the Fourier band ends at the low-pass (or Nyquist); the coarse band follows
    :func:`coarse_shell`. With ``mask`` (default) the images are masked for the search as RELION
    masks them: a soft circle of the particle's diameter with a 5 px cosine edge outside it (kept
    inside the box), so that a neighbouring particle reaching into the box cannot pull the pose.
    The significance is still computed on the unmasked image (:class:`LocalRefiner`): a mask makes
    the correlation map non-stationary, which inflates the significance of pure noise (34 % of noise
    images "significant" instead of 2 %). ``global_starts`` (default 3) extra starting poses come from
    a global scan (:mod:`._global`) on the order-2 HEALPix grid (15°) scored up to the shell where
    one 15° step moves the particle's edge by a quarter of a resolution element (at least 8).
    """
    diameter = 0.8 * box * pixel_size_angstrom if particle_diameter_angstrom is None else particle_diameter_angstrom
    radius = 0.5 * diameter
    shift = 0.2 * radius if shift_range_angstrom is None else shift_range_angstrom
    max_shell = box // 2 - 1
    mask_edge_px = 5.0
    mask_radius_px = min(radius / pixel_size_angstrom, box / 2.0 - mask_edge_px) if mask else None
    if lowpass_angstrom > 0:
        max_shell = min(max_shell, int(math.floor(box * pixel_size_angstrom / lowpass_angstrom)))
    return RefineConfig(range_deg=range_deg, step_deg=step_deg, shift_range_px=shift / pixel_size_angstrom,
                        max_shell=max_shell,
                        coarse_shell=coarse_shell(box, pixel_size_angstrom, radius, step_deg, max_shell),
                        mask_radius_px=mask_radius_px, mask_edge_px=mask_edge_px, fine=fine,
                        global_starts=int(global_starts),
                        global_shell=coarse_shell(box, pixel_size_angstrom, radius, 15.0, max_shell))


@dataclass
class RefineResult:
    """Per particle: refined ``poses`` ``(b, 3, 3)``; ``origin_change_px`` ``(b, 2)`` (x, y), the new
    RELION origin is the old one plus this; ``score`` ``(b,)`` at the final pose and shift;
    ``grid_scores`` ``(b, R)`` of the coarse search (around the kept start); ``zscore`` and
    ``significance`` ``(b,)``; ``candidate`` ``(b,)`` which starting pose was kept (0 with one start)."""

    poses: torch.Tensor
    origin_change_px: torch.Tensor
    score: torch.Tensor
    grid_scores: torch.Tensor
    zscore: torch.Tensor
    significance: torch.Tensor
    candidate: torch.Tensor | None = None


def _better(new: RefineResult, old: RefineResult, k: int | None) -> RefineResult:
    """Per particle the result with the higher final score; ``k`` the index of ``new``'s start (None:
    a polish of ``old``, which keeps ``old``'s start)."""
    better = new.score > old.score
    merged = [torch.where(better.view(-1, *([1] * (n.dim() - 1))), n, o) for n, o in zip(_fields(new), _fields(old))]
    candidate = old.candidate if k is None else torch.where(better, k, old.candidate)
    return RefineResult(*merged, candidate=candidate)


def _fields(result: RefineResult) -> tuple[torch.Tensor, ...]:
    """The per-particle tensors of ``result`` that a better candidate replaces."""
    return (result.poses, result.origin_change_px, result.score, result.grid_scores, result.zscore,
            result.significance)


class LocalRefiner:
    """Refines batches of particles against one reference map (prepared once)."""

    def __init__(self, reference: torch.Tensor, config: RefineConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.size = int(reference.shape[-1])
        self.device = torch.device(device)
        self.projector = Projector(reference.to(self.device, torch.float32))
        self.band = Band.of(self.size, config.min_shell, config.max_shell, self.device)
        self.slicer = BandSlicer(self.projector, self.band)
        coarse = config.max_shell if config.coarse_shell is None else min(config.coarse_shell, config.max_shell)
        self.coarse_count = self.band.count_up_to(coarse)
        self.grid: LocalGrid = local_rotation_grid(config.range_deg, config.step_deg, config.grid_shape)
        self.grid_matrices = self.grid.matrices.to(self.device, torch.float32)
        self.neighbours = self.grid.neighbour_table().to(self.device)
        self.window = ShiftWindow.of(config.shift_range_px, self.device)
        self.phases = shift_phases(self.band, self.window)
        self.scan: GlobalScan | None = None
        if config.global_starts > 0:
            self.scan = GlobalScan(self.slicer, self.band.count_up_to(min(config.global_shell, config.max_shell)),
                                   self.window, config.global_order)
        self.mask = None
        if config.mask_radius_px is not None:
            self.mask = soft_sphere_mask(self.size, config.mask_radius_px, config.mask_edge_px, device=self.device)

    def hypotheses(self, n_starts: int) -> int:
        """Poses x shifts searched per particle from ``n_starts`` starts (global ones included) plus
        the global scan's grid: the multiple-testing count of the significance."""
        scan = len(self.scan) if self.scan is not None else 0
        return (len(self.grid) * int(n_starts) + scan) * self.window.n_allowed

    def refine(self, images: torch.Tensor, poses: torch.Tensor, origins_px: torch.Tensor,
               ctf: torch.Tensor) -> RefineResult:
        """Refine one batch.

        Parameters
        ----------
        images: ``(b, n, n)`` particle images (the reference's box and pixel size).
        poses: ``(b, 3, 3)`` starting pose matrices (RELION's A), or ``(b, K, 3, 3)``: ``K``
            starting poses per particle (e.g. the network's top-K). With ``global_starts`` ``G``,
            the ``G`` best poses of the global scan follow them (candidates ``K .. K + G - 1``).
            Each start is searched within ``range_deg`` and the result with the highest final score
            is kept (:attr:`RefineResult.candidate` says which); the significance then counts the
            hypotheses of every start.
        origins_px: ``(b, 2)`` starting RELION origins (x, y) in pixels.
        ctf: ``(b, n, n//2+1)`` CTF in the centred rfft layout (phase-flipped data: ``|CTF|``).
        """
        starts = poses.to(self.device, torch.float32)
        if starts.dim() == 3:
            starts = starts[:, None]
        f = rfft2_centred(images.to(self.device, torch.float32))
        f = shift_rfft2(f, origins_px.to(self.device, torch.float32), self.size)  # centre: +origin
        w = whitening_weights(f, self.band.min_shell, self.band.max_shell)  # noise of the whole image
        ctf = ctf.to(self.device)
        plain = build_bank(self.band, self.phases, f, ctf, w)
        bank = plain
        if self.mask is not None:  # the search sees the particle only; the significance all of it
            bank = build_bank(self.band, self.phases, rfft2_centred(irfft2_centred(f, self.size) * self.mask),
                              ctf, w)

        if self.scan is not None:
            starts = torch.cat([starts, self.scan.best(bank, self.config.global_starts)], dim=1)
        best: RefineResult | None = None
        for k in range(starts.shape[1]):
            result = self._search(bank, plain, starts[:, k])
            best = result if best is None else _better(result, best, k)
        if self.config.polish and starts.shape[1] > 1:
            # a start is rarely at the basin's centre: the coarse grid around it and the sub-step fit
            # then stop short. One more search centred on the best pose (measured: median error of
            # good particles from network + global starts 1.08 -> 0.61 deg; from the true pose 0.63)
            best = _better(self._search(bank, plain, best.poses.to(starts.dtype)), best, None)
        best.significance = peak_significance(best.zscore, self.hypotheses(starts.shape[1]))
        return best

    def _search(self, bank, plain, a: torch.Tensor) -> RefineResult:
        """The search around one starting pose per particle, ``a`` ``(b, 3, 3)``, with the (masked)
        ``bank``; the z-score of the final pose from the unmasked ``plain`` bank."""
        candidates = self.grid_matrices[None] @ a[:, None]  # (b, R, 3, 3): Q @ A
        re, im = self.slicer(candidates, self.coarse_count)
        grid_scores, _ = best_shift(score_shifts(bank, re, im), self.window)
        del re, im
        best = grid_scores.argmax(dim=1)
        vectors = self._fine(bank, a, grid_scores, best)
        final = rotation_vector_to_matrix(vectors.to(torch.float64)).to(a.dtype) @ a
        re, im = self.slicer(final[:, None])
        score, d = best_shift(score_shifts(bank, re, im), self.window, subpixel=self.window.radius_px >= 0.5)
        z = null_zscore(self.band, plain, re[:, 0], im[:, 0], None if plain is not bank else score[:, 0],
                        self.window.radius_px)
        return RefineResult(final, -d[:, 0], score[:, 0], grid_scores, z, z.new_zeros(z.shape),
                            candidate=torch.zeros(z.shape, dtype=torch.long, device=z.device))

    def _fine(self, bank, a, grid_scores, best) -> torch.Tensor:
        mode, step = self.config.fine, self.config.step_deg
        vectors = self.grid.vectors_deg.to(self.device, torch.float32)[best]  # (b, 3)
        if mode == "none":
            return vectors
        if mode == "quadratic":
            idx = self.neighbours[best]  # (b, 27)
            vals = torch.gather(grid_scores, 1, idx.clamp(min=0))
            u, ok = quadratic_peak_3d(vals)
            use = ((idx >= 0).all(dim=1) & ok)[:, None]
            return vectors + torch.where(use, u * step, torch.zeros_like(u))
        cube = cube_offsets().to(self.device, torch.float32)
        fine = vectors[:, None] + cube[None] * (step / 3.0)  # (b, 27, 3)
        q = rotation_vector_to_matrix(fine.to(torch.float64)).to(a.dtype)
        re, im = self.slicer(q @ a[:, None])
        scores, _ = best_shift(score_shifts(bank, re, im), self.window)
        u, ok = quadratic_peak_3d(scores, max_offset=1.5)
        sampled = cube[scores.argmax(dim=1)]
        return vectors + torch.where(ok[:, None], u, sampled) * (step / 3.0)


def keep_canonical(start: torch.Tensor, refined: torch.Tensor, symmetry: torch.Tensor | None) -> torch.Tensor:
    """Refined poses ``(b, 3, 3)``, reduced to their canonical symmetry mate exactly where the
    starting pose was its own canonical mate (the search itself stays next to the given mate)."""
    if symmetry is None or symmetry.shape[0] == 1:
        return refined
    s = start.to(refined.dtype)
    was = (canonical_symmetry_mate(s, symmetry) - s).abs().amax(dim=(-2, -1)) < 1e-6
    return torch.where(was[:, None, None], canonical_symmetry_mate(refined, symmetry), refined)
