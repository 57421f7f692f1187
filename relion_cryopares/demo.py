"""The end-to-end demo: a ligand screen on simulated data, run as RELION External jobs.

    python -m relion_cryopares.demo [--out demo_project] [--n_apo 3000] [--n_ligand 1400]

With no data from the user it
1. simulates an "apo" training set from the shipped map (EMD-1832): RELION 3.1 STAR + stacks, CTF,
   noise, poses as a Refine3D run would give them;
2. simulates a "ligand" data set from a copy of the map with an extra density, as extracted particles
   (no poses, unknown small shifts), with 30 % junk (pure noise and projections of another map) mixed
   in; the truth travels in ``rlnCryoparesSim*`` columns, which every job keeps;
3. runs, in a real RELION project through ``relion_pipeliner`` when RELION is installed (else the
   same commands directly): cryopares_train (``tiny``) -> cryopares_infer -> cryopares_localrefine ->
   RELION PostProcess;
4. prints a table: angular error before/after refinement, junk kept/rejected, FSC resolution against
   the true-pose reconstruction, particles/s per step, and where the maps and plots are.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from relion_cryopares.data import (ImageStackReader, ParticleStar, SimulationConfig,
                                   read_particle_star, read_volume, simulate_junk,
                                   simulate_junk_variety, simulate_particles, with_ligand,
                                   write_particle_star, write_volume)
from relion_cryopares.fourier import FourierAccumulator, fsc_curve, resolution_at
from relion_cryopares.geometry import euler_to_matrix, geodesic_distance_deg
from relion_cryopares.jobs._halfmaps import ReconstructionGrid, finish_half_maps, insert_particles

log = logging.getLogger("relion_cryopares.demo")

MAP = Path(__file__).resolve().parent / "assets" / "emd_1832.map"
MASK = "MaskCreate/job003/mask.mrc"
PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"
TRUE = {"rot": "rlnCryoparesSimAngleRot", "tilt": "rlnCryoparesSimAngleTilt",
        "psi": "rlnCryoparesSimAnglePsi", "x": "rlnCryoparesSimOriginXAngst",
        "y": "rlnCryoparesSimOriginYAngst", "junk": "rlnCryoparesSimJunk"}


@dataclass
class Step:
    name: str
    job: str
    seconds: float
    particles: int


def _simulate(project: Path, n_apo: int, n_ligand: int, snr: float, n_known_junk: int) -> tuple[float, Path]:
    vol, px = read_volume(MAP)
    apo = torch.from_numpy(vol.copy())
    ligand_map = with_ligand(apo)
    imp = project / "Import"
    # apo: aligned particles, as a Refine3D run_data.star
    cfg = SimulationConfig(n_particles=n_apo, snr=snr, seed=1, max_shift_angstrom=2 * px)
    star = simulate_particles(apo, px, cfg, imp / "job001" / "Particles", project_dir=project)
    write_particle_star(imp / "job001" / "run_data.star", star)
    write_volume(imp / "job001" / "apo_map.mrc", apo.numpy(), px)
    # known junk of the apo dataset (as rejected by its 2D classification): noise and random-blob maps
    known = SimulationConfig(**{**cfg.__dict__, "n_particles": n_known_junk, "seed": 5})
    write_particle_star(imp / "job001" / "junk.star",
                        simulate_junk_variety(apo, px, known, imp / "job001" / "Junk", project_dir=project))
    # ligand: extracted particles (no poses, origins unknown) + 30 % junk
    n_junk = int(round(n_ligand * 0.3 / 0.7))
    cfg = SimulationConfig(n_particles=n_ligand, snr=snr, seed=2, max_shift_angstrom=2 * px)
    good = simulate_particles(ligand_map, px, cfg, imp / "job002" / "Particles", "ligand",
                              project_dir=project)
    junk = simulate_junk(apo, px, SimulationConfig(**{**cfg.__dict__, "n_particles": n_junk,
                                                      "seed": 3}),
                         imp / "job002" / "Particles", project_dir=project)
    truth_cols = {TRUE["rot"]: "rlnAngleRot", TRUE["tilt"]: "rlnAngleTilt",
                  TRUE["psi"]: "rlnAnglePsi", TRUE["x"]: "rlnOriginXAngst",
                  TRUE["y"]: "rlnOriginYAngst"}
    parts = []
    for s, is_junk in ((good, 0), (junk, 1)):
        p = s.particles.copy()
        for new, old in truth_cols.items():
            p[new] = p[old]
        p[TRUE["junk"]] = is_junk
        p = p.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                            "rlnOriginYAngst", "rlnMaxValueProbDistribution", "rlnRandomSubset",
                            "rlnClassNumber"], errors="ignore")
        parts.append(ParticleStar(s.optics, p))
    both = ParticleStar.concat(parts)
    order = np.random.default_rng(4).permutation(len(both))  # junk arrives mixed in
    write_particle_star(imp / "job002" / "particles.star", both.select(order))
    write_volume(imp / "job002" / "ligand_truth.mrc", ligand_map.numpy(), px)
    _mask(project, imp / "job001" / "apo_map.mrc", apo, px)
    return px, imp


def _mask(project: Path, map_path: Path, vol: torch.Tensor, px: float) -> None:
    out = project / "MaskCreate" / "job003" / "mask.mrc"
    out.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("relion_mask_create"):
        subprocess.run(["relion_mask_create", "--i", str(map_path.relative_to(project)), "--o",
                        str(out.relative_to(project)), "--ini_threshold",
                        f"{0.1 * float(vol.max()):.4f}", "--extend_inimask", "2",
                        "--width_soft_edge", "4"], cwd=project, check=True, capture_output=True)
    else:  # the same idea: threshold, dilate, soft edge
        m = (vol > 0.1 * vol.max()).float()[None, None]
        m = torch.nn.functional.max_pool3d(m, 5, 1, 2)
        m = torch.nn.functional.avg_pool3d(m, 5, 1, 2)[0, 0]
        write_volume(out, m.numpy(), px)


class Runner:
    """Runs External jobs through relion_pipeliner (or directly without RELION)."""

    def __init__(self, project: Path):
        self.project = project
        self.relion = shutil.which("relion_pipeliner") is not None
        self.counter = 4
        if self.relion:
            (project / "default_pipeline.star").write_text(PIPELINE_31)

    def _next(self) -> str:
        job = f"External/job{self.counter:03d}/"
        self.counter += 1
        return job

    def external(self, exe: str, inputs: dict[str, str], params: dict[str, object],
                 threads: int = 2) -> str:
        exe_path = shutil.which(exe) or str(Path(sys.executable).parent / exe)
        if self.relion:
            opts = {"fn_exe": exe_path, "nr_threads": str(threads), **inputs}
            for i, (k, v) in enumerate(params.items(), start=1):
                opts[f"param{i}_label"] = k
                if v is not True:
                    opts[f"param{i}_value"] = str(v)
            job = self._pipeliner_add("External", opts)
            self._pipeliner_run(job)
        else:
            job = self._next()
            flags = {"in_part": "--in_parts", "in_3dref": "--in_3dref", "in_mask": "--in_mask"}
            argv = [exe_path, "--o", job, "--j", str(threads)]
            for k, v in inputs.items():
                argv += [flags[k], v]
            for k, v in params.items():
                argv += [f"--{k}"] + ([] if v is True else [str(v)])
            (self.project / job).mkdir(parents=True, exist_ok=True)
            with open(self.project / job / "run.out", "a") as out, \
                    open(self.project / job / "run.err", "a") as err:
                subprocess.run(argv, cwd=self.project, stdout=out, stderr=err)
        if not (self.project / job / "RELION_JOB_EXIT_SUCCESS").exists():
            err = (self.project / job / "run.err").read_text() if (self.project / job / "run.err").exists() else ""
            raise RuntimeError(f"{exe} ({job}) failed: {err.strip()[-500:]}")
        return job

    def _pipeliner_add(self, kind: str, opts: dict[str, str]) -> str:
        before = set(self.project.glob("*/job*/"))
        text = ";".join(f"{k} == {v}" for k, v in opts.items())
        subprocess.run(["relion_pipeliner", "--addJob", kind, "--addJobOptions", text],
                       cwd=self.project, check=True, capture_output=True)
        pipeline = (self.project / "default_pipeline.star").read_text()
        names = [w for w in pipeline.split() if w.endswith("/") and "/job" in w]
        new = [n for n in names if (self.project / n) not in before]
        return new[-1]

    def _pipeliner_run(self, job: str) -> None:
        for lock in self.project.glob(".relion_lock*"):
            shutil.rmtree(lock, ignore_errors=True)
        subprocess.run(["relion_pipeliner", "--RunJobs", f"{job} ", "--sec_wait_after", "0"],
                       cwd=self.project, check=True, capture_output=True)

    def postprocess(self, half1: str, mask: str, px: float) -> tuple[str, float | None]:
        """RELION PostProcess on our half maps; returns (job, resolution) or ('', None)."""
        if not self.relion:
            return "", None
        job = self._pipeliner_add("PostProcess", {
            "fn_in": half1, "fn_mask": mask, "angpix": f"{px}", "do_auto_bfac": "No",
            "do_adhoc_bfac": "Yes", "adhoc_bfac": "-100"})
        self._pipeliner_run(job)
        star = self.project / job / "postprocess.star"
        if not star.exists():
            return job, None
        for line in star.read_text().splitlines():
            if line.startswith("_rlnFinalResolution"):
                return job, float(line.split()[1])
        return job, None


def _errors(star: ParticleStar) -> tuple[np.ndarray, np.ndarray]:
    """Angular (deg) and shift (Å) errors of good particles against the simulation truth."""
    p = star.particles
    good = p[TRUE["junk"]].to_numpy() == 0
    est = euler_to_matrix(torch.from_numpy(star.angles_deg()[good]))
    true = euler_to_matrix(torch.from_numpy(np.array(p.loc[good, [TRUE["rot"], TRUE["tilt"],
                                                                   TRUE["psi"]]], dtype=np.float64)))
    ang = geodesic_distance_deg(est, true).numpy()
    shift = np.linalg.norm(star.origins_angstrom()[good]
                           - p.loc[good, [TRUE["x"], TRUE["y"]]].to_numpy(float), axis=1)
    return ang, shift


def _true_pose_maps(project: Path, star: ParticleStar, mask_path: Path):
    """Half maps (:class:`HalfMapResult`) from the same kept good particles at their true poses,
    computed as cryopares_localrefine computes its own (same grid, regularisation and mask)."""
    p = star.particles
    good = np.flatnonzero(p[TRUE["junk"]].to_numpy() == 0)
    truth = star.select(good)
    angles = truth.particles[[TRUE["rot"], TRUE["tilt"], TRUE["psi"]]].to_numpy(float)
    origins = truth.particles[[TRUE["x"], TRUE["y"]]].to_numpy(float)
    grid = ReconstructionGrid.of(truth)
    acc = {1: FourierAccumulator(grid.box), 2: FourierAccumulator(grid.box)}
    subsets = truth.random_subset()
    with ImageStackReader(root=project) as reader:
        for h in (1, 2):
            rows = np.flatnonzero(subsets == h)
            for i in range(0, len(rows), 256):
                r = rows[i:i + 256]
                insert_particles(acc[h], truth, r, reader, grid, None, angles_deg=angles[r],
                                 origins_angstrom=origins[r])
    mask, _ = read_volume(mask_path)
    return finish_half_maps(acc[1], acc[2], grid, torch.from_numpy(np.array(mask, dtype=np.float32)))


def _vs_truth(full: torch.Tensor, truth_path: Path, mask_path: Path, px: float) -> float:
    """Resolution (Å) where the masked FSC of a full map against the true map falls below 0.5."""
    truth, _ = read_volume(truth_path)
    mask, _ = read_volume(mask_path)
    m = torch.from_numpy(np.array(mask, dtype=np.float32))
    fsc = fsc_curve(full.float().cpu(), torch.from_numpy(np.array(truth, dtype=np.float32)), m).numpy()
    return resolution_at(fsc, 0.5, full.shape[-1], px)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="demo_project", help="project directory (recreated)")
    ap.add_argument("--n_apo", type=int, default=3000)
    ap.add_argument("--n_ligand", type=int, default=1000, help="good particles (junk added: 30 %%)")
    ap.add_argument("--snr", type=float, default=1.0)
    ap.add_argument("--n_known_junk", type=int, default=400,
                    help="known junk particles of the apo dataset given to training (0: none)")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs per half model")
    ap.add_argument("--top_k", type=int, default=5,
                    help="network poses per particle; local refinement searches around each (1: only the best)")
    ap.add_argument("--range", type=float, default=6.0, help="local refinement range (deg)")
    ap.add_argument("--step", type=float, default=2.0, help="local refinement step (deg)")
    ap.add_argument("--lowpass", type=float, default=20.0,
                    help="low-pass of the reference in local refinement (A): well above Nyquist "
                         "(11.4 A here), so the FSC beyond it is free of reference bias")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    project = Path(args.out).resolve()
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    t0 = time.perf_counter()
    px, imp = _simulate(project, args.n_apo, args.n_ligand, args.snr, args.n_known_junk)
    log.info("simulated %d apo and %d ligand particles (+30 %% junk) in %.0f s", args.n_apo,
             args.n_ligand, time.perf_counter() - t0)
    run = Runner(project)
    log.info("running the jobs %s", "through relion_pipeliner" if run.relion else
             "directly (RELION not installed)")
    steps: list[Step] = []
    n_lig = len(read_particle_star(imp / "job002" / "particles.star"))

    t = time.perf_counter()
    # the tiny network sees the particles at 2x binning (32 px at 11.4 A/px): minutes on a CPU
    train_params = {"sym": "C1", "preset": "tiny", "angpix_nnet": 2 * px, "box_nnet": 32,
                    "epochs": args.epochs}
    if args.n_known_junk > 0:
        train_params["junk_parts"] = "Import/job001/junk.star"
    train = run.external("cryopares_train", {"in_part": "Import/job001/run_data.star",
                                             "in_3dref": "Import/job001/apo_map.mrc"}, train_params)
    steps.append(Step("cryopares_train (tiny)", train, time.perf_counter() - t, args.n_apo))

    t = time.perf_counter()
    infer = run.external("cryopares_infer", {"in_part": "Import/job002/particles.star"},
                         {"model": train, "sym": "C1", "top_k": args.top_k})
    steps.append(Step("cryopares_infer", infer, time.perf_counter() - t, n_lig))

    t = time.perf_counter()
    refine = run.external("cryopares_localrefine", {"in_part": f"{infer}particles.star",
                                                    "in_3dref": "Import/job001/apo_map.mrc",
                                                    "in_mask": MASK},
                          {"sym": "C1", "range": args.range, "step": args.step, "lowpass": args.lowpass})
    kept = read_particle_star(project / infer / "particles.star")
    steps.append(Step("cryopares_localrefine", refine, time.perf_counter() - t, len(kept)))
    pp_job, pp_res = run.postprocess(f"{refine}run_half1_class001_unfil.mrc",
                                     MASK, px)
    _report(project, steps, infer, refine, pp_job, pp_res, px, time.perf_counter() - t0)
    return 0


def _report(project, steps, infer, refine, pp_job, pp_res, px, total_s) -> None:
    kept = read_particle_star(project / infer / "particles.star")
    rejected = read_particle_star(project / infer / "rejected.star")
    refined = read_particle_star(project / refine / "run_data.star")
    kj = kept.particles[TRUE["junk"]].to_numpy()
    rj = rejected.particles[TRUE["junk"]].to_numpy()
    ang0, _ = _errors(kept)
    ang1, sh1 = _errors(refined)
    ours = float([ln.split()[1] for ln in (project / refine / "run_fsc.star").read_text().splitlines()
                  if ln.startswith("_rlnFinalResolution")][0])
    true_maps = _true_pose_maps(project, refined, project / MASK)
    truth_map = project / "Import" / "job002" / "ligand_truth.mrc"
    refined_map, _ = read_volume(project / refine / "run_class001.mrc")
    ours_vs_truth = _vs_truth(torch.from_numpy(np.array(refined_map, dtype=np.float32)), truth_map,
                              project / MASK, px)
    true_vs_truth = _vs_truth(true_maps.full, truth_map, project / MASK, px)
    lines = [
        "", "relion-cryopares demo: results", "",
        "| quantity | value |", "|---|---|",
        f"| good particles kept by pruning | {int((kj == 0).sum())} / {int((kj == 0).sum() + (rj == 0).sum())} |",
        f"| junk rejected by pruning | {int((rj == 1).sum())} / {int((kj == 1).sum() + (rj == 1).sum())} |",
        f"| median angular error, network (kept good) | {np.median(ang0):.2f} deg |",
        f"| median angular error, after local refinement | {np.median(ang1):.2f} deg |",
        f"| kept good particles > 20 deg off: network / after local refinement | {np.mean(ang0 > 20):.1%} / "
        f"{np.mean(ang1 > 20):.1%} |",
        f"| median shift error after local refinement | {np.median(sh1):.2f} A ({np.median(sh1) / px:.2f} px) |",
        f"| FSC 0.143, refined half maps (masked) | {ours:.2f} A (Nyquist {2 * px:.2f} A) |",
        f"| FSC 0.143, same particles at true poses (masked) | {true_maps.resolution_0143_angstrom:.2f} A |",
        f"| FSC 0.5 of the map against the true ligand map: refined / true poses | {ours_vs_truth:.2f} A / "
        f"{true_vs_truth:.2f} A |",
        f"| RELION PostProcess resolution | {'%.2f A' % pp_res if pp_res else 'n/a (RELION not installed)'} |",
    ]
    for s in steps:
        lines.append(f"| {s.name} ({s.job}) | {s.seconds:.0f} s, {s.particles / s.seconds:.1f} particles/s |")
    lines += [f"| total | {total_s / 60:.1f} min |", "",
              f"project: {project}",
              f"maps: {project / refine / 'run_class001.mrc'} (+ run_half1/2_class001_unfil.mrc)",
              f"plots: {project / steps[0].job / 'learning_curves.png'}, "
              f"{project / infer / 'zscore_histogram.png'}, "
              f"{project / infer / 'angular_distribution.png'}, {project / refine / 'fsc.png'}"]
    if pp_job:
        lines.append(f"postprocess: {project / pp_job / 'postprocess.mrc'}")
    text = "\n".join(lines) + "\n"
    (project / "demo_results.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(main())
