"""Local refinement: speed and accuracy of cryopares_localrefine's search, and of the whole job.

    python -m benchmarks.bench_localrefine [--n 256] [--threads 1 2] [--device cpu] [--quick]

Particles are simulated from the shipped map (EMD-1832, box 64 at 5.7 Å, CTF, SNR 0.1) with
starting poses up to 5° (and, for the DESIGN.md comparison, exactly 3°) and origins up to 3 px
from the truth. Reported:

1. the search alone (images and CTFs in memory) at ±6°/2° and the time per particle against the
   number of rotations searched, with the median angular/shift errors reached;
2. sub-step refinement variants (none / quadratic fit / step/3 grid + fit) at ±6°/2°;
3. the DESIGN.md baseline: ±4°/2° (125 poses), started 3° from the truth (reference
   implementation: 29.6 particles/s on 2 CPU cores, stops at ~4° median error at SNR 0.1);
4. the whole job in-process (reading stacks, CTFs, search, records, insertion, half maps).

Writes ``benchmarks/results/localrefine.md`` and ``.json``.
"""

from __future__ import annotations

# ruff: noqa: E402
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the job sets it (see jobs/localrefine.py)

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import RESULTS, machine, markdown_table
from relion_cryopares.data import read_volume, write_particle_star, write_volume
from relion_cryopares.fourier import lowpass_volume
from relion_cryopares.geometry import geodesic_distance_deg
from relion_cryopares.jobs import localrefine
from relion_cryopares.refine import (LocalRefiner, bytes_per_particle, choose_batch_size, rotation_vector_to_matrix,
                                     search_config)

MAP = Path(__file__).resolve().parents[1] / "relion_cryopares" / "assets" / "emd_1832.map"
PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"


def _simulate(root: Path, n: int):
    from tests.refine._simulated import simulate

    vol, px = read_volume(MAP)
    vol = torch.from_numpy(vol.copy())
    (root / "default_pipeline.star").write_text(PIPELINE_31)
    sim = simulate((vol, px), root, n=n, seed=3)
    write_volume(root / "map.mrc", vol.numpy(), px)
    return vol, px, sim


def _at_distance(sim, angle_deg: float, seed: int = 5) -> torch.Tensor:
    """Starting poses exactly ``angle_deg`` from the truth, random axes."""
    g = np.random.default_rng(seed)
    axis = g.standard_normal((len(sim.true_poses), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return rotation_vector_to_matrix(torch.from_numpy(axis * angle_deg)) @ sim.true_poses


def _search(sim, reference, cfg, device, start=None, repeats: int = 1) -> dict:
    refiner = LocalRefiner(reference, cfg, device)
    start = sim.start_poses if start is None else start
    per = bytes_per_particle(len(refiner.grid), refiner.coarse_count, len(refiner.band), len(refiner.window), 64)
    batch = choose_batch_size(per, torch.device(device))
    n = len(sim.images)
    args = (sim.images, start.float(), sim.start_origins_px.float(), sim.ctf)
    refiner.refine(*(a[:batch] for a in args))  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    best = best_cpu = float("inf")
    for _ in range(repeats):
        t0, c0, out = time.perf_counter(), time.process_time(), []
        for i in range(0, n, batch):
            out.append(refiner.refine(*(a[i:i + batch] for a in args)))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    poses = torch.cat([r.poses for r in out]).cpu().double()
    origins = sim.start_origins_px + torch.cat([r.origin_change_px for r in out]).cpu().double()
    err = geodesic_distance_deg(poses, sim.true_poses)
    shift = torch.linalg.vector_norm(origins - sim.true_origins_px, dim=1)
    return {"rotations": len(refiner.grid), "batch": batch, "particles_per_s": n / best,
            "ms_per_particle": 1e3 * best / n, "cpu_ms_per_particle": 1e3 * best_cpu / n,
            "us_per_particle_rotation": 1e6 * best / n / len(refiner.grid),
            "median_error_deg": float(err.median()), "median_shift_error_px": float(shift.median())}


def _job(root: Path, threads: int, device: str) -> dict:
    cwd = os.getcwd()
    os.chdir(root)
    try:
        job = f"External/job{threads:03d}/"
        t0 = time.perf_counter()
        code = localrefine.main(["--o", job, "--in_parts", "start.star", "--in_3dref", "map.mrc",
                                 "--j", str(threads), "--device", device])
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    log = (root / job / "cryopares.log").read_text()
    rate = [float(line.split("particles/s")[0].split(",")[-1]) for line in log.splitlines() if "particles/s" in line]
    return {"exit": code, "job_wall_s": wall, "search_loop_particles_per_s": rate[-1] if rate else float("nan")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="simulated particles")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="fewer grid sizes")
    parser.add_argument("--name", default="localrefine")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    sections: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vol, px, sim = _simulate(root, args.n)
        reference = lowpass_volume(vol, 6.0, px)
        grids = [(4, 2), (6, 2), (8, 2)] if args.quick else [(2, 2), (4, 2), (6, 2), (8, 2), (10, 2)]
        rows = []
        for threads in args.threads:
            torch.set_num_threads(threads)
            for rng, step in grids:
                row = _search(sim, reference, search_config(64, px, rng, step), args.device, repeats=3)
                rows.append({"threads": threads, "range_deg": rng, "step_deg": step, **row})
                print(rows[-1], flush=True)
        sections["search"] = rows
        rows = []
        torch.set_num_threads(max(args.threads))
        for fine in ("none", "quadratic", "grid"):
            row = _search(sim, reference, search_config(64, px, 6, 2, fine=fine), args.device, repeats=3)
            rows.append({"fine": fine, "threads": max(args.threads), **row})
            print(rows[-1], flush=True)
        sections["fine"] = rows
        rows = []
        start3 = _at_distance(sim, 3.0)
        for rng in (4, 6):
            cfg = search_config(64, px, rng, 2)
            if rng == 4:  # the reference implementation's 5x5x5 cube of 2° offsets: 125 poses
                cfg = dataclasses.replace(cfg, grid_shape="cube")
            row = _search(sim, reference, cfg, args.device, start=start3, repeats=3)
            rows.append({"search": f"±{rng}°/2° {'cube' if rng == 4 else 'ball'}", "threads": max(args.threads),
                         "start_error_deg": 3.0, **row})
            print(rows[-1], flush=True)
        sections["baseline"] = rows
        write_particle_star(root / "start.star", sim.start)
        rows = []
        for threads in args.threads:
            rows.append({"threads": threads, "particles": args.n, **_job(root, threads, args.device)})
            print(rows[-1], flush=True)
        sections["job"] = rows
    info = machine()
    info["loadavg_before_after"] = [list(load_before), list(os.getloadavg())]
    titles = {"search": "Search alone: time per particle against the number of rotations (starts ≤ 5°, ≤ 3 px)",
              "fine": "Sub-step refinement at ±6°/2° (starts ≤ 5°, ≤ 3 px)",
              "baseline": "DESIGN.md baseline: started 3° from the truth (reference implementation: 29.6 "
                          "particles/s at ±4°/2°, 125 poses, 2 CPU cores; stops at ~4° median error)",
              "job": "Whole job in-process (stacks, CTFs, search, records, half-map insertion, maps)"}
    text = [f"# Local refinement ({args.device})", "",
            f"Simulated EMD-1832 particles: box 64 at {px:.2f} Å, CTF, SNR 0.1, n = {args.n}. "
            "Particles/s are wall-clock (best of 3 for the search tables); cpu_ms_per_particle is the process's CPU "
            "time (all threads), which other processes on the machine do not inflate."]
    for key, rows in sections.items():
        text += ["", f"## {titles[key]}", "", markdown_table(rows)]
    text += ["", f"Measured {info['date']} on {info['cpu_count']} CPU cores ({info['cpu']}), torch {info['torch']}, "
             f"GPU: {info['cuda'] or 'none'}, load average before/after {info['loadavg_before_after']} "
             "(other processes share this machine: wall-clock rates are lower bounds).", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text("\n".join(text))
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"machine": info, **sections}, indent=1))
    print("\n".join(text))


if __name__ == "__main__":
    main()
