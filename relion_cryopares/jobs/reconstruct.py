"""cryopares_reconstruct: gold-standard half maps from particles with poses (a RELION External job).

::

    cryopares_reconstruct --o External/job012/ --in_parts Refine3D/job010/run_data.star
                          [--in_mask mask.mrc] --sym D2 [--use_fom] [--batch_size 256] [--j 2]

Each half set (``rlnRandomSubset``; assigned with a fixed seed where absent) is reconstructed
independently by direct Fourier inversion with CTF correction, Wiener-regularised with the SSNR
from the half-map FSC. Outputs (RELION Refine3D names): ``run_half1_class001_unfil.mrc``,
``run_half2_class001_unfil.mrc``, ``run_class001.mrc``, ``run_fsc.star``, ``fsc.png``.
A continue (or a re-run on a grown STAR) inserts only particles not yet in the saved Fourier sums.

A bad image (NaN/Inf pixels, a constant image) is skipped, never inserted, and counted in run.out
with the first names (the job goes on); a particle whose image is not in its stack stops the job
before any work starts, with one line in run.err.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from relion_cryopares.data import ImageStackReader, read_particle_star, read_volume
from relion_cryopares.data import check_image_indices, ensure_random_subsets
from relion_cryopares.errors import InputError
from relion_cryopares.geometry import symmetry_matrices
from relion_cryopares.jobs._halfmaps import (ReconstructionGrid, finish_half_maps,
                                             insert_particles, iterate_batches,
                                             write_half_map_outputs)
from relion_cryopares.jobs._incremental import HalfMapState
from relion_cryopares.relion import Input, JobContext, JobSpec, OutputNode, Param, run_job

STATE_FILE = "cryopares_reconstruct_state.pt"

SPEC = JobSpec(
    name="cryopares_reconstruct",
    description="Gold-standard half maps (direct Fourier inversion with CTF) from particles with poses.",
    inputs=(Input("in_parts", required=True, help="particle STAR file with poses"),
            Input("in_mask", help="mask for the FSC (optional)")),
    params=(
        Param("sym", "str", "C1", help="point-group symmetry (RELION name)"),
        Param("use_fom", "bool", False, help="weight particles by rlnParticleFigureOfMerit"),
        Param("batch_size", "int", 256, minimum=1, help="particles per batch"),
        Param("save_every", "int", 2048, minimum=1,
              help="particles between saves of the Fourier sums (for continue)"),
    ),
)


def _mask(ctx: JobContext, grid: ReconstructionGrid) -> torch.Tensor | None:
    path = ctx.args.inputs.get("in_mask")
    if path is None:
        return None
    mask, _ = read_volume(path)
    if mask.shape[0] != grid.box:
        raise InputError(f"mask box {mask.shape[0]} differs from the particles' box {grid.box}", path)
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


def _body(ctx: JobContext) -> list[OutputNode]:
    star_path = ctx.args.inputs["in_parts"]
    star = ensure_random_subsets(read_particle_star(star_path))
    if len(star) == 0:
        raise InputError("no particles", star_path)
    if not star.has_poses():
        raise InputError("particles have no poses (rlnAngleRot/Tilt/Psi)", star_path)
    check_image_indices(star)  # every image in its stack, before any work starts
    sym = symmetry_matrices(ctx.params["sym"])
    grid = ReconstructionGrid.of(star)
    weights = None
    if ctx.params["use_fom"]:
        if "rlnParticleFigureOfMerit" not in star.particles.columns:
            raise InputError("--use_fom: no rlnParticleFigureOfMerit column", star_path)
        weights = star.column("rlnParticleFigureOfMerit").astype(np.float64)
    mask = _mask(ctx, grid)
    key = {"sym": ctx.params["sym"].upper(), "use_fom": ctx.params["use_fom"],
           "box": grid.box, "pixel_size_angstrom": round(grid.pixel_size_angstrom, 6)}
    state = HalfMapState.load_or_new(ctx.path(STATE_FILE), key, grid.box)
    names = np.asarray(star.image_names())
    todo = np.flatnonzero(~np.isin(names, list(state.done)))
    subsets = star.random_subset()
    ctx.log.info("%d particles (%d new), box %d at %.3f A/px, symmetry %s (%d operators)",
                 len(star), len(todo), grid.box, grid.pixel_size_angstrom, key["sym"], len(sym))
    progress = ctx.progress(len(todo))
    since_save = 0
    skipped = state.skipped  # bad images: name -> problem (saved with the sums)
    skipped_before = len(skipped)
    with ImageStackReader() as reader:
        for batch in iterate_batches(todo, ctx.params["batch_size"]):
            for half in (1, 2):
                rows = batch[subsets[batch] == half]
                if len(rows):
                    problems = insert_particles(state.acc[half], star, rows, reader, grid, sym,
                                                None if weights is None else weights[rows])
                    skipped.update((str(names[r]), q) for r, q in zip(rows, problems) if q is not None)
            state.done.update(names[batch].tolist())
            since_save += len(batch)
            progress.update(len(batch))
            if since_save >= ctx.params["save_every"] or ctx.abort_requested():
                state.save(ctx.path(STATE_FILE))
                since_save = 0
            ctx.check_abort()
    progress.finish()
    if since_save:
        state.save(ctx.path(STATE_FILE))
    _log_skipped(ctx, skipped, len(skipped) - skipped_before)
    if min(state.acc[1].n_particles, state.acc[2].n_particles) <= 0:
        raise InputError("both half sets need particles (rlnRandomSubset 1 and 2)", star_path)
    result = finish_half_maps(state.acc[1], state.acc[2], grid, mask)
    paths = write_half_map_outputs(ctx.output_dir, result, grid)
    ctx.log.info("half sets: %.0f / %.0f particles; FSC 0.143: %.2f A, FSC 0.5: %.2f A",
                 *result.n_particles, result.resolution_0143_angstrom, result.resolution_05_angstrom)
    return [OutputNode(paths["half1"], "halfmap"), OutputNode(paths["map"], "map")]


def _log_skipped(ctx: JobContext, skipped: dict[str, str], new: int, first: int = 5) -> None:
    """run.out: how many bad images were skipped (this run and in total), by problem, the first few."""
    if not skipped:
        return
    kinds: dict[str, int] = {}
    for problem in skipped.values():
        kinds[problem] = kinds.get(problem, 0) + 1
    names = list(skipped)[:first]
    ctx.log.warning("%d bad images skipped, not inserted (%d found in this run; %s); first: %s%s",
                    len(skipped), new, ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
                    "; ".join(f"{n}: {skipped[n]}" for n in names), "; ..." if len(skipped) > first else "")


def main(argv: list[str] | None = None) -> int:
    return run_job(SPEC, _body, argv)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
