"""The end-to-end demo: a ligand screen on simulated data, run as RELION External jobs.

    python -m relion_cryopares.demo [--out demo_project] [--n_apo 3000] [--n_ligand 1000] [--snr 0.3]

With no data from the user it
1. simulates realistic extractions (:func:`relion_cryopares.data.simulate_extraction`: CTF, counting
   detector MTF and noise, neighbouring particles, micrograph-edge strips) of the shipped map
   (EMD-1832, 5.7 Å/px, box 64, 300 kV): an "apo" training set without junk, with poses as a
   Refine3D run would give them, and ``--n_known_junk`` known junk particles (carbon edges, ice,
   aggregates, another protein, noise: what a 2D classification of the apo data rejected);
2. simulates a "ligand" data set from a copy of the map with an extra density on "another
   microscope" (200 kV, 4.56 Å/px, box 80), as extracted particles (no poses, small unknown shifts)
   with 30 % junk of the same kinds; the truth travels in ``rlnCryoparesSim*`` columns (kind, pose),
   which every job keeps;
3. runs, in a real RELION project through ``relion_pipeliner`` when RELION is installed (else the
   same commands directly): cryopares_train (``tiny``) -> cryopares_infer (first pruning stage: the
   network's z-score) -> cryopares_localrefine (second stage: the refinement z-score) -> RELION
   PostProcess, with the jobs' defaults except: the ``tiny`` network at 2x binning (minutes on a CPU,
   also on a GPU) and the reference low-pass of the local refinement (``--lowpass``, 20 Å: the FSC
   beyond it is free of reference bias);
4. prints a table: particles of each kind (good, each junk kind) kept after each pruning stage;
   angular error of the network and after refinement on the finally kept good particles; FSC
   resolution against the reconstruction of the same particles at their true poses and against the
   true ligand map; particles/s per step; where the maps and plots are.
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

from relion_cryopares.data import (JUNK_KINDS, ExtractionConfig, ImageStackReader, ParticleStar,
                                   read_particle_star, read_volume, simulate_extraction, with_ligand,
                                   write_particle_star, write_volume)
from relion_cryopares.evaluation import (TRUE_ANGLES, TRUE_ORIGINS, angular_error_deg,
                                         final_resolution_angstrom, kept_fraction_per_kind, of_kind,
                                         shift_error_angstrom)
from relion_cryopares.fourier import FourierAccumulator, fsc_curve, resample_volume, resolution_at
from relion_cryopares.jobs._halfmaps import ReconstructionGrid, finish_half_maps, insert_particles

log = logging.getLogger("relion_cryopares.demo")

MAP = Path(__file__).resolve().parent / "assets" / "emd_1832.map"
MASK = "MaskCreate/job003/mask.mrc"
PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"
#: truth columns by short name (also used by benchmarks/)
TRUE = {"rot": TRUE_ANGLES[0], "tilt": TRUE_ANGLES[1], "psi": TRUE_ANGLES[2], "x": TRUE_ORIGINS[0],
        "y": TRUE_ORIGINS[1], "junk": "rlnCryoparesSimJunk"}
LIGAND_MICROSCOPE = dict(voltage_kv=200.0, pixel_size_angstrom=4.56, box=80, junk_fraction=0.3,
                         optics_group_name="microscope2")
MAX_SHIFT_ANGSTROM = 5.0


@dataclass
class Step:
    name: str
    job: str
    seconds: float
    particles: int


def _simulate(project: Path, n_apo: int, n_ligand: int, snr: float, n_known_junk: int) -> tuple[float, Path]:
    """Writes the Import jobs and the mask; returns the ligand particles' pixel size and Import/."""
    vol, px = read_volume(MAP)
    apo = torch.from_numpy(np.array(vol, dtype=np.float32))
    imp = project / "Import"
    # apo: aligned particles, as a Refine3D run_data.star (microscope 1: the map's own grid)
    cfg = ExtractionConfig(n_good=n_apo, junk_fraction=0.0, snr=snr, max_shift_angstrom=MAX_SHIFT_ANGSTROM, seed=1)
    write_particle_star(imp / "job001" / "run_data.star",
                        simulate_extraction(apo, px, cfg, imp / "job001" / "Particles", "apo", project_dir=project))
    write_volume(imp / "job001" / "apo_map.mrc", apo.numpy(), px)
    if n_known_junk > 0:  # known junk of the apo dataset (as rejected by its 2D classification)
        cfg = ExtractionConfig(n_good=n_known_junk, junk_fraction=0.5, snr=snr,
                               max_shift_angstrom=MAX_SHIFT_ANGSTROM, seed=5)
        junk = simulate_extraction(apo, px, cfg, imp / "job001" / "Junk", "junk", project_dir=project)
        write_particle_star(imp / "job001" / "junk.star", junk.select(junk.column(TRUE["junk"]).astype(int) == 1))
    # ligand: extracted particles on microscope 2 (no poses, origins unknown) + 30 % junk, interleaved
    ligand_map = with_ligand(apo)
    cfg = ExtractionConfig(n_good=n_ligand, snr=snr, max_shift_angstrom=MAX_SHIFT_ANGSTROM, seed=2,
                           **LIGAND_MICROSCOPE)
    lig = simulate_extraction(ligand_map, px, cfg, imp / "job002" / "Particles", "ligand", project_dir=project)
    p = lig.particles.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
                                    "rlnOriginYAngst", "rlnRandomSubset"])  # the truth stays in rlnCryoparesSim*
    write_particle_star(imp / "job002" / "particles.star", ParticleStar(lig.optics, p))
    write_volume(imp / "job002" / "ligand_truth.mrc", ligand_map.numpy(), px)  # on the apo grid
    # the mask on the ligand particles' grid (RELION PostProcess needs the half maps' grid), made from
    # the apo map resampled to it, as `relion_image_handler --rescale_angpix --new_box` would
    lig_px, lig_box = LIGAND_MICROSCOPE["pixel_size_angstrom"], LIGAND_MICROSCOPE["box"]
    on_grid = resample_volume(apo, px, lig_px, lig_box)
    write_volume(imp / "job002" / "apo_map_on_grid.mrc", on_grid.numpy(), lig_px)
    _mask(project, imp / "job002" / "apo_map_on_grid.mrc", on_grid, lig_px)
    return lig_px, imp


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
    """Angular (deg) and shift (Å) errors of the good particles against the simulation truth."""
    good = star.select(star.column(TRUE["junk"]).astype(int) == 0)
    return angular_error_deg(good), shift_error_angstrom(good)


def _on_grid(path: Path, px: float, box: int, clamp: bool = False) -> torch.Tensor:
    """A map file resampled to ``box`` px at ``px`` Å/px (a mask clamped to [0, 1])."""
    vol, vol_px = read_volume(path)
    v = torch.from_numpy(np.array(vol, dtype=np.float32))
    if abs(vol_px - px) > 1e-4 * px or v.shape[-1] != box:
        v = resample_volume(v, vol_px, px, box)
    return v.clamp(0, 1) if clamp else v


def _true_pose_maps(project: Path, good: ParticleStar, mask_path: Path):
    """Half maps (:class:`HalfMapResult`) from the given good particles at their true poses, computed as
    cryopares_localrefine computes its own (same grid, half sets, regularisation and mask)."""
    angles = good.particles[list(TRUE_ANGLES)].to_numpy(float)
    origins = good.particles[list(TRUE_ORIGINS)].to_numpy(float)
    grid = ReconstructionGrid.of(good)
    acc = {1: FourierAccumulator(grid.box), 2: FourierAccumulator(grid.box)}
    subsets = good.random_subset()
    with ImageStackReader(root=project) as reader:
        for h in (1, 2):
            rows = np.flatnonzero(subsets == h)
            for i in range(0, len(rows), 256):
                r = rows[i:i + 256]
                insert_particles(acc[h], good, r, reader, grid, None, angles_deg=angles[r],
                                 origins_angstrom=origins[r])
    mask = _on_grid(mask_path, grid.pixel_size_angstrom, grid.box, clamp=True)
    return finish_half_maps(acc[1], acc[2], grid, mask)


def _vs_truth(full: torch.Tensor, truth_path: Path, mask_path: Path, px: float) -> float:
    """Resolution (Å) where the masked FSC of a full map (``px`` Å/px) against the true map falls below
    0.5; the true map and the mask are resampled to the full map's grid."""
    box = full.shape[-1]
    truth, mask = _on_grid(truth_path, px, box), _on_grid(mask_path, px, box, clamp=True)
    return resolution_at(fsc_curve(full.float().cpu(), truth, mask).numpy(), 0.5, box, px)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="demo_project", help="project directory (recreated)")
    ap.add_argument("--n_apo", type=int, default=3000, help="apo training particles (no junk)")
    ap.add_argument("--n_ligand", type=int, default=1000,
                    help="good ligand particles (junk added: 30 %% of the set, five kinds)")
    ap.add_argument("--snr", type=float, default=0.3,
                    help="signal-to-noise ratio of the good particles (variance over the box)")
    ap.add_argument("--n_known_junk", type=int, default=400,
                    help="known junk particles of the apo dataset given to training (0: none)")
    ap.add_argument("--epochs", type=int, default=30, help="training epochs per half model")
    ap.add_argument("--lowpass", type=float, default=20.0,
                    help="low-pass of the reference in local refinement (A): well above Nyquist "
                         "(9.1 A here), so the FSC beyond it is free of reference bias")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    project = Path(args.out).resolve()
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    t0 = time.perf_counter()
    px, imp = _simulate(project, args.n_apo, args.n_ligand, args.snr, args.n_known_junk)
    n_lig = len(read_particle_star(imp / "job002" / "particles.star"))
    log.info("simulated %d apo and %d ligand particles (%d with junk) in %.0f s", args.n_apo,
             args.n_ligand, n_lig, time.perf_counter() - t0)
    run = Runner(project)
    log.info("running the jobs %s", "through relion_pipeliner" if run.relion else
             "directly (RELION not installed)")
    steps: list[Step] = []

    t = time.perf_counter()
    # the tiny network sees the apo particles at 2x binning (32 px at 11.4 A/px; the ligand particles'
    # field of view is the same): minutes on a CPU
    train_params = {"sym": "C1", "preset": "tiny", "angpix_nnet": 2 * read_volume(MAP)[1], "box_nnet": 32,
                    "epochs": args.epochs}
    if args.n_known_junk > 0:
        train_params["junk_parts"] = "Import/job001/junk.star"
    train = run.external("cryopares_train", {"in_part": "Import/job001/run_data.star",
                                             "in_3dref": "Import/job001/apo_map.mrc"}, train_params)
    steps.append(Step("cryopares_train (tiny)", train, time.perf_counter() - t, args.n_apo))

    t = time.perf_counter()
    infer = run.external("cryopares_infer", {"in_part": "Import/job002/particles.star"},
                         {"model": train, "sym": "C1"})
    steps.append(Step("cryopares_infer", infer, time.perf_counter() - t, n_lig))

    t = time.perf_counter()
    refine = run.external("cryopares_localrefine", {"in_part": f"{infer}particles.star",
                                                    "in_3dref": "Import/job001/apo_map.mrc",
                                                    "in_mask": MASK},
                          {"sym": "C1", "lowpass": args.lowpass})
    kept = read_particle_star(project / infer / "particles.star")
    steps.append(Step("cryopares_localrefine", refine, time.perf_counter() - t, len(kept)))
    pp_job, pp_res = run.postprocess(f"{refine}run_half1_class001_unfil.mrc", MASK, px)
    _report(project, imp, steps, infer, refine, pp_job, pp_res, time.perf_counter() - t0)
    return 0


def _kind_table(every: ParticleStar, stage1: ParticleStar, stage2: ParticleStar) -> list[str]:
    after1, after2 = kept_fraction_per_kind(every, stage1), kept_fraction_per_kind(every, stage2)
    lines = ["| kind | particles | kept after stage 1 (network) | kept after stage 2 (refinement) |",
             "|---|---|---|---|"]
    for kind in ("good",) + JUNK_KINDS:
        n, f1 = after1.get(kind, (0, float("nan")))
        f2 = after2.get(kind, (0, float("nan")))[1]
        lines.append(f"| {kind} | {n} | {round(n * f1) if n else 0} ({f1:.1%}) | "
                     f"{round(n * f2) if n else 0} ({f2:.1%}) |")
    return lines


def _report(project, imp, steps, infer, refine, pp_job, pp_res, total_s) -> None:
    every = read_particle_star(imp / "job002" / "particles.star")
    kept = read_particle_star(project / infer / "particles.star")
    refined = read_particle_star(project / refine / "run_data.star")
    good = of_kind(refined, "good")  # the finally kept good particles
    names = set(good.image_names())
    network = kept.select(np.array([n in names for n in kept.image_names()]))
    ang0, ang1, sh1 = angular_error_deg(network), angular_error_deg(good), shift_error_angstrom(good)
    refined_map, px = read_volume(project / refine / "run_class001.mrc")
    true_maps = _true_pose_maps(project, good, project / MASK)
    truth_map = imp / "job002" / "ligand_truth.mrc"
    ours_vs_truth = _vs_truth(torch.from_numpy(np.array(refined_map, dtype=np.float32)), truth_map,
                              project / MASK, px)
    true_vs_truth = _vs_truth(true_maps.full, truth_map, project / MASK, px)
    stages = [ln[ln.index("stage"):] for ln in (project / refine / "run.out").read_text().splitlines()
              if "stage 1 (" in ln or "stage 2 (" in ln]
    lines = ["", "relion-cryopares demo: results", "", *_kind_table(every, kept, refined), "",
             "| quantity (final kept good particles) | value |", "|---|---|",
             f"| median angular error: network / after local refinement | {np.median(ang0):.2f} / "
             f"{np.median(ang1):.2f} deg |",
             f"| > 10 deg off: network / after local refinement | {np.mean(ang0 > 10):.1%} / "
             f"{np.mean(ang1 > 10):.1%} |",
             f"| median shift error after local refinement | {np.median(sh1):.2f} A ({np.median(sh1) / px:.2f} px) |",
             f"| FSC 0.143, refined half maps (masked) | {final_resolution_angstrom(project / refine):.2f} A "
             f"(Nyquist {2 * px:.2f} A) |",
             f"| FSC 0.143, same particles at true poses (masked) | {true_maps.resolution_0143_angstrom:.2f} A |",
             f"| FSC 0.5 of the map against the true ligand map: refined / true poses | {ours_vs_truth:.2f} A / "
             f"{true_vs_truth:.2f} A |",
             f"| RELION PostProcess resolution | {'%.2f A' % pp_res if pp_res else 'n/a (RELION not installed)'} |"]
    for s in steps:
        lines.append(f"| {s.name} ({s.job}) | {s.seconds:.0f} s, {s.particles / s.seconds:.1f} particles/s |")
    lines += [f"| total | {total_s / 60:.1f} min |", "", *(f"localrefine: {s}" for s in stages), "",
              f"project: {project}",
              f"maps: {project / refine / 'run_class001.mrc'} (+ run_half1/2_class001_unfil.mrc)",
              f"rejected: {project / infer / 'rejected.star'} (stage 1), {project / refine / 'rejected.star'} "
              "(stage 2, rlnCryoparesRejectReason)",
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
