"""Scaling with the number of particles: wall time, CPU time and peak memory of the real jobs.

    python -m benchmarks.bench_scaling [--sizes 1000 10000 100000] [--quick] [--threads 2]
                                       [--jobs infer reconstruct localrefine] [--localrefine_max_s 900]

Particles are simulated once from the shipped map (EMD-1832 resampled to box 32 at 11.4 Å/px, CTF,
SNR 0.1, 1000 particles per stack) in chunks of 10,000 and cached under ``benchmarks/work/scaling/``
(gitignored; later runs only add the chunks a larger size needs). A tiny pose model is trained once
(``cryopares_train --preset tiny --epochs 2 --box_nnet 32`` on 512 of them; its accuracy does not
matter here) and cached too. For each size N the first N particles are written to one STAR file and
the jobs run as RELION would run them: ``python -m relion_cryopares.jobs.<job> --o External/jobNNN/
... --j <threads>`` as a subprocess with the project as working directory:

* ``cryopares_infer`` (the trained model; default z-score pruning);
* ``cryopares_reconstruct`` (the simulated poses);
* ``cryopares_localrefine`` (the simulated poses, ±2°/2° search, the resampled map as reference).
  It is skipped for a size whose time, extrapolated linearly from the sizes already measured, would
  exceed ``--localrefine_max_s``.

Peak memory: the ``ru_maxrss`` that ``wait4`` returns for the job (the largest resident set of the
job process or any of its children, e.g. data-loading workers, not their sum; it counts the pages
of memory-mapped particle stacks) and, on Linux, the peak of the job's anonymous + shared memory
(``Pss_Anon + Pss_Shmem`` in ``/proc/PID/smaps_rollup``, summed over the job and its children)
sampled every 0.25 s.

``--quick`` runs sizes 1000 and 2000. Writes ``benchmarks/results/scaling.md`` and ``.json``
(``scaling_quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks._common import write_results
from relion_cryopares.data import (ParticleStar, SimulationConfig, read_particle_star, read_volume,
                                   simulate_particles, write_particle_star, write_volume)
from relion_cryopares.fourier import resample_volume

REPO = Path(__file__).resolve().parents[1]
MAP = REPO / "relion_cryopares" / "assets" / "emd_1832.map"
WORK = Path(__file__).resolve().parent / "work" / "scaling"
PIPELINE_31 = "# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter                       1\n\n"

BOX = 32
CHUNK = 10_000  # particles simulated (and cached) per call
PER_STACK = 1000
N_TRAIN = 512
EXTRACT = "Extract/job001"
MODEL = "External/job002/"
REFERENCE = "Import/job003/map_box32.mrc"
#: Everything the cached particles and model depend on; a change wipes the cache.
CACHE_KEY = {"map": MAP.name, "box": BOX, "snr": 0.1, "chunk": CHUNK, "per_stack": PER_STACK,
             "max_shift_px": 1.0, "train_particles": N_TRAIN,
             "train": ["--preset", "tiny", "--epochs", "2", "--box_nnet", str(BOX)], "version": 1}


def _log(msg: str) -> None:
    print(f"[bench_scaling {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from the parent ids in ``/proc/*/stat`` (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _anon_kib(pids: list[int]) -> int | None:
    """Proportional anonymous + shared memory (``Pss_Anon + Pss_Shmem`` of ``smaps_rollup``) of
    ``pids`` in KiB: private and shared-memory pages, each shared page split between its users, no
    memory-mapped files. None where the kernel does not report it."""
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                        total += int(line.split()[1])
                        seen = True
        except (OSError, ValueError):
            continue
    return total if seen else None


class _MemoryPoller(threading.Thread):
    """Samples :func:`_anon_kib` of a process tree every ``interval_s`` until stopped; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.interval_s, self.peak_kib = pid, interval_s, None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            kib = _anon_kib(_process_tree(self.pid))
            if kib is not None:
                self.peak_kib = max(kib, self.peak_kib or 0)


def run_job(project: Path, module: str, args: list[str], log_stem: Path) -> dict:
    """Run ``python -m relion_cryopares.jobs.<module> <args>`` in ``project``; time and measure it.

    ``os.wait4`` gives the job's own resource usage (its children included), so every run is
    measured on its own; on Linux the job's anonymous memory is also sampled (:class:`_MemoryPoller`).
    stdout/stderr go to ``<log_stem>.out/.err``.
    """
    cmd = [sys.executable, "-m", f"relion_cryopares.jobs.{module}", *args]
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{log_stem}.out", "w") as out, open(f"{log_stem}.err", "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=project, stdout=out, stderr=err)
        poller = _MemoryPoller(proc.pid)
        if Path("/proc/self/smaps_rollup").exists():
            poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        poller.stopped.set()
        if poller.is_alive():
            poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    anon = float("nan") if poller.peak_kib is None else poller.peak_kib / 2**10
    return {"cmd": " ".join(cmd), "exit": proc.returncode, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_MB": peak, "peak_anon_MB": anon}


def _failure(project: Path, run: dict, log_stem: Path) -> str:
    tail = "".join(Path(f"{log_stem}.err").read_text().splitlines(keepends=True)[-15:])
    return f"exit {run['exit']} in {project}: {run['cmd']}\n{tail}"


def _prepare_project(max_n: int, threads: int) -> Path:
    """The cached RELION project: simulated chunks covering ``max_n`` particles, model, reference."""
    project = WORK / "project"
    stamp = WORK / "cache_key.json"
    if project.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != CACHE_KEY):
        _log(f"cache key changed: removing {project}")
        shutil.rmtree(project)
    if not project.exists():
        project.mkdir(parents=True)
        (project / "default_pipeline.star").write_text(PIPELINE_31)
        stamp.write_text(json.dumps(CACHE_KEY))
    vol, px = read_volume(MAP)
    vol = torch.from_numpy(vol.copy())
    new_px = px * vol.shape[-1] / BOX
    vol, px = resample_volume(vol, px, new_px, BOX), new_px
    if not (project / REFERENCE).exists():
        (project / REFERENCE).parent.mkdir(parents=True, exist_ok=True)
        write_volume(project / REFERENCE, vol.numpy(), px)
    for k in range(-(-max_n // CHUNK)):
        star_path = project / EXTRACT / f"chunk_{k:03d}.star"
        if star_path.exists():
            continue
        t0 = time.perf_counter()
        cfg = SimulationConfig(n_particles=CHUNK, snr=CACHE_KEY["snr"], max_shift_angstrom=px,
                               particles_per_stack=PER_STACK, seed=1000 + k)
        star = simulate_particles(vol, px, cfg, project / EXTRACT / "Particles", stem=f"c{k:03d}",
                                  project_dir=project)
        write_particle_star(star_path, star)
        _log(f"simulated chunk {k} ({CHUNK} particles, box {BOX}) in {time.perf_counter() - t0:.0f} s")
    if not (project / MODEL / "RELION_JOB_EXIT_SUCCESS").exists():
        shutil.rmtree(project / MODEL, ignore_errors=True)
        train_star = _particles(project, N_TRAIN)
        _log(f"training the tiny model on {N_TRAIN} particles")
        run = run_job(project, "train", ["--o", MODEL, "--in_parts", train_star, "--preset", "tiny",
                                         "--epochs", "2", "--box_nnet", str(BOX), "--j", str(threads)],
                      WORK / "logs" / "train")
        if run["exit"] != 0:
            raise RuntimeError("cryopares_train failed: " + _failure(project, run, WORK / "logs" / "train"))
        _log(f"trained in {run['wall_s']:.0f} s")
    return project


def _particles(project: Path, n: int) -> str:
    """A STAR file of the first ``n`` cached particles (relative to the project)."""
    rel = f"{EXTRACT}/particles_{n}.star"
    if not (project / rel).exists():
        chunks = [read_particle_star(project / EXTRACT / f"chunk_{k:03d}.star") for k in range(-(-n // CHUNK))]
        parts = pd.concat([c.particles for c in chunks], ignore_index=True).head(n)
        write_particle_star(project / rel, ParticleStar(optics=chunks[0].optics, particles=parts))
    return rel


def _extrapolate(done: list[tuple[int, float]], n: int) -> float:
    """Seconds for ``n`` particles: the line through the two largest measured sizes (start-up +
    per-particle time), or proportional to the one measured size."""
    if len(done) == 1:
        return done[0][1] * n / done[0][0]
    (n0, t0), (n1, t1) = sorted(done)[-2:]
    return t1 + max(t1 - t0, 0.0) / (n1 - n0) * (n - n1)


def _marginal(rows: list[dict]) -> list[str]:
    """Per job, the cost of the particles added between consecutive sizes (start-up cancels out)."""
    lines = []
    for job in dict.fromkeys(r["job"] for r in rows):
        runs = [r for r in rows if r["job"] == job]
        steps = []
        for a, b in zip(runs, runs[1:]):
            dn = b["particles"] - a["particles"]
            rate = dn / max(b["seconds"] - a["seconds"], 1e-9)
            grow = b["peak_anon_MB"] - a["peak_anon_MB"]
            steps.append(f"{a['particles']:,} → {b['particles']:,}: {rate:.0f} particles/s, "
                         f"{1e3 * (b['cpu_s'] - a['cpu_s']) / dn:.2f} CPU ms/particle, peak_anon "
                         f"{grow:+.0f} MB ({2**10 * grow / dn:+.2f} KiB/particle)")
        if steps:
            lines.append(f"- {job}: " + "; ".join(steps) + ".")
    return lines


def _job_args(job: str, parts: str, threads: int) -> list[str]:
    common = ["--in_parts", parts, "--j", str(threads)]
    if job == "infer":
        return [*common, "--model", MODEL, "--device", "cpu"]
    if job == "reconstruct":
        return common
    if job == "localrefine":
        # ±2°/2°; the default 6 Å low-pass is beyond Nyquist (22.8 Å) at 11.4 Å/px: filter to 25 Å.
        return [*common, "--in_3dref", REFERENCE, "--range", "2", "--step", "2", "--lowpass", "25",
                "--device", "cpu"]
    raise ValueError(job)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--quick", action="store_true", help="sizes 1000 and 2000")
    ap.add_argument("--jobs", nargs="+", default=["infer", "reconstruct", "localrefine"],
                    choices=["infer", "reconstruct", "localrefine"])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="--j of every job")
    ap.add_argument("--localrefine_max_s", type=float, default=900.0,
                    help="skip localrefine for a size extrapolated to take longer than this")
    ap.add_argument("--name", default=None, help="results file stem (default: scaling, scaling_quick)")
    args = ap.parse_args(argv)
    sizes = sorted(set([1000, 2000] if args.quick else args.sizes))
    project = _prepare_project(max(sizes), args.threads)
    for old in project.glob("External/job1*"):  # outputs of an earlier benchmark run
        shutil.rmtree(old)
    rows, skipped, failures = [], [], []
    first: dict[str, dict] = {}
    counter = 100
    for n in sizes:
        parts = _particles(project, n)
        for job in args.jobs:
            done = [(r["particles"], r["seconds"]) for r in rows if r["job"] == f"cryopares_{job}"]
            if job == "localrefine" and done:
                guess = _extrapolate(done, n)
                if guess > args.localrefine_max_s:
                    measured = ", ".join(f"{t:.0f} s at {m:,}" for m, t in done)
                    skipped.append(f"cryopares_localrefine skipped at {n:,} particles: {measured} extrapolates "
                                   f"to {guess:.0f} s (> --localrefine_max_s {args.localrefine_max_s:.0f})")
                    _log(skipped[-1])
                    continue
            counter += 1
            out = f"External/job{counter:03d}/"
            stem = WORK / "logs" / f"{job}_{n}"
            _log(f"cryopares_{job} on {n:,} particles -> {out}")
            run = run_job(project, job, ["--o", out, *_job_args(job, parts, args.threads)], stem)
            if run["exit"] != 0:
                failures.append(f"cryopares_{job}, {n:,} particles: " + _failure(project, run, stem))
                _log("FAILED " + failures[-1])
                continue
            first.setdefault(job, {"n": n, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"]})
            base = first[job]
            rows.append({"job": f"cryopares_{job}", "particles": n, "seconds": run["wall_s"],
                         "cpu_s": run["cpu_s"], "particles_per_s": n / run["wall_s"],
                         "peak_rss_MB": run["peak_rss_MB"], "peak_anon_MB": run["peak_anon_MB"],
                         "N_ratio": n / base["n"],
                         "time_ratio": run["wall_s"] / base["wall_s"],
                         "cpu_ratio": run["cpu_s"] / base["cpu_s"],
                         "load_avg_1min": round(os.getloadavg()[0], 1)})
            _log(str(rows[-1]))
    rows.sort(key=lambda r: (r["job"], r["particles"]))
    stack_mib = PER_STACK * BOX * BOX * 4 / 2**20
    notes = "\n".join([
        f"Simulated EMD-1832 particles, box {BOX} at 11.4 Å/px (CTF, SNR 0.1), {PER_STACK} particles per "
        f"stack ({-(-max(sizes) // PER_STACK)} stack(s) at {max(sizes):,}). CPU only; every job runs with "
        f"`--j {args.threads}` as a subprocess in a RELION project "
        "(`python -m relion_cryopares.jobs.<job> --o External/jobNNN/ ...`).",
        "",
        "- seconds: the whole job's wall time (Python and torch start-up, STAR and model loading, the work, "
        "outputs, plots); the fixed part makes time_ratio < N_ratio at small N.",
        "- cpu_s: user + system CPU time of the job and its children (less affected than wall time by other "
        "processes on a shared machine).",
        "- peak_rss_MB: ru_maxrss from wait4, the largest resident set of the job process or any one of its "
        "children (data-loading workers are separate processes; not summed). It counts the pages of the "
        f"memory-mapped particle stacks (up to 64 stacks open at a time, {stack_mib:.1f} MiB each here): "
        "file-backed page cache that the kernel can drop.",
        "- peak_anon_MB: the memory the job holds, sampled every 0.25 s: anonymous + shared memory "
        "(Pss_Anon + Pss_Shmem of /proc/PID/smaps_rollup) summed over the job and its children, shared pages "
        "split between them, mapped files excluded.",
        "- N_ratio, time_ratio, cpu_ratio: relative to the smallest size of the same job. Linear time: "
        "time_ratio ~ N_ratio; streaming: flat peak_anon_MB.",
        "- cryopares_infer: the tiny preset trained for 2 epochs on 512 particles (network box 32), default "
        "z-score pruning; cryopares_reconstruct: the simulated poses, C1; cryopares_localrefine: the simulated "
        "poses, ±2°/2° search (7 rotations), reference low-passed to 25 Å.",
        f"- load_avg_1min: the machine's load after each run ({os.cpu_count()} cores, shared with other users).",
    ])
    marginal = _marginal(rows)
    if marginal:
        notes += ("\n\nMarginal cost of the particles added between consecutive sizes (the start-up "
                  "cancels out):\n\n")
        notes += "\n".join(marginal)
    if skipped:
        notes += "\n\n" + "\n".join(f"- {line}." for line in skipped)
    if failures:
        notes += "\n\nFailed:\n\n" + "\n\n".join(f"```\n{f}\n```" for f in failures)
    write_results(args.name or ("scaling_quick" if args.quick else "scaling"),
                  "Scaling with the number of particles (time and peak memory)", rows, notes)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
