"""Realistic extractions: two-stage pruning per junk kind, neighbours, refinement accuracy, FSC.

    python -m benchmarks.bench_realistic [--n_train 2000] [--n_good 700] [--epochs 30] [--snr 0.3]
                                         [--known_junk 0 400] [--workdir DIR]

Training set ("the apo protein on microscope 1"): EMD-1832 (box 64 at 5.7 Å/px, 300 kV) extracted
by :func:`relion_cryopares.data.simulate_extraction` without junk but with neighbours (15 %), edge
strips (3 %), detector noise. Screened set ("a ligand dataset on microscope 2"): 200 kV, 4.56 Å/px,
box 80, the same map, 30 % junk (carbon edges, ice, aggregates of 2-3 particles, another protein:
EMD-5625 from the shared data, pure noise), 15 % of the good particles with a neighbour, 3 % with a
zero strip. Jobs run with default settings (``cryopares_train --preset tiny`` on the CPU,
``cryopares_infer``, ``cryopares_localrefine`` against the true map with its defaults).
With ``--known_junk N`` the training gets N known junk particles of the same kinds (other seeds).

As in bench_accuracy (CPU time): half model 1 gets the full training set, half model 2 a token one;
every screened particle goes through half model 1 and the kept ones are split into alternating half
sets for local refinement. The true-pose half maps are cryopares_reconstruct of the same kept good
particles at their true poses, same half sets, same FSC code (no mask).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import markdown_table, work_directory, write_results
from relion_cryopares.data import (ExtractionConfig, ParticleStar, read_particle_star, read_volume,
                                   simulate_extraction, write_particle_star, write_volume)
from relion_cryopares.demo import MAP, Runner
from relion_cryopares.fourier import resample_volume
from relion_cryopares.geometry import euler_to_matrix, geodesic_distance_deg
from relion_cryopares.pruning import auroc

N_TRAIN_HALF2 = 40
KINDS = ("good", "carbon", "ice", "aggregate", "other_protein", "noise")
SIM = ("rlnCryoparesSimAngleRot", "rlnCryoparesSimAngleTilt", "rlnCryoparesSimAnglePsi")


def other_protein(vol: torch.Tensor, px: float) -> torch.Tensor | None:
    """EMD-5625 (shared test data) on the grid of ``vol``, same integrated positive density."""
    try:
        from tests.conftest import shared_data_dir
        d = shared_data_dir()
    except ImportError:
        d = None
    if d is None or not (d / "maps_emdb/emd_5625.map").is_file():
        return None
    other, other_px = read_volume(d / "maps_emdb/emd_5625.map")
    other = resample_volume(torch.from_numpy(np.array(other, dtype=np.float32)), other_px, px, vol.shape[-1])
    return other * float(vol.clamp(min=0).sum()) / float(other.clamp(min=0).sum())


def simulate(project: Path, vol: torch.Tensor, px: float, args) -> None:
    n_train = args.n_train + N_TRAIN_HALF2
    train = simulate_extraction(vol, px, ExtractionConfig(n_good=n_train, junk_fraction=0.0, snr=args.snr,
                                                          max_shift_angstrom=5.0, seed=1),
                                project / "Train/Particles", "train", project_dir=project)
    subsets = np.r_[np.ones(args.n_train, dtype=int), np.full(N_TRAIN_HALF2, 2)]
    write_particle_star(project / "Train/train.star", train.with_columns(rlnRandomSubset=subsets))
    other = other_protein(vol, px)
    if args.known_junk:
        # known junk of the same kinds (other seeds; the "other protein" a random-blob map, not EMD-5625),
        # e.g. what 2D classification rejected on microscope 1
        junk = simulate_extraction(vol, px, ExtractionConfig(n_good=args.known_junk, junk_fraction=0.5, snr=args.snr,
                                                             max_shift_angstrom=5.0, seed=11),
                                   project / "Train/Junk", "junk", project_dir=project)
        write_particle_star(project / "Train/junk.star",
                            junk.select(junk.column("rlnCryoparesSimJunk").astype(int) == 1))
    screen = simulate_extraction(vol, px, ExtractionConfig(
        n_good=args.n_good, junk_fraction=0.3, snr=args.snr, voltage_kv=200.0, pixel_size_angstrom=4.56, box=80,
        max_shift_angstrom=5.0, seed=3, optics_group_name="microscope2"),
        project / "Extract/Particles", "extract", project_dir=project, other_volume=other)
    p = screen.particles.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                                       "rlnOriginYAngst"])
    p["rlnRandomSubset"] = 1  # every particle through half model 1 (see the module docstring)
    write_particle_star(project / "Extract/particles.star", ParticleStar(screen.optics, p))
    (project / "Import").mkdir(parents=True, exist_ok=True)
    write_volume(project / "Import/map.mrc", vol.numpy(), px)


def _errors(star: ParticleStar) -> np.ndarray:
    true = euler_to_matrix(torch.from_numpy(star.particles[list(SIM)].to_numpy(float)))
    est = euler_to_matrix(torch.from_numpy(star.angles_deg()))
    return geodesic_distance_deg(est, true).numpy()


def _resolution(job_dir: Path) -> float:
    for line in (job_dir / "run_fsc.star").read_text().splitlines():
        if line.startswith("_rlnFinalResolution"):
            return float(line.split()[1])
    return float("nan")


def run_case(project: Path, args) -> dict:
    vol, px = read_volume(MAP)
    vol = torch.from_numpy(np.array(vol, dtype=np.float32))
    simulate(project, vol, px, args)
    run = Runner(project)
    t = time.perf_counter()
    params = {"preset": "tiny", "epochs": args.epochs, "box_nnet": 32, "angpix_nnet": 2 * px,
              "particle_diameter": args.diameter}
    if args.known_junk:
        params["junk_parts"] = "Train/junk.star"
    train = run.external("cryopares_train", {"in_part": "Train/train.star"}, params, args.threads)
    t_train = time.perf_counter() - t
    infer = run.external("cryopares_infer", {"in_part": "Extract/particles.star"}, {"model": train}, args.threads)
    kept1 = read_particle_star(project / infer / "particles.star")
    kept1 = kept1.with_columns(rlnRandomSubset=(np.arange(len(kept1)) % 2 + 1).astype(int))
    (project / "Select").mkdir(exist_ok=True)
    write_particle_star(project / "Select/particles.star", kept1)
    (project / "Select/cryopares_infer_summary.json").write_text((project / infer / "cryopares_infer_summary.json")
                                                                 .read_text())
    t = time.perf_counter()
    refine = run.external("cryopares_localrefine", {"in_part": "Select/particles.star",
                                                    "in_3dref": "Import/map.mrc"}, {}, args.threads)
    t_refine = time.perf_counter() - t
    # the refinement stage alone: every particle (network threshold none) through localrefine
    everything = run.external("cryopares_infer", {"in_part": "Extract/particles.star"},
                              {"model": train, "zscore_thr": "none"}, args.threads)
    alone = read_particle_star(project / everything / "particles.star")
    alone = alone.with_columns(rlnRandomSubset=(np.arange(len(alone)) % 2 + 1).astype(int))
    (project / "Select2").mkdir(exist_ok=True)
    write_particle_star(project / "Select2/particles.star", alone)
    (project / "Select2/cryopares_infer_summary.json").write_text(
        (project / everything / "cryopares_infer_summary.json").read_text())
    refine_alone = run.external("cryopares_localrefine", {"in_part": "Select2/particles.star",
                                                          "in_3dref": "Import/map.mrc"}, {}, args.threads)
    kept_alone = read_particle_star(project / refine_alone / "run_data.star")
    rej1 = read_particle_star(project / infer / "rejected.star")
    kept2 = read_particle_star(project / refine / "run_data.star")
    rej2 = read_particle_star(project / refine / "rejected.star")
    allp = ParticleStar.concat([kept1, rej1])
    kind = allp.column("rlnCryoparesSimKind").astype(str)
    names1 = set(kept1.image_names())
    names2 = set(kept2.image_names())
    stage1 = np.array([n in names1 for n in allp.image_names()])
    final = np.array([n in names2 for n in allp.image_names()])
    z1 = allp.column("rlnCryoparesZscore").astype(float)
    r2 = ParticleStar.concat([kept2, rej2])
    kind2 = r2.column("rlnCryoparesSimKind").astype(str)
    z2 = r2.column("rlnCryoparesRefineZscore").astype(float)
    rows = []
    for k in KINDS:
        sel = kind == k
        sel2 = kind2 == k
        alone_names = set(kept_alone.image_names())
        only2 = np.array([n in alone_names for n in allp.image_names()])
        row = {"kind": k, "n": int(sel.sum()), "kept_network_only": float(stage1[sel].mean()),
               "kept_refinement_only": float(only2[sel].mean()), "kept_both": float(final[sel].mean())}
        if k != "good":
            row["auroc_network"] = auroc(z1[kind == "good"], z1[sel])
            ok = np.isfinite(z2)
            row["auroc_refine"] = auroc(z2[(kind2 == "good") & ok], z2[sel2 & ok]) if (sel2 & ok).any() else None
        rows.append(row)
    good2 = kept2.select(kept2.column("rlnCryoparesSimKind").astype(str) == "good")
    err = _errors(good2)
    net = _errors(kept1.select(kept1.column("rlnCryoparesSimKind").astype(str) == "good"))
    neigh = good2.column("rlnCryoparesSimNeighbour").astype(int) == 1
    # true-pose reconstruction of the same kept good particles
    p = good2.particles.copy()
    for a, b in zip(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"),
                    SIM + ("rlnCryoparesSimOriginXAngst", "rlnCryoparesSimOriginYAngst")):
        p[a] = p[b]
    (project / "Truth").mkdir(exist_ok=True)
    write_particle_star(project / "Truth/true_poses.star", ParticleStar(good2.optics, p))
    recon = run.external("cryopares_reconstruct", {"in_part": "Truth/true_poses.star"}, {}, args.threads)
    summary = {"known_junk": args.known_junk, "train_s": round(t_train, 1), "refine_s": round(t_refine, 1),
               "net_median_deg": float(np.median(net)), "refined_median_deg": float(np.median(err)),
               "refined_gt10_pct": float(100 * (err > 10).mean()),
               "neighbour_median_deg": float(np.median(err[neigh])) if neigh.any() else None,
               "isolated_median_deg": float(np.median(err[~neigh])),
               "fsc0143_refined_A": _resolution(project / refine), "fsc0143_true_A": _resolution(project / recon),
               "refine_particles_per_s": round(len(kept1) / t_refine, 2)}
    print(json.dumps({"summary": summary, "kinds": rows}, indent=1), flush=True)
    return {"summary": summary, "kinds": rows}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n_train", type=int, default=2000)
    ap.add_argument("--n_good", type=int, default=700)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--snr", type=float, default=0.3)
    ap.add_argument("--diameter", type=float, default=300.0)
    ap.add_argument("--known_junk", type=int, nargs="+", default=[0, 400])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--name", default="realistic")
    args = ap.parse_args(argv)
    results = []
    with work_directory(args.workdir, "bench_realistic_") as base:
        for n in args.known_junk:
            project = base / f"junk{n}"
            project.mkdir(parents=True)
            results.append(run_case(project, argparse.Namespace(**{**vars(args), "known_junk": n})))
    rows = [{"known_junk": r["summary"]["known_junk"], **k} for r in results for k in r["kinds"]]
    notes = (
        "Kept fractions per simulated kind: `kept_network_only` = cryopares_infer's auto threshold alone "
        "(stage 1); `kept_refinement_only` = cryopares_localrefine's auto threshold on every particle "
        "(infer with --zscore_thr none; stage 2 alone); `kept_both` = the default chain (stage 1, then "
        "stage 2 on its kept particles). AUROCs: rlnCryoparesZscore (network) and rlnCryoparesRefineZscore "
        "(refinement, particles that went through the default chain), good against each kind.\n\n"
        "Poses, resolution and times of the default chain (kept good particles after both stages):\n\n"
        + markdown_table([r["summary"] for r in results])
        + f"\n\nSettings: {args.n_train} training particles (half 1; half 2 a token {N_TRAIN_HALF2}), "
        f"--epochs {args.epochs}, SNR {args.snr:g}, {args.n_good} screened good particles + 30 % junk; "
        f"fsc0143_true_A: cryopares_reconstruct of the same kept good particles at their true poses; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f}.")
    write_results(args.name, "Realistic extractions: pruning per junk kind and stage", rows, notes)


if __name__ == "__main__":
    main()
