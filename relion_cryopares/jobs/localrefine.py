"""cryopares_localrefine: local projection matching around each particle's pose, gold-standard half maps.

::

    cryopares_localrefine --o External/job031/ --in_parts External/job030/particles.star
        --in_3dref apo_map.mrc [--in_mask mask.mrc] [--sym D2] [--range 6] [--step 2] [--lowpass 6]
        [--shift_range 14] [--particle_diameter 180] [--top_k K] [--batch_size N] [--device auto] [--j N]

Each particle's pose (from ``cryopares_infer``) is refined within ``--range`` degrees and its origin
within ``--shift_range`` Å against the reference (resampled to the particles' grid, low-passed to
``--lowpass`` Å, masked by ``--in_mask``); see :mod:`relion_cryopares.refine` for the science. The
particle weight ``rlnParticleFigureOfMerit`` = the significance of the correlation peak; it weights
the reconstruction. The network's probability (``rlnCryoparesNetworkProbability``) is kept as a column
but no longer weights the maps: with both pruning stages and global starts it only down-weighted good
particles (realistic test set: FSC 0.143 21.24 Å with it, 20.85 Å without; true poses 20.95 Å).

Several starting poses (``--top_k K``; by default all the input carries): the particle's pose and the
network's next ``K - 1`` poses (``rlnCryoparesTop<k>Angle*``, written by ``cryopares_infer --top_k``)
are each searched, and the pose with the best correlation is kept (``rlnCryoparesRefineStart``: 1 for
the input pose, k for the network's k-th). A ±6° search cannot leave a wrong basin of the network's
posterior; another of its top poses often lies in the right one (demo data, tiny model: particles more
than 20° off after refinement 15.9 % with one start, 3.3 % with 5, 1.0 % with 10; time x K). The
significance counts the hypotheses of all searches. ``--global_starts G`` (default 3) adds the ``G``
best poses of a coarse scan of all of SO(3) (15° HEALPix grid, low resolution; see
:mod:`relion_cryopares.refine._global`) as starts ``K + 1 .. K + G``: on a realistic simulated
extraction the tiny network left 10.5 % of the good particles with no start in the right basin.
With several starts one more search is centred on the best pose found (``polish``: median error
1.08 -> 0.61° on the realistic test set). Each half set (``rlnRandomSubset``, assigned
where missing) is refined in its own batches and reconstructed into its own half map.

Images are masked for the search by a soft circle of ``--particle_diameter`` (default: the network
model's, found through the ``cryopares_infer`` job that wrote the input), as RELION masks them, so
that a neighbouring particle cannot pull the pose.

Second pruning stage (:mod:`relion_cryopares.jobs._refine_selection`): a particle whose refinement
z-score is below ``--refine_zscore_thr`` (``auto``: 2.75 widths of the good mode below the modal z-score of the
first refined chunk, at least the z of pure noise, stored for the job; ``none``; or a number) goes to ``rejected.star`` with ``rlnCryoparesRejectReason``
``refinement``; a particle whose image is unusable (NaN/Inf pixels, constant) is not refined and goes
there with ``bad_image``. Rejected particles are never refined again on a continue and never enter
the half maps. ``run.out`` gives the counts of both stages (the network's from the input's
``cryopares_infer_summary.json``).

Outputs (RELION Refine3D names, all written atomically): ``run_data.star`` (kept particles; every input column kept;
poses, ``rlnOriginXAngst/YAngst``, ``rlnParticleFigureOfMerit``, ``rlnRandomSubset`` set, plus
``rlnCryoparesNetworkProbability``, ``rlnCryoparesRefineScore``, ``rlnCryoparesRefineZscore`` and, with
several starts, ``rlnCryoparesRefineStart``), ``run_half1_class001_unfil.mrc``,
``run_half2_class001_unfil.mrc``, ``run_class001.mrc``, ``run_fsc.star``, ``fsc.png``,
``rejected.star``.

Incremental and restartable. The progress record in the job directory:

- ``localrefine_chunks/chunk_NNNNNN.star``: finished particles (input rows with refined columns), one
  file per chunk, each written atomically. A particle (``rlnImageName``) with a record is never
  refined again: a re-run on a grown STAR file refines only the new particles.
- ``localrefine_acc_<tag>/half{1,2}.pt``: the two half sets' Fourier sums, and
  ``localrefine_state.json`` naming that directory and the chunks it includes (replaced atomically
  after the sums are saved). Chunks recorded but not included (a kill between the two) are inserted
  from their records on the next run; sums are only ever added to, never recomputed.
- ``localrefine_state.json`` also holds the settings; a re-run with other settings or another
  reference fails with one line (start a new job instead).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from relion_cryopares.ctf import compute_ctf
from relion_cryopares.data import (BAD_IMAGE, ImageStackReader, ParticleStar, ensure_random_subsets, image_problems,
                                   read_particle_star, read_volume, write_particle_star)
from relion_cryopares.data import check_image_indices
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import FourierAccumulator
from relion_cryopares.geometry import euler_to_matrix, matrix_to_euler, symmetry_matrices
from relion_cryopares.jobs._halfmaps import (ReconstructionGrid, finish_half_maps, insert_particles,
                                             iterate_batches, particle_images_on_grid, write_half_map_outputs)
from relion_cryopares.jobs._refine_selection import (REASON_COLUMN, infer_summary, kept_mask, log_stages,
                                                     model_particle_diameter, parse_refine_threshold, reasons,
                                                     resolve_threshold, split_outputs)
from relion_cryopares.jobs._starts import resolve_top_k, starting_angles
from relion_cryopares.refine import (LocalRefiner, bytes_per_particle, choose_batch_size,
                                     keep_canonical, particle_weight, prepare_reference, search_config,
                                     to_particle_grid)
from relion_cryopares.relion import (Input, JobContext, JobSpec, OutputNode, Param, read_json, run_job,
                                     write_json_atomic)

log = logging.getLogger(__name__)

SPEC = JobSpec(
    name="cryopares_localrefine",
    description="local projection matching around each particle's pose; gold-standard half maps",
    params=(
        Param("sym", "str", "C1", "point-group symmetry (RELION name: C1, D2, D7, O, I, ...)"),
        Param("range", "float", 6.0, "search radius around each pose (degrees)", minimum=0.0, maximum=30.0),
        Param("step", "float", 2.0, "rotation grid step (degrees)", minimum=0.1, maximum=15.0),
        Param("top_k", "int", None, "starting poses per particle: the pose and the next K-1 network poses "
              "(cryopares_infer --top_k K), the best match kept; default: all the input carries",
              minimum=1, maximum=10),
        Param("lowpass", "float", 6.0, "low-pass filter of the reference (Å)", minimum=0.0),
        Param("shift_range", "float", None, "largest origin change (Å); default 20% of the particle radius",
              minimum=0.0),
        Param("particle_diameter", "float", None,
              "particle diameter (Å): the soft circular mask of the images during the search and the default "
              "shift range; default the network model's (via the cryopares_infer job of the input), else "
              "0.8 x box x pixel size", minimum=1.0),
        Param("global_starts", "int", 3, "extra starting poses per particle from a coarse global search "
              "(15° grid, low resolution), for particles whose network poses all missed; 0: none",
              minimum=0, maximum=10),
        Param("refine_zscore_thr", "str", "auto",
              "second pruning stage: particles whose refinement z-score is below it go to rejected.star; "
              "auto (fitted on the first refined chunk and stored), none, or a z"),
        Param("batch_size", "int", None, "particles per batch; default from the available memory", minimum=1),
        Param("device", "str", "auto", "auto, cpu, cuda or cuda:N"),
    ),
    inputs=(Input("in_parts", required=True, help="particles with poses (cryopares_infer output)"),
            Input("in_3dref", required=True, help="reference map (e.g. the apo map)"),
            Input("in_mask", help="mask multiplied into the reference and used for the FSC")),
)

#: Bumped when a change makes results incompatible with records of older runs.
ALGORITHM_VERSION = 2  # 2: images masked at the particle diameter for the search; second pruning stage
CHUNK_DIR = "localrefine_chunks"
STATE_FILE = "localrefine_state.json"
ACC_PREFIX = "localrefine_acc_"
#: Particles per chunk record (at least this many, or 8 batches).
CHUNK_PARTICLES = 1000
#: Save the Fourier sums at most this often (s) while running; always at the end.
SAVE_INTERVAL_S = 300.0
NETWORK_PROBABILITY = "rlnCryoparesNetworkProbability"
#: With ``--top_k`` > 1: which starting pose (1 = the input pose, k = the network's k-th) was kept.
START_COLUMN = "rlnCryoparesRefineStart"


# ------------------------------------------------------------------------------------------ setup
@dataclass(frozen=True)
class _Setup:
    grid: ReconstructionGrid
    refiner: LocalRefiner
    symmetry: torch.Tensor | None
    mask: torch.Tensor | None
    settings: dict
    device: torch.device
    batch_size: int
    top_k: int = 1
    threshold_choice: str | float = "auto"
    radius_px: float | None = None

    @property
    def n_starts(self) -> int:
        """Starting poses per particle: the network's ``top_k`` and the global scan's."""
        return self.top_k + self.refiner.config.global_starts


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available")
    return device


def _sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_map(path: Path, what: str, fallback_pixel: float, log_: logging.Logger) -> tuple[torch.Tensor, float]:
    volume, pixel = read_volume(path)
    if pixel <= 0:
        log_.warning("%s %s has no pixel size in its header; assuming the particles' %.4f Å", what, path,
                     fallback_pixel)
        pixel = fallback_pixel
    return torch.from_numpy(np.array(volume, dtype=np.float32)), float(pixel)


def _setup(ctx: JobContext, star: ParticleStar, top_k: int) -> _Setup:
    p = ctx.params
    grid = ReconstructionGrid.of(star)
    box, px = grid.box, grid.pixel_size_angstrom
    symmetry = symmetry_matrices(p["sym"])
    device = _device(p["device"])
    ref_path, mask_path = ctx.args.in_3dref, ctx.args.in_mask
    volume, vol_px = _read_map(ref_path, "reference", px, ctx.log)
    mask = mask_on_grid = None
    mask_px = None
    if mask_path is not None:
        mask, mask_px = _read_map(mask_path, "mask", px, ctx.log)
        mask_on_grid = to_particle_grid(mask, mask_px, box, px).clamp(0, 1)
    reference = prepare_reference(volume, vol_px, box, px, p["lowpass"], mask, mask_px)
    diameter, diameter_source = p["particle_diameter"], "--particle_diameter"
    if diameter is None:
        diameter, diameter_source = model_particle_diameter(infer_summary(ctx.args.in_parts)), "the network model"
    if diameter is None:
        diameter, diameter_source = 0.8 * box * px, "0.8 x box x pixel size"
    config = search_config(box, px, p["range"], p["step"], p["lowpass"], diameter, p["shift_range"],
                           global_starts=p["global_starts"])
    shift_a = config.shift_range_px * px
    refiner = LocalRefiner(reference, config, device)
    per_particle = bytes_per_particle(len(refiner.grid), refiner.coarse_count, len(refiner.band),
                                      len(refiner.window), box) + (3 * 4 * 512 * len(refiner.window)
                                                                   if refiner.scan is not None else 0)
    batch = p["batch_size"] or choose_batch_size(per_particle, device)
    ctx.log.info("grid: box %d, %.4f Å/px; search ±%g° step %g° (%d rotations) around %d starting pose(s) "
                 "of the network and %d of a global scan (%s rotations, Fourier shells ≤ %d), "
                 "shifts ≤ %.2f Å (%d positions); reference low-pass %g Å (Fourier shells %d, coarse %d); "
                 "images masked at %.1f Å diameter (%s); %s, batch %d (~%.1f MiB per particle)", box, px,
                 config.range_deg, config.step_deg, len(refiner.grid), top_k, config.global_starts,
                 len(refiner.scan) if refiner.scan is not None else 0, config.global_shell, shift_a,
                 refiner.window.n_allowed, p["lowpass"], config.max_shell, config.coarse_shell, diameter,
                 diameter_source, device, batch, per_particle / 2 ** 20)
    settings = {"algorithm": ALGORITHM_VERSION, "sym": p["sym"].upper(), "range_deg": p["range"],
                "step_deg": p["step"], "lowpass_angstrom": p["lowpass"], "shift_range_angstrom": round(shift_a, 6),
                "particle_diameter_angstrom": round(diameter, 6), "box": box,
                "pixel_size_angstrom": round(px, 6), "reference_sha256": _sha256(ref_path),
                "mask_sha256": _sha256(mask_path), "image_mask": True,
                "refine_zscore_thr": str(parse_refine_threshold(p["refine_zscore_thr"])),
                "global_starts": config.global_starts}
    if top_k > 1:  # absent for one start, so that records of earlier versions stay valid
        settings["top_k"] = top_k
    sym = symmetry if symmetry.shape[0] > 1 else None
    if mask_on_grid is not None:
        mask_on_grid = mask_on_grid.to(device)  # the half maps live on the device too
    return _Setup(grid, refiner, sym, mask_on_grid, settings, device, batch, top_k,
                  parse_refine_threshold(p["refine_zscore_thr"]), 0.5 * diameter / px)


# ------------------------------------------------------------------------------------------ record
class _Record:
    """The progress record of the job directory (module docstring)."""

    def __init__(self, job_dir: Path):
        self.job_dir = job_dir
        self.chunk_dir = job_dir / CHUNK_DIR
        self.state_path = job_dir / STATE_FILE
        self.state = read_json(self.state_path) or {}

    def check_settings(self, settings: dict) -> None:
        old = self.state.get("settings")
        if old is None:
            if self.chunk_ids():
                raise InputError(f"{self.chunk_dir} holds results but {STATE_FILE} is missing; start a new job")
            self.state = {"settings": settings, "accumulator": None}
            write_json_atomic(self.state_path, self.state)
            return
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            what = ", ".join(f"{k} {old.get(k)} -> {settings.get(k)}" for k in changed)
            raise InputError(f"settings differ from the previous run in this directory ({what}); "
                             "start a new job for new settings")

    def set_threshold(self, threshold: dict) -> None:
        """Store the second stage's threshold (before any chunk judged by it is written)."""
        self.state = {**self.state, "refine_threshold": threshold}
        write_json_atomic(self.state_path, self.state)

    def chunk_ids(self) -> list[int]:
        if not self.chunk_dir.is_dir():
            return []
        return sorted(int(p.stem.split("_")[1]) for p in self.chunk_dir.glob("chunk_*.star")
                      if p.stem.split("_")[1].isdigit())

    def chunk_path(self, chunk_id: int) -> Path:
        return self.chunk_dir / f"chunk_{chunk_id:06d}.star"

    def read_chunk(self, chunk_id: int) -> ParticleStar:
        return read_particle_star(self.chunk_path(chunk_id))

    def write_chunk(self, star: ParticleStar) -> int:
        self.chunk_dir.mkdir(exist_ok=True)
        ids = self.chunk_ids()
        chunk_id = ids[-1] + 1 if ids else 0
        write_particle_star(self.chunk_path(chunk_id), star)
        return chunk_id

    def load_sums(self, box: int, device: torch.device) -> tuple[FourierAccumulator, FourierAccumulator, set[int]]:
        acc = self.state.get("accumulator")
        self._remove_stale_sums(acc["dir"] if acc else None)
        if not acc:
            return FourierAccumulator(box, device=device), FourierAccumulator(box, device=device), set()
        folder = self.job_dir / acc["dir"]
        halves = [FourierAccumulator.load(folder / f"half{h}.pt", device=device) for h in (1, 2)]
        if halves[0].box != box:
            raise InputError(f"{folder}: saved sums are for box {halves[0].box}, not {box}; start a new job")
        return halves[0], halves[1], set(int(i) for i in acc["chunks"])

    def save_sums(self, acc1: FourierAccumulator, acc2: FourierAccumulator, chunks: set[int]) -> None:
        name = f"{ACC_PREFIX}{uuid.uuid4().hex[:12]}"
        folder = self.job_dir / name
        folder.mkdir()
        acc1.save(folder / "half1.pt")
        acc2.save(folder / "half2.pt")
        self.state = {**self.state, "accumulator": {"dir": name, "chunks": sorted(chunks)}}
        write_json_atomic(self.state_path, self.state)  # the switch: sums and chunk list agree
        self._remove_stale_sums(name)

    def _remove_stale_sums(self, keep: str | None) -> None:
        for folder in self.job_dir.glob(f"{ACC_PREFIX}*"):
            if folder.is_dir() and folder.name != keep:
                shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------ work
def _network_probability(star: ParticleStar) -> np.ndarray:
    for column in (NETWORK_PROBABILITY, "rlnParticleFigureOfMerit"):
        if column in star.particles.columns:
            values = star.particles[column].to_numpy(dtype=np.float64, na_value=1.0)
            return np.clip(np.nan_to_num(values, nan=1.0), 0.0, 1.0)
    return np.ones(len(star))


def _ctf_on_grid(star: ParticleStar, rows: np.ndarray, grid: ReconstructionGrid, device) -> torch.Tensor:
    params = star.ctf_parameters(rows)
    params = type(params)(**{**params.__dict__, "pixel_size_angstrom":
                             torch.full((len(rows),), grid.pixel_size_angstrom, dtype=torch.float64)})
    ctf = compute_ctf(params, grid.box, fftshift=True, device=device)
    groups = star.optics_groups()
    flipped = np.array([groups[int(g)].ctf_phase_flipped for g in star.optics_group_numbers()[rows]])
    if flipped.any():
        sel = torch.from_numpy(flipped).to(ctf.device)
        ctf[sel] = ctf[sel].abs()
    return ctf


def _refine_rows(setup: _Setup, star: ParticleStar, rows: np.ndarray, reader: ImageStackReader,
                 probability: np.ndarray, ctf: torch.Tensor) -> pd.DataFrame:
    """Refined columns for ``rows`` of ``star`` (a DataFrame indexed like ``rows``); ``ctf`` of the rows."""
    grid = setup.grid
    images = particle_images_on_grid(star, rows, reader, grid)
    problems = image_problems(images, setup.radius_px)
    bad = np.array([q is not None for q in problems])
    if bad.any():  # never refined: rejected as bad images, the rest of the batch goes on
        for row, problem in zip(rows[bad][:5], [q for q in problems if q is not None]):
            log.warning("particle %d (%s): %s; rejected (%s)", row + 1, star.particles["rlnImageName"].iat[row],
                        problem, BAD_IMAGE)
        good = _refine_rows_of(setup, star, rows[~bad], images[torch.from_numpy(~bad)], probability,
                               ctf[torch.from_numpy(~bad).to(ctf.device)]) if (~bad).any() else None
        return _with_bad_rows(star, rows, bad, good, probability, setup.n_starts)
    frame = _refine_rows_of(setup, star, rows, images, probability, ctf)
    frame[REASON_COLUMN] = ""
    return frame


def _with_bad_rows(star: ParticleStar, rows: np.ndarray, bad: np.ndarray, good: pd.DataFrame | None,
                   probability: np.ndarray, n_starts: int) -> pd.DataFrame:
    """The batch's frame: refined rows, and the bad images with their input pose, weight 0, z NaN."""
    b = rows[bad]
    angles, origins = star.angles_deg()[b], star.origins_angstrom()[b]
    frame = pd.DataFrame({
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": origins[:, 0], "rlnOriginYAngst": origins[:, 1],
        "rlnParticleFigureOfMerit": np.zeros(len(b)), NETWORK_PROBABILITY: probability[b],
        "rlnCryoparesRefineScore": np.full(len(b), np.nan), "rlnCryoparesRefineZscore": np.full(len(b), np.nan),
        **({START_COLUMN: np.ones(len(b), dtype=np.int64)} if n_starts > 1 else {})}, index=b)
    frame[REASON_COLUMN] = BAD_IMAGE
    if good is not None:
        good[REASON_COLUMN] = ""
        frame = pd.concat([good, frame])
    return frame.loc[rows]


def _refine_rows_of(setup: _Setup, star: ParticleStar, rows: np.ndarray, images: torch.Tensor,
                    probability: np.ndarray, ctf: torch.Tensor) -> pd.DataFrame:
    grid, refiner = setup.grid, setup.refiner
    starts = euler_to_matrix(torch.from_numpy(starting_angles(star, rows, setup.top_k)))  # (b, K, 3, 3)
    origins_px = torch.from_numpy(star.origins_angstrom()[rows] / grid.pixel_size_angstrom)
    result = refiner.refine(images, starts.to(torch.float32), origins_px.to(torch.float32), ctf)
    candidate = result.candidate.detach().cpu()
    poses = result.poses.detach().cpu().to(torch.float64)
    poses = keep_canonical(starts[:, 0], poses, setup.symmetry)  # canonical mate only where the input was
    angles = matrix_to_euler(poses).numpy()
    origins = (origins_px + result.origin_change_px.detach().cpu().to(torch.float64)).numpy() \
        * grid.pixel_size_angstrom
    prob = probability[rows]
    weight = particle_weight(result.significance.detach().cpu().to(torch.float64)).numpy()
    return pd.DataFrame({
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "rlnOriginXAngst": origins[:, 0], "rlnOriginYAngst": origins[:, 1],
        "rlnParticleFigureOfMerit": weight, NETWORK_PROBABILITY: prob,
        "rlnCryoparesRefineScore": result.score.detach().cpu().numpy().astype(np.float64),
        "rlnCryoparesRefineZscore": result.zscore.detach().cpu().numpy().astype(np.float64),
        **({START_COLUMN: candidate.numpy() + 1} if setup.n_starts > 1 else {})}, index=rows)


def _chunk_star(record: "_Record", setup: _Setup, star: ParticleStar, frames: list[pd.DataFrame]) -> ParticleStar:
    """The chunk's record: input rows with refined columns and each particle's reason (the stage's
    threshold fitted on this chunk and stored when none is stored yet)."""
    refined = pd.concat(frames)
    rows = refined.index.to_numpy()
    z = refined["rlnCryoparesRefineZscore"].to_numpy(dtype=np.float64)
    bad = refined[REASON_COLUMN].to_numpy() == BAD_IMAGE
    threshold, new = resolve_threshold(setup.threshold_choice, record.state, z[~bad],
                                       setup.refiner.hypotheses(setup.n_starts))
    if new:
        record.set_threshold(threshold)
        log.info("refinement z-score threshold %.3f (%s)", threshold["value"], threshold["source"])
    refined[REASON_COLUMN] = reasons(z, bad, threshold["value"])
    out = star.select(rows)
    return out.with_columns(**{c: refined[c].to_numpy() for c in refined.columns})


def _insert_chunk(setup: _Setup, accs, chunk: ParticleStar, reader: ImageStackReader) -> None:
    chunk = chunk.select(kept_mask(chunk))  # rejected particles never enter the half maps
    subsets = chunk.random_subset()
    weights = chunk.particles["rlnParticleFigureOfMerit"].to_numpy(dtype=np.float64)
    step = 64 if setup.symmetry is None else max(4, 512 // setup.symmetry.shape[0])
    for half, acc in zip((1, 2), accs):
        rows = np.flatnonzero(subsets == half)
        for batch in iterate_batches(rows, step):
            insert_particles(acc, chunk, batch, reader, setup.grid, setup.symmetry, weights[batch])


def _body(ctx: JobContext) -> list[OutputNode]:
    star = read_particle_star(ctx.args.in_parts)
    check_image_indices(star)  # every image in its stack, before any work starts
    if len(star) == 0:
        raise InputError("no particles", ctx.args.in_parts)
    if not star.has_poses():
        raise InputError("particles have no poses (rlnAngleRot/Tilt/Psi); run cryopares_infer first",
                         ctx.args.in_parts)
    names = pd.Series(star.image_names())
    if names.duplicated().any():
        raise InputError(f"rlnImageName {names[names.duplicated()].iloc[0]} appears more than once",
                         ctx.args.in_parts)
    top_k = resolve_top_k(star, ctx.params["top_k"], ctx.args.in_parts)
    star = ensure_random_subsets(star)
    setup = _setup(ctx, star, top_k)
    record = _Record(ctx.output_dir)
    record.check_settings(setup.settings)
    acc1, acc2, included = record.load_sums(setup.grid.box, setup.device)
    chunks = record.chunk_ids()
    done_names: set[str] = set()
    with ImageStackReader() as reader:
        pending = [c for c in chunks if c not in included]
        for chunk_id in chunks:
            chunk = record.read_chunk(chunk_id)
            done_names.update(chunk.image_names())
            if chunk_id in pending:  # recorded but not yet in the saved sums
                _insert_chunk(setup, (acc1, acc2), chunk, reader)
                included.add(chunk_id)
        if pending:
            ctx.log.info("added %d recorded chunk(s) to the half-map sums", len(pending))
            record.save_sums(acc1, acc2, included)
        new_rows = np.flatnonzero(~names.isin(done_names).to_numpy())
        ctx.log.info("%d particles: %d refined before, %d to refine", len(star), len(star) - len(new_rows),
                     len(new_rows))
        _refine_new(ctx, setup, record, star, new_rows, reader, (acc1, acc2), included)
    return _write_outputs(ctx, setup, record, star, acc1, acc2)


def _refine_new(ctx, setup: _Setup, record: _Record, star: ParticleStar, new_rows: np.ndarray,
                reader: ImageStackReader, accs, included: set[int]) -> None:
    if len(new_rows) == 0:
        return
    probability = _network_probability(star)
    subsets = star.random_subset()
    chunk_size = max(CHUNK_PARTICLES, 8 * setup.batch_size)
    ctf_group = setup.batch_size * max(1, 256 // setup.batch_size)
    last_save = time.monotonic()
    with ctx.progress(len(star), done=len(star) - len(new_rows)) as progress:
        for chunk_rows in iterate_batches(new_rows, chunk_size):
            frames: list[pd.DataFrame] = []
            try:
                for half in (1, 2):  # a batch never mixes half sets
                    for group in iterate_batches(chunk_rows[subsets[chunk_rows] == half], ctf_group):
                        ctf = _ctf_on_grid(star, group, setup.grid, setup.device)  # one call: torch-ctf's
                        for i in range(0, len(group), setup.batch_size):      # set-up cost is per call
                            batch = group[i:i + setup.batch_size]
                            frames.append(_refine_rows(setup, star, batch, reader, probability,
                                                       ctf[i:i + setup.batch_size]))
                            progress.update(len(batch))
                            ctx.check_abort()
            except BaseException:  # abort, SIGTERM (queue limit), error: keep the finished batches
                if frames and "refine_threshold" in record.state:  # (a partial first chunk would fit it)
                    record.write_chunk(_chunk_star(record, setup, star, frames))
                raise
            chunk = _chunk_star(record, setup, star, frames)
            chunk_id = record.write_chunk(chunk)
            _insert_chunk(setup, accs, chunk, reader)
            included.add(chunk_id)
            if time.monotonic() - last_save > SAVE_INTERVAL_S:
                record.save_sums(*accs, included)
                last_save = time.monotonic()
    record.save_sums(*accs, included)


def _write_outputs(ctx: JobContext, setup: _Setup, record: _Record, star: ParticleStar,
                   acc1: FourierAccumulator, acc2: FourierAccumulator) -> list[OutputNode]:
    chunks = [record.read_chunk(c) for c in record.chunk_ids()]
    done = ParticleStar.concat(chunks)
    order = {name: i for i, name in enumerate(star.image_names())}
    position = np.array([order.get(name, len(order) + i) for i, name in enumerate(done.image_names())])
    extra = int((position >= len(order)).sum())
    if extra:
        ctx.log.warning("%d refined particles are no longer in the input STAR file; they stay in the "
                        "outputs (start a new job to drop them)", extra)
    done = done.select(np.argsort(position, kind="stable"))
    kept, rejected = split_outputs(done)
    write_particle_star(ctx.path("run_data.star"), kept)
    write_particle_star(ctx.path("rejected.star"), rejected)
    log_stages(ctx.log, infer_summary(ctx.args.in_parts), done, record.state.get("refine_threshold"))
    if min(acc1.n_particles, acc2.n_particles) <= 0:
        ctx.log.warning("a half set has no particles yet; its half map is empty")
    result = finish_half_maps(acc1, acc2, setup.grid, setup.mask)
    paths = write_half_map_outputs(ctx.output_dir, result, setup.grid)
    ctx.log.info("half maps: %.0f + %.0f weighted particles; FSC 0.143 at %.2f Å, 0.5 at %.2f Å",
                 *result.n_particles, result.resolution_0143_angstrom, result.resolution_05_angstrom)
    weights = kept.particles["rlnParticleFigureOfMerit"].to_numpy(dtype=np.float64)
    if len(weights):
        ctx.log.info("particle weights: median %.3f, %d of %d below 0.5", float(np.median(weights)),
                     int((weights < 0.5).sum()), len(weights))
    if START_COLUMN in kept.particles.columns:
        starts = kept.particles[START_COLUMN].to_numpy(dtype=np.float64, na_value=1.0)
        counts = np.bincount(np.nan_to_num(starts, nan=1.0).astype(int), minlength=setup.n_starts + 1)[1:]
        ctx.log.info("best match from the network's pose 1..%d: %s particles; from the global scan's %d: %s",
                     setup.top_k, ", ".join(str(int(c)) for c in counts[:setup.top_k]),
                     setup.n_starts - setup.top_k, ", ".join(str(int(c)) for c in counts[setup.top_k:]) or "-")
    return [OutputNode(ctx.path("run_data.star"), "particles", keyword="cryopares"),
            OutputNode(ctx.path("rejected.star"), "particles", keyword="cryopares.rejected"),
            OutputNode(paths["half1"], "halfmap"), OutputNode(paths["map"], "map")]


def main(argv: list[str] | None = None) -> int:
    return run_job(SPEC, _body, argv)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
