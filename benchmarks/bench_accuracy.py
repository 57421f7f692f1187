"""Accuracy on simulated data, C1 and a symmetric map: network poses, local refinement, pruning.

    python -m benchmarks.bench_accuracy [--syms C1 D2] [--n_train 2000] [--n_train_junk 400]
                                        [--n_good 700] [--epochs 30] [--threads 2] [--workdir DIR]
                                        [--realistic on|off|only]

With ``--realistic on`` (default) it first runs :mod:`benchmarks.bench_realistic`: the realistic
extraction (carbon, ice, aggregates, another protein, noise, neighbours, edge strips, a second
microscope) with a row per junk kind and per pruning stage (network only, refinement only, both),
trained without and with known junk (``results/realistic.md``).

For each symmetry: the map is EMD-1832 (box 64 at 5.7 Å/px), for a symmetric group averaged over
the group's operators (RELION's, ``relion_cryopares.geometry.symmetry_matrices``; exact voxel
permutations for the integer operators of C2, C4, D2, ...). A tiny model is trained by
cryopares_train (``--sym`` accordingly, the settings of tests/jobs/test_infer.py: ``--preset tiny
--epochs 30 --box_nnet 32 --angpix_nnet 11.4 --particle_diameter 300``) on ``--n_train`` aligned
particles (CTF, SNR 1, origins up to 5 Å) with ``--n_train_junk`` known junk particles
(``--junk_parts``: pure noise and projections of random-blob maps). As in that test, and to stay
within ~20 minutes on 2 CPU cores, only half model 1 gets the full training set (half model 2 a
token one of 40 particles) and the whole screened set goes through half model 1; the kept particles
are then put into two alternating half sets for local refinement. A fresh set of ``--n_good``
particles plus 30 % junk (half pure noise, half projections of another protein: EMD-5625 from the
shared data resampled onto the grid, else a random-blob map) goes through cryopares_infer
(``--zscore_thr auto``), the kept particles through cryopares_localrefine (reference: the true map,
the demo's ±9°/3°), and the kept good particles at their true poses through cryopares_reconstruct
(the same half sets).

Reported per symmetry: angular error (symmetry-aware: the smallest over the symmetry mates) of the
kept good particles after the network and after local refinement (median, 90th percentile), median
shift error after local refinement, FSC-0.143 resolution of the localrefine half maps and of the
true-pose reconstruction, the AUROC of ``rlnCryoparesZscore`` (good against junk) and the fractions
of good particles kept and of junk rejected.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import work_directory, write_results
from benchmarks.bench_pipeline import map_numbers, sphere_mask, truth_columns
from relion_cryopares.data import (ParticleStar, SimulationConfig, random_blob_map, read_particle_star,
                                   read_volume, simulate_junk, simulate_particles, write_particle_star,
                                   write_volume)
from relion_cryopares.demo import MAP, TRUE, Runner, _mask
from relion_cryopares.fourier import resample_volume
from relion_cryopares.geometry import euler_to_matrix, geodesic_distance_deg, symmetry_matrices
from relion_cryopares.pruning import auroc

SNR = 1.0
N_TRAIN_HALF2 = 40  # as tests/jobs/test_infer.py: half model 2 gets a token training set
DIAMETER = 300.0
MASK = "MaskCreate/job003/mask.mrc"
LOCAL_RANGE, LOCAL_STEP = 9.0, 3.0  # the demo's local search


def symmetrise(vol: torch.Tensor, sym: str) -> torch.Tensor:
    """``mean_L V(L r)`` over RELION's operators ``L`` of ``sym``: a map with that symmetry. Exact
    (voxel permutations about the box centre ``box // 2``) for operators with integer entries."""
    ops = symmetry_matrices(sym)
    if (ops - ops.round()).abs().max() > 1e-9:
        raise ValueError(f"{sym}: only groups with integer operators (C2, C4, D2, D4, O, ...) are supported")
    box = vol.shape[-1]
    c = torch.arange(box) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    r = torch.stack([x, y, z], -1).reshape(-1, 3).to(torch.float64)  # xyz about the centre
    out = torch.zeros_like(vol)
    for op in ops:
        xs, ys, zs = ((r @ op.T).round().long() + box // 2).remainder(box).T
        out += vol[zs, ys, xs].reshape(vol.shape)
    return out / len(ops)


def _other_protein(vol: torch.Tensor, px: float) -> tuple[torch.Tensor | None, str]:
    """EMD-5625 (the shared test data) on the grid of ``vol``, scaled to its maximum; None without it."""
    try:
        from tests.conftest import shared_data_dir
        d = shared_data_dir()
    except ImportError:
        d = None
    if d is None or not (d / "maps_emdb/emd_5625.map").is_file():
        return None, "projections of a random-blob map"
    other, other_px = read_volume(d / "maps_emdb/emd_5625.map")
    other = resample_volume(torch.from_numpy(np.array(other, dtype=np.float32)), other_px, px, vol.shape[-1])
    return other * float(vol.max()) / float(other.max()), "projections of EMD-5625 (another protein)"


def simulate(project: Path, vol: torch.Tensor, px: float, args) -> str:
    """Train/ (training set, known junk), Extract/ (screened set: good + 30 % junk, truth in
    ``rlnCryoparesSim*`` columns), Import/map.mrc, the mask. Returns what the screened junk is."""
    cfg = SimulationConfig(n_particles=args.n_train + N_TRAIN_HALF2, snr=SNR, seed=1, max_shift_angstrom=5.0,
                           particles_per_stack=500)
    train = simulate_particles(vol, px, cfg, project / "Train/Particles", project_dir=project)
    subsets = np.r_[np.ones(args.n_train, dtype=int), np.full(N_TRAIN_HALF2, 2)]
    write_particle_star(project / "Train/train.star", train.with_columns(rlnRandomSubset=subsets))
    n_kind = args.n_train_junk // 4  # as tests/jobs/test_infer.py: noise and random blobs of 4 sizes
    junk = [simulate_junk(vol, px, SimulationConfig(**{**cfg.__dict__, "n_particles": n_kind, "seed": 20 + k}),
                          project / "Train/Junk", f"junk{k}", project_dir=project,
                          other=random_blob_map(vol.shape[-1], vol, 20 + 15 * k, 20 + k, 0.2 + 0.05 * k))
            for k in range(4)]
    write_particle_star(project / "Train/junk.star", ParticleStar.concat(junk))
    n_junk = int(round(args.n_good * 0.3 / 0.7))
    good = simulate_particles(vol, px, SimulationConfig(**{**cfg.__dict__, "n_particles": args.n_good, "seed": 3}),
                              project / "Extract/Good", "good", project_dir=project)
    other, kind = _other_protein(vol, px)
    bad = simulate_junk(vol, px, SimulationConfig(**{**cfg.__dict__, "n_particles": n_junk, "seed": 4}),
                        project / "Extract/Junk", project_dir=project, other=other)
    bad = ParticleStar(bad.optics, bad.particles.drop(columns=[TRUE["junk"]]))
    both = ParticleStar.concat([truth_columns(good, 0), truth_columns(bad, 1)])
    both = both.with_columns(rlnRandomSubset=np.ones(len(both), dtype=int))  # all through half model 1
    order = np.random.default_rng(0).permutation(len(both))  # junk arrives mixed in
    write_particle_star(project / "Extract/particles.star", both.select(order))
    (project / "Import").mkdir(parents=True, exist_ok=True)
    write_volume(project / "Import/map.mrc", vol.numpy(), px)
    _mask(project, project / "Import/map.mrc", vol, px)
    return kind


def _truth(star: ParticleStar) -> tuple[torch.Tensor, np.ndarray]:
    p = star.particles
    angles = p[[TRUE["rot"], TRUE["tilt"], TRUE["psi"]]].to_numpy(float)
    return euler_to_matrix(torch.from_numpy(angles)), p[[TRUE["x"], TRUE["y"]]].to_numpy(float)


def _good(star: ParticleStar) -> ParticleStar:
    return star.select(star.column(TRUE["junk"]).astype(int) == 0)


def _errors(star: ParticleStar, ops: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """Angular error (deg, smallest over the symmetry mates) and shift error (Å) of the good particles."""
    good = _good(star)
    true_a, true_o = _truth(good)
    est = euler_to_matrix(torch.from_numpy(good.angles_deg()))
    ang = geodesic_distance_deg(est, true_a, ops).numpy()
    return ang, np.linalg.norm(good.origins_angstrom() - true_o, axis=1)


def _resolution(job_dir: Path) -> float:
    for line in (job_dir / "run_fsc.star").read_text().splitlines():
        if line.startswith("_rlnFinalResolution"):
            return float(line.split()[1])
    return float("nan")


def _maps(job_dir: Path, vol: torch.Tensor, px: float, what: str) -> dict:
    """FSC 0.143 of a job's half maps in a soft sphere of the particle diameter, FSC 0.5 of its map
    against the true map (same sphere)."""
    r = map_numbers(job_dir / "run_half1_class001_unfil.mrc", job_dir / "run_half2_class001_unfil.mrc",
                    job_dir / "run_class001.mrc", vol, sphere_mask(vol.shape[-1], px), px)
    return {f"fsc0143_{what}_A": r["fsc0143_A"], f"vs_truth_fsc05_{what}_A": r["vs_truth_fsc05_A"]}


def run_symmetry(sym: str, project: Path, args) -> dict:
    vol, px = read_volume(MAP)
    vol = torch.from_numpy(np.array(vol, dtype=np.float32))
    if sym.upper() != "C1":
        vol = symmetrise(vol, sym)
    t0 = time.perf_counter()
    junk_kind = simulate(project, vol, px, args)
    run = Runner(project)
    t = time.perf_counter()
    train = run.external("cryopares_train", {"in_part": "Train/train.star"},
                         {"sym": sym, "preset": "tiny", "epochs": args.epochs, "box_nnet": 32, "angpix_nnet": 2 * px,
                          "particle_diameter": DIAMETER, "junk_parts": "Train/junk.star"}, args.threads)
    t_train = time.perf_counter() - t
    infer = run.external("cryopares_infer", {"in_part": "Extract/particles.star"},
                         {"model": train, "top_k": args.top_k}, args.threads)
    # the kept particles in two alternating half sets for the gold-standard half maps
    kept = read_particle_star(project / infer / "particles.star")
    kept = kept.with_columns(rlnRandomSubset=(np.arange(len(kept)) % 2 + 1).astype(int))
    (project / "Select").mkdir(exist_ok=True)
    write_particle_star(project / "Select/kept.star", kept)
    refine = run.external("cryopares_localrefine", {"in_part": "Select/kept.star", "in_3dref": "Import/map.mrc",
                                                    "in_mask": MASK},
                          {"sym": sym, "range": LOCAL_RANGE, "step": LOCAL_STEP, "particle_diameter": DIAMETER},
                          args.threads)
    refined = read_particle_star(project / refine / "run_data.star")
    # the kept good particles at their true poses, in the half sets localrefine used
    truth = _good(refined)
    p = truth.particles.copy()
    for key, col in (("rot", "rlnAngleRot"), ("tilt", "rlnAngleTilt"), ("psi", "rlnAnglePsi"),
                     ("x", "rlnOriginXAngst"), ("y", "rlnOriginYAngst")):
        p[col] = p[TRUE[key]]
    (project / "Truth").mkdir(exist_ok=True)
    write_particle_star(project / "Truth/true_poses.star", ParticleStar(truth.optics, p))
    recon = run.external("cryopares_reconstruct", {"in_part": "Truth/true_poses.star", "in_mask": MASK},
                         {"sym": sym}, args.threads)

    ops = None if sym.upper() == "C1" else symmetry_matrices(sym)
    kept = read_particle_star(project / infer / "particles.star")
    rejected = read_particle_star(project / infer / "rejected.star")
    both = ParticleStar.concat([kept, rejected])
    is_junk = both.column(TRUE["junk"]).astype(int) == 1
    is_kept = np.r_[np.ones(len(kept), bool), np.zeros(len(rejected), bool)]
    z = both.column("rlnCryoparesZscore").astype(np.float64)
    noise = np.array(["_noise_" in name for name in both.image_names()])  # simulate_junk's pure-noise stacks
    net, _ = _errors(kept, ops)
    ang, shift = _errors(refined, ops)
    row = {"symmetry": sym, "train_particles": args.n_train, "screened": f"{int((~is_junk).sum())} + "
           f"{int(is_junk.sum())} junk", "train_s": t_train,
           "net_median_deg": float(np.median(net)), "net_p90_deg": float(np.percentile(net, 90)),
           "refined_median_deg": float(np.median(ang)), "refined_p90_deg": float(np.percentile(ang, 90)),
           "shift_median_px": float(np.median(shift)) / px, "shift_median_A": float(np.median(shift)),
           **_maps(project / refine, vol, px, "refined"), **_maps(project / recon, vol, px, "true_poses"),
           "zscore_auroc": auroc(z[~is_junk], z[is_junk]), "auroc_noise": auroc(z[~is_junk], z[is_junk & noise]),
           "auroc_other_map": auroc(z[~is_junk], z[is_junk & ~noise]), "kept_good": float(is_kept[~is_junk].mean()),
           "rejected_junk": float((~is_kept[is_junk]).mean())}
    print(row, f"({time.perf_counter() - t0:.0f} s in all)", flush=True)
    own = {"refined": _resolution(project / refine), "true_poses": _resolution(project / recon)}
    return {"row": row, "junk_kind": junk_kind, "px": px, "load": os.getloadavg()[0], "own": own}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--syms", nargs="+", default=["C1", "D2"])
    ap.add_argument("--n_train", type=int, default=2000, help="training particles of half model 1")
    ap.add_argument("--n_train_junk", type=int, default=400, help="known junk for --junk_parts")
    ap.add_argument("--n_good", type=int, default=700, help="screened good particles (30 %% junk added)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top_k", type=int, default=5, help="network poses per particle (local refinement starts)")
    ap.add_argument("--workdir", default=None, help="keep the projects here (default: temporary)")
    ap.add_argument("--name", default="accuracy")
    ap.add_argument("--realistic", choices=("on", "off", "only"), default="on",
                    help="also (or only) the realistic extraction: a row per junk kind and pruning stage "
                         "(benchmarks.bench_realistic, its own table results/realistic.md)")
    args = ap.parse_args(argv)
    if args.realistic != "off":
        from benchmarks import bench_realistic
        bench_realistic.main(["--threads", str(args.threads)]
                             + (["--workdir", str(Path(args.workdir) / "realistic")] if args.workdir else []))
        if args.realistic == "only":
            return
    results = []
    with work_directory(args.workdir, "bench_accuracy_") as base:
        for sym in args.syms:
            project = base / sym
            project.mkdir(parents=True)
            results.append(run_symmetry(sym, project, args))
    px = results[0]["px"]
    notes = (
        f"Simulated EMD-1832 (symmetric groups: the map averaged over RELION's operators of the group), box 64 at "
        f"{px:.2f} Å/px (Nyquist {2 * px:.1f} Å), CTF, SNR {SNR:g}, origins up to 5 Å. Training: {args.n_train} "
        f"aligned particles for half model 1 (half model 2: a token {N_TRAIN_HALF2}; every screened particle "
        f"goes through half model 1, kept particles are then split into alternating half sets) + "
        f"{args.n_train_junk} known junk, cryopares_train --preset tiny "
        f"--epochs {args.epochs} --box_nnet 32 --angpix_nnet {2 * px:.1f} --particle_diameter {DIAMETER:g}. "
        f"Screened: {args.n_good} new particles + 30 % junk (half pure noise, half {results[0]['junk_kind']}); "
        f"cryopares_infer --zscore_thr auto --top_k {args.top_k}; cryopares_localrefine on the kept particles "
        f"(around each of the {args.top_k} network poses) against the true map "
        f"(--range {LOCAL_RANGE:g} --step {LOCAL_STEP:g}, mask from relion_mask_create); cryopares_reconstruct of "
        "the kept good particles at their true poses in the same half sets (localrefine's half maps also "
        "contain the kept junk). Angular errors: kept good particles, smallest over the symmetry mates "
        "(geodesic_distance_deg with symmetry_matrices). net_*: cryopares_infer's poses; refined_*: after "
        "local refinement. fsc0143_*: FSC 0.143 of the half maps of cryopares_localrefine (refined) and of "
        "cryopares_reconstruct at the true poses (true_poses), computed in a soft sphere of the particle "
        "diameter; vs_truth_fsc05_*: FSC 0.5 of their maps against the true map (same sphere). For comparison, "
        "the jobs' own run_fsc.star numbers (inside the tight relion_mask_create mask, corrected for it by "
        "phase randomisation): "
        + "; ".join(f"{r['row']['symmetry']} refined {r['own']['refined']:.1f} Å, true poses "
                    f"{r['own']['true_poses']:.1f} Å" for r in results) + ". zscore_auroc: "
        "rlnCryoparesZscore, good (high) against all junk; auroc_noise / auroc_other_map: against each kind. "
        "kept_good / rejected_junk: the auto threshold. "
        "train_s: the cryopares_train job's wall time. 1-min load average after each symmetry: "
        + ", ".join(f"{r['load']:.1f}" for r in results) + f" ({os.cpu_count()} cores, run under nice).")
    write_results(args.name, "Accuracy on simulated data (network, local refinement, pruning)",
                  [r["row"] for r in results], notes)


if __name__ == "__main__":
    main()
