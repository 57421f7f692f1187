"""Reconstruction speed: cryopares_reconstruct's core against relion_reconstruct on the same particles.

    python -m benchmarks.bench_reconstruct [--n 2000] [--box 64]

Simulates particles (CTF, noise) from the shipped map, then times (a) our streaming Fourier
inversion (both half sets, 1 thread and all threads) and (b) ``relion_reconstruct --ctf`` (1 thread,
which is all it uses) on the very same STAR file. Prints particles/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import write_results
from relion_cryopares.data import (ImageStackReader, SimulationConfig, read_particle_star,
                                   read_volume, simulate_particles, write_particle_star)
from relion_cryopares.fourier import FourierAccumulator, resample_volume
from relion_cryopares.jobs._halfmaps import ReconstructionGrid, insert_particles, iterate_batches

MAP = Path(__file__).resolve().parents[1] / "relion_cryopares" / "assets" / "emd_1832.map"


def _ours(star, threads: int, batch: int = 256) -> float:
    torch.set_num_threads(threads)
    grid = ReconstructionGrid.of(star)
    acc = {1: FourierAccumulator(grid.box), 2: FourierAccumulator(grid.box)}
    subsets = star.random_subset()
    t0 = time.perf_counter()
    with ImageStackReader() as reader:
        for rows in iterate_batches(np.arange(len(star)), batch):
            for h in (1, 2):
                sel = rows[subsets[rows] == h]
                insert_particles(acc[h], star, sel, reader, grid, None)
    acc[1].reconstruct(), acc[2].reconstruct()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--box", type=int, default=64, help="64 (map as is) or larger (map resampled)")
    args = ap.parse_args()
    vol, px = read_volume(MAP)
    vol = torch.from_numpy(vol.copy())
    if args.box != vol.shape[-1]:
        new_px = px * vol.shape[-1] / args.box
        vol, px = resample_volume(vol, px, new_px, args.box), new_px
    work = Path(tempfile.mkdtemp(prefix="bench_rec_"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        cfg = SimulationConfig(n_particles=args.n, snr=0.1, max_shift_angstrom=3 * px, seed=1)
        star = simulate_particles(vol, px, cfg, "Sim", project_dir=".")
        write_particle_star("parts.star", star)
        star = read_particle_star("parts.star")
        rows = []
        for threads in sorted({1, os.cpu_count() or 1}):
            dt = _ours(star, threads)
            rows.append({"program": "relion-cryopares (both halves)", "threads": threads,
                         "particles": args.n, "box": args.box, "seconds": dt,
                         "particles_per_s": args.n / dt})
        if shutil.which("relion_reconstruct"):
            t0 = time.perf_counter()
            subprocess.run(["relion_reconstruct", "--i", "parts.star", "--o", "rel.mrc", "--ctf"],
                           check=True, capture_output=True)
            dt = time.perf_counter() - t0
            rows.append({"program": "relion_reconstruct --ctf (one map)", "threads": 1,
                         "particles": args.n, "box": args.box, "seconds": dt,
                         "particles_per_s": args.n / dt})
            ref = rows[-1]["particles_per_s"]
            for r in rows:
                r["ratio_vs_relion"] = r["particles_per_s"] / ref
        write_results(f"reconstruct_box{args.box}", "Reconstruction throughput", rows,
                      "Same simulated particles (CTF, SNR 0.1) for both programs; times include "
                      "reading the stacks and the final inversion(s).")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
