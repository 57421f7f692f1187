"""The whole pipeline against RELION: cryopares_infer -> cryopares_localrefine vs relion_refine --auto_refine.

    python -m benchmarks.bench_pipeline [--n 200] [--n_large 2000] [--n_train 3000] [--epochs 20]
                                        [--threads 2] [--workdir DIR] [--name pipeline]

The demo's ligand-screen scenario (relion_cryopares.demo), without junk so that both programs see
exactly the same particles:

1. an "apo" training set of ``--n_train`` aligned particles of the shipped map (EMD-1832, box 64 at
   5.7 Å/px) and a "ligand" set of particles of the map with an extra density (``with_ligand``),
   CTF, SNR 1, origins up to 2 px; the truth travels in ``rlnCryoparesSim*`` columns. The map is
   scaled so that the noise has unit standard deviation (RELION expects normalised particles);
2. cryopares_train (``tiny``, 32 px at 11.4 Å/px, both half sets) on the apo set, timed
   separately: it is done once per protein;
3. ours on the first ``--n`` ligand particles: cryopares_infer (``--zscore_thr none``: nothing
   pruned) -> cryopares_localrefine (±9°/3°, as the demo) against the apo map, once at full
   resolution (the ligand-screen use: the apo structure is known) and once low-passed to 20 Å (what
   RELION starts from); and, alone, on all ``--n_large`` ligand particles;
4. RELION 3.1 on the same ``--n`` particles: ``relion_refine_mpi --auto_refine`` from the apo map
   low-pass filtered to 20 Å (``relion_image_handler --lowpass 20``), with the options RELION's
   Refine3D GUI passes (2 MPI workers, one per half set, 1 thread each, plus the leader: the 2 cores
   of this machine) and the same mask. ``--n`` is small because this RELION (CPU, no vectorised
   path) needs ~1 s per particle for each global iteration at 3.75° here: 2000 particles would take
   hours, not the ~12 minutes a benchmark run may spend.

Reported per method: wall time and particles/s (whole jobs, and the jobs' processing loops), the
FSC-0.143 resolution of the half maps (the same FSC in a soft sphere computed on both programs' half
maps, and each program's own number), the map's FSC-0.5 resolution against the true ligand map (free
of reference bias), median / 90th-percentile angular error and median shift error against the true
poses; and the time each needs to reach a given resolution: the coarser of the two final
resolutions, reached by RELION at its first iteration that gets there (iteration files' times), by
us at the end of localrefine.

Our jobs run through ``relion_pipeliner`` as External jobs (``demo.Runner``), RELION as a
subprocess; both are timed from the outside (process start-up included).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import starfile
import torch

from benchmarks._common import work_directory, write_results
from relion_cryopares.data import (ParticleStar, SimulationConfig, read_particle_star, read_volume,
                                   simulate_particles, with_ligand, write_particle_star, write_volume)
from relion_cryopares.data._simulate import estimate_noise_sigma
from relion_cryopares.demo import MAP, TRUE, Runner, _errors, _mask
from relion_cryopares.fourier import fsc_curve, lowpass_volume, resolution_at, soft_sphere_mask

SNR = 1.0
DIAMETER = 300.0  # Å, both programs
MASK = "MaskCreate/job003/mask.mrc"
LOCAL_RANGE, LOCAL_STEP = 9.0, 3.0  # the demo's local search


def truth_columns(star: ParticleStar, junk: int = 0) -> ParticleStar:
    """Poses and origins moved to ``rlnCryoparesSim*`` columns (as the demo does), with
    ``rlnCryoparesSimJunk``; pose, subset and class columns dropped: extracted particles."""
    p = star.particles.copy()
    for key, old in (("rot", "rlnAngleRot"), ("tilt", "rlnAngleTilt"), ("psi", "rlnAnglePsi"),
                     ("x", "rlnOriginXAngst"), ("y", "rlnOriginYAngst")):
        p[TRUE[key]] = p[old]
    p[TRUE["junk"]] = junk
    p = p.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                        "rlnMaxValueProbDistribution", "rlnRandomSubset", "rlnClassNumber"], errors="ignore")
    return ParticleStar(star.optics, p)


def unit_noise_map(vol: torch.Tensor, px: float, snr: float = SNR) -> torch.Tensor:
    """``vol`` scaled so that particles simulated at ``snr`` have noise of standard deviation ~1."""
    return vol / estimate_noise_sigma(vol, px, SimulationConfig(n_particles=1, snr=snr, seed=0))


def lowpass_file(src: Path, dst: Path, resolution: float, px: float) -> None:
    """``relion_image_handler --lowpass`` (what a RELION user would run), else ``lowpass_volume``."""
    if shutil.which("relion_image_handler"):
        subprocess.run(["relion_image_handler", "--i", str(src), "--o", str(dst), "--lowpass", str(resolution)],
                       check=True, capture_output=True)
    else:
        vol, _ = read_volume(src)
        write_volume(dst, lowpass_volume(torch.from_numpy(vol.copy()), resolution, px).numpy(), px)


def simulate(project: Path, n_train: int, n: int, n_large: int) -> tuple[float, torch.Tensor]:
    """Import/job001: apo training set, apo map, the apo map low-passed to 20 Å. Import/job002:
    ``max(n, n_large)`` ligand particles (``particles_all.star``), the first ``n`` of them
    (``particles.star``), the true ligand map. MaskCreate/job003: a mask of the apo map. Returns
    the pixel size and the true ligand map."""
    vol, px = read_volume(MAP)
    apo = unit_noise_map(torch.from_numpy(vol.copy()), px)
    ligand = with_ligand(apo)
    imp = project / "Import"
    cfg = SimulationConfig(n_particles=n_train, snr=SNR, seed=1, max_shift_angstrom=2 * px)
    star = simulate_particles(apo, px, cfg, imp / "job001" / "Particles", project_dir=project)
    write_particle_star(imp / "job001" / "run_data.star", star)
    write_volume(imp / "job001" / "apo_map.mrc", apo.numpy(), px)
    lowpass_file(imp / "job001" / "apo_map.mrc", imp / "job001" / "apo_map_lp20.mrc", 20.0, px)
    cfg = SimulationConfig(n_particles=max(n, n_large), snr=SNR, seed=2, max_shift_angstrom=2 * px)
    star = truth_columns(simulate_particles(ligand, px, cfg, imp / "job002" / "Particles", "ligand",
                                            project_dir=project))
    write_particle_star(imp / "job002" / "particles_all.star", star)
    write_particle_star(imp / "job002" / "particles.star", star.select(np.arange(n)))
    write_volume(imp / "job002" / "ligand_truth.mrc", ligand.numpy(), px)
    _mask(project, imp / "job001" / "apo_map.mrc", apo, px)
    return px, ligand


def _vol(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(read_volume(path)[0], dtype=np.float32))


def sphere_mask(box: int, px: float) -> torch.Tensor:
    """The common FSC mask: a sphere of the particle diameter with a 4 px cosine edge."""
    return soft_sphere_mask(box, DIAMETER / 2 / px, 4.0, ndim=3)


def _resolution(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, threshold: float, px: float) -> float:
    fsc = torch.nan_to_num(fsc_curve(a, b, mask), nan=0.0)  # shells empty in both maps (0/0): no signal
    return resolution_at(fsc, threshold, a.shape[-1], px)


def map_numbers(half1: Path, half2: Path, full: Path | None, truth: torch.Tensor, mask: torch.Tensor,
                px: float) -> dict:
    """Masked half-map FSC 0.143 and, for ``full``, the FSC-0.5 resolution against the truth."""
    out = {"fsc0143_A": _resolution(_vol(half1), _vol(half2), mask, 0.143, px)}
    if full is not None:
        out["vs_truth_fsc05_A"] = _resolution(_vol(full), truth, mask, 0.5, px)
    return out


def star_value(path: Path, label: str) -> float:
    """First value of ``label`` in a STAR file's key-value blocks."""
    for line in path.read_text().splitlines():
        if line.startswith(label + " ") or line.startswith(label + "\t"):
            return float(line.split()[1])
    return float("nan")


def relion_command(n_threads: int, out: str, sym: str = "C1") -> list[str]:
    """``relion_refine_mpi`` as RELION 3.1's Refine3D GUI writes it (defaults: 7.5° initial sampling,
    local searches from 1.8°, offsets 5 px / 1 px, ref. map not on the absolute greyscale)."""
    return ["relion_refine_mpi", "--o", out, "--auto_refine", "--split_random_halves",
            "--i", "Import/job002/particles.star", "--ref", "Import/job001/apo_map_lp20.mrc",
            "--firstiter_cc", "--ini_high", "20", "--dont_combine_weights_via_disc", "--pool", "3",
            "--pad", "2", "--skip_gridding", "--ctf", "--particle_diameter", f"{DIAMETER:g}",
            "--flatten_solvent", "--zero_mask", "--solvent_mask", MASK, "--oversampling", "1",
            "--healpix_order", "2", "--auto_local_healpix_order", "4", "--offset_range", "5",
            "--offset_step", "2", "--sym", sym, "--low_resol_join_halves", "40", "--norm", "--scale",
            "--j", str(n_threads)]


def run_relion(project: Path, job: str, mpi: int = 3, threads: int = 1) -> float:
    """RELION auto-refine (``mpi`` processes: leader + one worker per half set); wall seconds."""
    (project / job).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    argv = ["mpirun", "--oversubscribe", "-n", str(mpi)] + relion_command(threads, job + "run")
    (project / job / "note.txt").write_text(" ".join(argv) + "\n")
    t0 = time.time()
    with open(project / job / "run.out", "w") as out, open(project / job / "run.err", "w") as err:
        code = subprocess.run(argv, cwd=project, stdout=out, stderr=err, env=env).returncode
    wall = time.time() - t0
    if code != 0 or not (project / job / "run_data.star").exists():
        raise RuntimeError(f"relion_refine failed ({code}): {(project / job / 'run.err').read_text()[-800:]}")
    (project / job / "start_time.txt").write_text(f"{t0}\n")
    return wall


def gold_standard_resolution(model_star: Path, px: float) -> float:
    """FSC-0.143 resolution of the gold-standard FSC RELION writes in a ``*_model.star``
    (``data_model_class_1``, ``_rlnGoldStandardFsc``: its FSC of the two half reconstructions)."""
    table = starfile.read(model_star, always_dict=True)["model_class_1"]
    fsc = table["rlnGoldStandardFsc"].to_numpy(dtype=np.float64)
    return resolution_at(fsc, 0.143, 2 * (len(fsc) - 1), px)


def relion_iterations(project: Path, job: str, t0: float, truth: torch.Tensor, mask: torch.Tensor,
                      px: float) -> list[dict]:
    """Per iteration: seconds since the start (time of its half-1 model file), RELION's own current
    resolution, the FSC-0.143 resolution of its gold-standard FSC, and the FSC-0.5 resolution of the
    sum of its two half maps against the truth. (The per-iteration half maps are masked and
    band-limited to the current resolution, which makes their FSC against each other rise again at
    high frequency: they are not used for a half-map FSC of our own.)"""
    rows = []
    for model in sorted((project / job).glob("run_it[0-9][0-9][0-9]_half1_model.star")):
        it = int(re.search(r"_it(\d+)_", model.name).group(1))
        if it == 0:
            continue
        both = _vol(model.parent / f"run_it{it:03d}_half1_class001.mrc") + \
            _vol(model.parent / f"run_it{it:03d}_half2_class001.mrc")
        rows.append({"iteration": it, "seconds": model.stat().st_mtime - t0,
                     "relion_resolution_A": star_value(model, "_rlnCurrentResolution"),
                     "gold_standard_fsc0143_A": gold_standard_resolution(model, px),
                     "vs_truth_fsc05_A": _resolution(both, truth, mask, 0.5, px)})
    return rows


def job_rate(project: Path, job: str) -> float:
    """The last particles/s a job logged (its processing loop, without start-up and outputs)."""
    rates = re.findall(r"([\d.]+) particles/s", (project / job / "run.out").read_text())
    return float(rates[-1]) if rates else float("nan")


def _angles(star: ParticleStar) -> dict:
    ang, shift = _errors(star)
    return {"median_angle_err_deg": float(np.median(ang)), "p90_angle_err_deg": float(np.percentile(ang, 90)),
            "over_20deg_frac": float((ang > 20).mean()), "median_shift_err_A": float(np.median(shift))}


def _ours(run: Runner, project: Path, star: str, train: str, threads: int, top_k: int,
          lowpass: float | None = None) -> dict:
    """cryopares_infer (nothing pruned, ``top_k`` poses) -> cryopares_localrefine (around each of them)
    against the apo map, timed."""
    t = time.perf_counter()
    infer = run.external("cryopares_infer", {"in_part": star}, {"model": train, "zscore_thr": "none",
                                                                 "top_k": top_k}, threads)
    t_infer = time.perf_counter() - t
    params = {"sym": "C1", "range": LOCAL_RANGE, "step": LOCAL_STEP, "particle_diameter": DIAMETER}
    if lowpass is not None:
        params["lowpass"] = lowpass
    t = time.perf_counter()
    refine = run.external("cryopares_localrefine", {"in_part": f"{infer}particles.star",
                                                    "in_3dref": "Import/job001/apo_map.mrc", "in_mask": MASK},
                          params, threads)
    t_refine = time.perf_counter() - t
    print(f"{star} (lowpass {lowpass}): cryopares_infer {t_infer:.0f} s, cryopares_localrefine {t_refine:.0f} s",
          flush=True)
    return {"infer": infer, "refine": refine, "t_infer": t_infer, "t_refine": t_refine,
            "rates": (job_rate(project, infer), job_rate(project, refine))}


def _row(method: str, n: int, wall: float, loop_rate: float, own: float, maps: dict, angles: dict) -> dict:
    return {"method": method, "particles": n, "wall_s": wall, "particles_per_s": n / wall,
            "loop_particles_per_s": loop_rate, "own_resolution_A": own,
            "fsc0143_A": maps.get("fsc0143_A", float("nan")),
            "vs_truth_fsc05_A": maps.get("vs_truth_fsc05_A", float("nan")),
            **{k: angles.get(k, float("nan")) for k in ("median_angle_err_deg", "p90_angle_err_deg",
                                                         "over_20deg_frac", "median_shift_err_A")}}


def _refined_row(method: str, project: Path, o: dict, n: int, truth: torch.Tensor, mask: torch.Tensor,
                 px: float) -> dict:
    d = project / o["refine"]
    maps = map_numbers(d / "run_half1_class001_unfil.mrc", d / "run_half2_class001_unfil.mrc",
                       d / "run_class001.mrc", truth, mask, px)
    loop = 1.0 / (1.0 / o["rates"][0] + 1.0 / o["rates"][1])
    return _row(method, n, o["t_infer"] + o["t_refine"], loop, star_value(d / "run_fsc.star", "_rlnFinalResolution"),
                maps, _angles(read_particle_star(d / "run_data.star")))


def _time_to(iters: list[dict], key: str, target: float, t_whole: float) -> tuple[float, bool]:
    """Seconds until RELION's first iteration with ``key`` at or below ``target`` (Å)."""
    reached = [r["seconds"] for r in iters if r[key] <= target + 1e-6]
    return (min(reached), True) if reached else (t_whole, False)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="ligand particles for the head-to-head (both programs)")
    ap.add_argument("--n_large", type=int, default=2000, help="ligand particles for ours alone (0: skip)")
    ap.add_argument("--n_train", type=int, default=3000, help="apo training particles (both half sets)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="--j of our jobs")
    ap.add_argument("--top_k", type=int, default=5, help="network poses per particle (local refinement starts)")
    ap.add_argument("--workdir", default=None, help="keep the project here (default: a temporary one)")
    ap.add_argument("--name", default="pipeline")
    args = ap.parse_args(argv)
    load = [os.getloadavg()[0]]
    with work_directory(args.workdir, "bench_pipeline_") as project:
        t = time.perf_counter()
        px, truth = simulate(project, args.n_train, args.n, args.n_large)
        print(f"simulated in {time.perf_counter() - t:.0f} s", flush=True)
        mask = sphere_mask(truth.shape[-1], px)
        run = Runner(project)
        t = time.perf_counter()
        train = run.external("cryopares_train", {"in_part": "Import/job001/run_data.star"},
                             {"sym": "C1", "preset": "tiny", "epochs": args.epochs, "box_nnet": 32,
                              "angpix_nnet": 2 * px, "particle_diameter": DIAMETER}, args.threads)
        t_train = time.perf_counter() - t
        print(f"cryopares_train: {t_train:.0f} s", flush=True)
        load.append(os.getloadavg()[0])
        ours = _ours(run, project, "Import/job002/particles.star", train, args.threads, args.top_k)
        ours20 = _ours(run, project, "Import/job002/particles.star", train, args.threads, args.top_k,
                       lowpass=20.0)
        large = None
        if args.n_large:
            large = _ours(run, project, "Import/job002/particles_all.star", train, args.threads, args.top_k)
        load.append(os.getloadavg()[0])
        t_relion = run_relion(project, "Refine3D/job020/")
        print(f"relion_refine: {t_relion:.0f} s", flush=True)
        load.append(os.getloadavg()[0])

        rdir = project / "Refine3D/job020"
        iters = relion_iterations(project, "Refine3D/job020/", float((rdir / "start_time.txt").read_text()),
                                  truth, mask, px)
        n_large = max(args.n, args.n_large)
        rows = [
            _row("cryopares_train (tiny; once per protein, not counted below)", args.n_train, t_train,
                 float("nan"), float("nan"), {}, {}),
            _row("cryopares_infer alone (network poses)", args.n, ours["t_infer"], ours["rates"][0], float("nan"), {},
                 _angles(read_particle_star(project / ours["infer"] / "particles.star"))),
            _refined_row("cryoPARES: infer + localrefine (apo map reference)", project, ours, args.n, truth, mask, px),
            _refined_row("cryoPARES: infer + localrefine (apo map low-passed to 20 Å)", project, ours20, args.n,
                         truth, mask, px),
            _row(f"RELION auto-refine ({max(r['iteration'] for r in iters)} iterations)", args.n, t_relion,
                 float("nan"), star_value(rdir / "run_model.star", "_rlnCurrentResolution"),
                 map_numbers(rdir / "run_half1_class001_unfil.mrc", rdir / "run_half2_class001_unfil.mrc",
                             rdir / "run_class001.mrc", truth, mask, px),
                 _angles(read_particle_star(rdir / "run_data.star"))),
        ]
        if large is not None:
            rows.append(_refined_row("cryoPARES: infer + localrefine (apo map reference), ours alone", project, large,
                                     n_large, truth, mask, px))
        rel = rows[4]
        ratio_rows = []
        for label, row in (("apo map", rows[2]), ("apo map low-passed to 20 Å", rows[3])):
            t_ours = row["wall_s"]
            for measure, key, iter_key in (("half-map FSC 0.143", "fsc0143_A", "gold_standard_fsc0143_A"),
                                           ("FSC 0.5 against the true map", "vs_truth_fsc05_A", "vs_truth_fsc05_A")):
                target = max(row[key], rel[key])
                t_rel, ok = _time_to(iters, iter_key, target, t_relion)
                ratio_rows.append(f"| {label} | {measure} | {target:.1f} | {t_rel:.0f}{'' if ok else ' (end)'} "
                                  f"| {t_ours:.0f} | {t_rel / t_ours:.1f}x | {t_rel / (t_ours + t_train):.2f}x |")
        times = [0.0] + [r["seconds"] for r in iters]
        slowest = max(b - a for a, b in zip(times, times[1:]))
        iter_text = "\n".join(f"| {r['iteration']} | {r['seconds']:.0f} | {r['relion_resolution_A']:.1f} | "
                               f"{r['gold_standard_fsc0143_A']:.1f} | {r['vs_truth_fsc05_A']:.1f} |" for r in iters)
        notes = (
            "Time to a given resolution: the target is the coarser of the two final resolutions (ours, RELION); "
            "RELION's time is that of its first iteration reaching it (for the half-map FSC: the gold-standard "
            "FSC in its run_itNNN_half1_model.star; against the truth: the sum of that iteration's half maps), "
            "ours is the end of localrefine (infer + localrefine, without training). (end): no intermediate "
            "iteration gets there (RELION's per-iteration maps are band-limited near its current resolution, and "
            "its gold-standard FSC runs ~1 Å behind our FSC of its final half maps), so its whole run counts.\n\n"
            "| our reference | measure | target (Å) | RELION (s) | ours (s) | RELION / ours | RELION / (ours + "
            "training) |\n|---|---|---|---|---|---|---|\n" + "\n".join(ratio_rows) + "\n\n"
            f"Whole runs: RELION {t_relion:.0f} s, ours {rows[2]['wall_s']:.0f} s "
            f"({t_relion / rows[2]['wall_s']:.0f}x); "
            f"training {t_train:.0f} s once per protein.\n\n"
            f"Simulated: EMD-1832 with an extra 'ligand' density (demo.with_ligand), box 64 at {px:.2f} Å/px "
            f"(Nyquist {2 * px:.1f} Å), CTF, SNR {SNR:g}, origins up to 2 px, no junk; the same {args.n} ligand "
            f"particles for both programs (RELION's longest iteration took {slowest:.0f} s here, "
            f"{slowest / args.n:.2f} s per particle; {n_large} particles would take "
            f"~{t_relion * n_large / args.n / 60:.0f} min by linear extrapolation, beyond the ~12 minutes a "
            f"benchmark run may spend on it), {n_large} for ours alone; {args.n_train} apo particles for "
            f"training (both half sets, {args.epochs} epochs, network input 32 px at {2 * px:.1f} Å/px). "
            f"Ours: cryopares_infer --zscore_thr none --top_k {args.top_k}, cryopares_localrefine (around each of "
            f"the {args.top_k} network poses) --range {LOCAL_RANGE:g} "
            f"--step {LOCAL_STEP:g} --particle_diameter {DIAMETER:g} against the apo map (full resolution, or "
            "--lowpass 20), with a mask of the apo map (relion_mask_create), "
            f"--j {args.threads}, run through relion_pipeliner as External jobs. RELION: `mpirun -n 3 "
            f"{' '.join(relion_command(1, 'Refine3D/job020/run'))}` (two workers, one per half set, and "
            "the leader: the machine's 2 cores) from the apo map low-passed to 20 Å (relion_image_handler "
            "--lowpass 20), the same mask.\n\n"
            "fsc0143_A: FSC 0.143 of the two final half maps, both programs' maps through the same FSC "
            f"(relion_cryopares.fourier.fsc_curve in a soft sphere of {DIAMETER:g} Å); own_resolution_A: each "
            "program's own number (RELION: run_model.star _rlnCurrentResolution; ours: run_fsc.star, with the "
            "tight mask, corrected for it by phase randomisation); vs_truth_fsc05_A: FSC 0.5 of the final map "
            "against the true ligand map (same sphere): free of reference bias. Refining against the "
            "full-resolution apo map gives both half sets the same high-resolution reference, which biases "
            "their FSC (see README's demo note); the 20 Å row gives our local refinement what RELION starts "
            "from. loop_particles_per_s: the jobs' own processing rate without start-up and outputs (ours: "
            "infer and localrefine combined). Angular errors against the true poses (no symmetry); "
            "over_20deg_frac: the fraction of particles more than 20° off (ours: none of the network's top "
            "poses within the local search's reach; they are down-weighted by rlnParticleFigureOfMerit in our "
            "maps).\n\n"
            "RELION iterations (seconds since its start, from the run_itNNN_half1_model.star file times):\n\n"
            "| iteration | s | RELION current res. (Å) | gold-standard FSC 0.143 (Å) | vs truth FSC 0.5 (Å) |\n"
            f"|---|---|---|---|---|\n{iter_text}\n\n"
            "This machine's RELION is the Debian package (CPU only, double precision, no vectorised `--cpu` "
            "path); a GPU or vectorised build would be much faster. Everything ran under `nice -n 10` on a "
            "machine shared with other work; 1-min load average before / after training / after ours / after "
            f"RELION: {', '.join(f'{x:.1f}' for x in load)} ({os.cpu_count()} cores).")
        write_results(args.name, "Whole pipeline vs RELION 3.1 auto-refine (same simulated particles, CPU)",
                      rows, notes)


if __name__ == "__main__":
    main()
