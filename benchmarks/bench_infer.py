"""Inference speed: cryopares_infer (read + preprocess in workers, network, poses, z-scores, outputs).

    python -m benchmarks.bench_infer [--sizes tiny paper] [--devices cpu cuda] [--n_tiny 2048]
                                     [--n_paper 48] [--threads 2]

For each model size (``tiny``: the CI preset, box 64 at 5.7 A/px; ``paper``: cryoPARES's network,
box 160 at 1.5 A/px, 294,912 output rotations) a model directory with untrained weights (speed does
not depend on training) is written, particles are simulated from the shipped map (resampled for
``paper``) and the real job runs on them in-process (``cryopares_infer --j threads``). Reported:
the particles/s of the prediction loop (reading, preprocessing, network, poses, z-scores, chunk
files), the start-up (STAR reading, model loading) and the whole job's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import write_results
from relion_cryopares.data import (PreprocessConfig, SimulationConfig, read_volume, simulate_particles,
                                   write_particle_star)
from relion_cryopares.fourier import resample_volume
from relion_cryopares.geometry import random_rotations
from relion_cryopares.jobs import infer
from relion_cryopares.jobs._modeldir import save_half_model
from relion_cryopares.model import ModelConfig, PoseModel
from relion_cryopares.pruning import DirectionalNormaliser

MAP = Path(__file__).resolve().parents[1] / "relion_cryopares" / "assets" / "emd_1832.map"
PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"

#: size -> (particle box, network box, network pixel size in A, particle diameter in A)
SIZES = {"tiny": (64, 64, None, 250.0), "paper": (200, 160, 1.5, 250.0)}


def _model_dir(path: Path, size: str, pre: PreprocessConfig) -> None:
    cfg = ModelConfig.preset(size, box=pre.box_nnet)
    norm = DirectionalNormaliser.fit(torch.rand(1000), random_rotations(1000, torch.Generator().manual_seed(0)))
    for half in (1, 2):
        torch.manual_seed(half)
        save_half_model(path, half, PoseModel(cfg, build_tables=False), cfg, pre, norm, -2.0,
                        "benchmark (untrained)", "C1", {})


def _project(root: Path, size: str, n: int) -> Path:
    box, box_nnet, angpix_nnet, diameter = SIZES[size]
    vol, px = read_volume(MAP)
    vol = torch.from_numpy(vol.copy())
    if box != vol.shape[-1]:
        new_px = px * vol.shape[-1] / box
        vol, px = resample_volume(vol, px, new_px, box), new_px
    root.mkdir(parents=True)
    (root / "default_pipeline.star").write_text(PIPELINE_31)
    star = simulate_particles(vol, px, SimulationConfig(n_particles=n, snr=0.1, seed=1, particles_per_stack=512),
                              root / "Extract" / "job001" / "Particles", project_dir=root)
    write_particle_star(root / "Extract" / "job001" / "particles.star", star)
    pre = PreprocessConfig(box_nnet=box_nnet, particle_diameter_angstrom=diameter,
                           angpix_nnet=px if angpix_nnet is None else angpix_nnet)
    _model_dir(root / "External" / "job002", size, pre)
    return root


def _run(project: Path, job: str, device: str, threads: int, batch: int, workers: int) -> dict:
    cwd = os.getcwd()
    os.chdir(project)
    try:
        t0 = time.perf_counter()
        code = infer.main(["--o", job, "--in_parts", "Extract/job001/particles.star",
                           "--model", "External/job002/", "--device", device, "--j", str(threads),
                           "--batch_size", str(batch), "--num_workers", str(workers)])
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    if code != 0:
        raise RuntimeError(f"cryopares_infer failed in {project / job}")
    summary = json.loads((project / job / infer.SUMMARY_FILE).read_text())
    return {"wall_s": wall, **summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "paper"], choices=sorted(SIZES))
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    ap.add_argument("--n_tiny", type=int, default=2048)
    ap.add_argument("--n_paper", type=int, default=48, help="paper particles on CPU (GPU: 64x more)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workers", type=int, default=-1, help="--num_workers of the job (-1: threads - 1)")
    ap.add_argument("--name", default="infer")
    args = ap.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    try:
        for size in args.sizes:
            for device in devices:
                gpu = device == "cuda"
                n = args.n_tiny * (8 if gpu else 1) if size == "tiny" else args.n_paper * (64 if gpu else 1)
                batch = (256 if gpu else 64) if size == "tiny" else (128 if gpu else 16)
                project = _project(work / f"{size}_{device}", size, n)
                r = _run(project, "External/job010/", device, args.threads, batch, args.workers)
                rows.append({"model": size, "device": torch.cuda.get_device_name(0) if gpu else "cpu",
                             "threads": args.threads, "batch": batch, "particles": n,
                             "startup_s": r["setup_s"], "particles_per_s": r["particles_per_s"],
                             "particles_per_min": r["particles_per_s"] * 60, "job_wall_s": r["wall_s"]})
                rows[-1]["load_avg_1min"] = round(os.getloadavg()[0], 1)
                print(rows[-1], flush=True)
                shutil.rmtree(project, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.name, "cryopares_infer speed (untrained weights, simulated particles)", rows,
                  notes="particles_per_s: the prediction loop (read + preprocess in worker processes, "
                        "network, poses, z-scores, chunk files); startup_s: STAR reading + model loading "
                        "(fixed tables built or read from the cache); job_wall_s: the whole job incl. "
                        "outputs and plots. tiny: 64 px at 5.7 A/px, grid order 2; paper: particles "
                        "200 px at 1.82 A/px -> network 160 px at 1.5 A/px, grid order 4 (294,912 poses). "
                        f"load_avg_1min: the machine's load after each run ({os.cpu_count()} cores); on a "
                        "shared machine the numbers scale down with the load.")


if __name__ == "__main__":
    main()
