"""--reconstruct of cryopares_infer: gold-standard half maps of the kept particles at their predicted
poses (input origins), grown incrementally: the Fourier sums of both half sets and the names inside
them are saved in ``cryopares_infer_halfmaps.pt`` (:class:`HalfMapState`); a continue inserts only
newly kept particles. Another model or threshold (the state's key) starts the sums again.
Outputs as cryopares_reconstruct: ``run_half1_class001_unfil.mrc``, ``run_half2_...``,
``run_class001.mrc``, ``run_fsc.star``, ``fsc.png``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from relion_cryopares.data import ImageStackReader, ParticleStar
from relion_cryopares.jobs._halfmaps import (ReconstructionGrid, finish_half_maps, insert_particles,
                                             iterate_batches, write_half_map_outputs)
from relion_cryopares.jobs._incremental import HalfMapState
from relion_cryopares.relion import JobContext, OutputNode

HALFMAP_STATE = "cryopares_infer_halfmaps.pt"
MAP_FILES = ("run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc", "run_class001.mrc",
             "run_fsc.star", "fsc.png")


def reconstruct_kept(ctx: JobContext, kept: ParticleStar, key: dict, sym: torch.Tensor, summary: dict
                     ) -> list[OutputNode]:
    """Half maps of the ``kept`` particles (poses already the predicted ones); ``key`` describes
    what decided them (model, thresholds): the saved sums are reused only for the same key and
    grid. Adds the resolution to ``summary``; returns the output nodes (none without maps)."""
    if len(kept) == 0:
        ctx.log.warning("--reconstruct: no kept particles; no half maps")
        _remove_stale_maps(ctx)
        return []
    grid = ReconstructionGrid.of(kept)
    key = json.loads(json.dumps({**key, "box": grid.box,
                                 "pixel_size_angstrom": round(grid.pixel_size_angstrom, 6)}, default=str))
    state = HalfMapState.load_or_new(ctx.path(HALFMAP_STATE), key, grid.box)
    names = np.asarray(kept.image_names(), dtype=object)
    todo = np.flatnonzero(~pd.Index(names).isin(state.done))
    subsets = kept.random_subset()
    angles = kept.angles_deg()
    ctx.log.info("--reconstruct: inserting %d newly kept particles (%d already in the half maps)",
                 len(todo), len(state.done))
    since = 0
    with ImageStackReader() as reader:
        for batch in iterate_batches(todo, 4 * ctx.params["batch_size"]):
            for h in (1, 2):
                rows = batch[subsets[batch] == h]
                if len(rows):
                    insert_particles(state.acc[h], kept, rows, reader, grid, sym, angles_deg=angles[rows])
            state.done.update(names[batch].tolist())
            since += len(batch)
            if since >= ctx.params["save_every"] or ctx.abort_requested():
                state.save(ctx.path(HALFMAP_STATE))
                since = 0
            ctx.check_abort()
    if since or not ctx.path(HALFMAP_STATE).exists():
        state.save(ctx.path(HALFMAP_STATE))
    if min(state.acc[1].n_particles, state.acc[2].n_particles) <= 0:
        ctx.log.warning("--reconstruct: a half set has no kept particles; no half maps")
        _remove_stale_maps(ctx)
        return []
    result = finish_half_maps(state.acc[1], state.acc[2], grid)
    paths = write_half_map_outputs(ctx.output_dir, result, grid)
    ctx.log.info("half maps: %.0f / %.0f particles; FSC 0.143: %.2f A", *result.n_particles,
                 result.resolution_0143_angstrom)
    summary["resolution_0143_angstrom"] = result.resolution_0143_angstrom
    return [OutputNode(paths["half1"], "halfmap"), OutputNode(paths["map"], "map")]


def _remove_stale_maps(ctx: JobContext) -> None:
    """Maps of an earlier run no longer describe the kept particles."""
    for name in MAP_FILES:
        ctx.path(name).unlink(missing_ok=True)
