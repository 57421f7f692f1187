"""Our Schedules run for real under RELION 3.1.3's relion_scheduler while particles arrive.

The reconstruct loop (cryopares_reconstruct continue -> PostProcess) proves the Schedule machinery
with the job that exists everywhere; the screening loop (cryopares_infer -> cryopares_localrefine ->
PostProcess, model from cryopares_train --preset tiny) runs where those jobs exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from relion_cryopares.data import read_particle_star
from relion_cryopares.jobs import reconstruct
from relion_cryopares.schemes._install import install_scheme
from relion_cryopares.schemes._star import read_star
from relion_cryopares.schemes._validate import validate_scheme_dir
from tests.jobs.conftest import simulated_project
from tests.relion_project import RELION_MARKS, job_statuses, read_text, write_launcher
from tests.schemes._loop import run_growing_loop

pytestmark = RELION_MARKS

N_CHUNKS, CHUNK = 3, 200


def _mask(project):
    subprocess.run(["relion_mask_create", "--i", "truth.mrc", "--o", "mask.mrc", "--ini_threshold", "0.05",
                    "--extend_inimask", "2", "--width_soft_edge", "4"], cwd=project, check=True,
                   capture_output=True)


def _chunks(star):
    return [star.select(np.arange(CHUNK * (k + 1))) for k in range(N_CHUNKS)]


@pytest.mark.slow
def test_reconstruct_loop_processes_each_particle_once(tmp_path, test_map):
    """The loop machinery with cryopares_reconstruct only; where the screening jobs exist their loop
    covers it (set CRYOPARES_ALL_LOOP_TESTS=1 to run both; each takes 1-2 minutes)."""
    if _screen_jobs_available() is None and os.environ.get("CRYOPARES_ALL_LOOP_TESTS") != "1":
        pytest.skip("covered by test_train_then_screen_schedules (CRYOPARES_ALL_LOOP_TESTS=1 runs it too)")
    project = simulated_project(tmp_path / "project", test_map, n=N_CHUNKS * CHUNK)
    _mask(project)
    write_launcher(project, "cryopares_reconstruct", module="relion_cryopares.jobs.reconstruct")
    target = install_scheme("cryopares_reconstruct_loop", project, name="rloop", form="3.1", exe_dir=".", values={
        "particles": "incoming.star", "mask": "mask.mrc", "sym": "C1", "wait_s": 1, "stop_file": "STOP",
        "auto_bfac": False, "max_loops": N_CHUNKS + 2})
    assert validate_scheme_dir(target) == []
    star = read_particle_star(project / "Import/job001/particles.star")
    run = run_growing_loop(project, "rloop", project / "incoming.star", _chunks(star), "STOP", timeout=400)

    assert run.returncode == 0 and "The schedule has reached an exit point" in run.output, run.output[-3000:]
    assert run.passes == N_CHUNKS
    # the same two jobs were continued on every pass, and all succeeded
    assert job_statuses(project) == {"External/job001/": "Succeeded", "PostProcess/job002/": "Succeeded"}
    log = read_text(project / "External/job001/cryopares.log")
    seen = [(int(a), int(b)) for a, b in re.findall(r"(\d+) particles \((\d+) new\)", log)]
    assert seen == [(CHUNK * (k + 1), CHUNK) for k in range(N_CHUNKS)], seen
    # every particle went into the half maps exactly once
    state = torch.load(project / "External/job001" / reconstruct.STATE_FILE, weights_only=True)
    assert sorted(state["done"]) == sorted(star.image_names())
    halves = re.findall(r"half sets: (\d+) / (\d+) particles", log)
    assert sum(map(int, halves[-1])) == N_CHUNKS * CHUNK
    # PostProcess ran on each pass (as a continue of one job) on the growing half maps
    post = project / "PostProcess/job002"
    assert read_text(post / "note.txt").count("Executing") == N_CHUNKS
    assert (post / "postprocess.mrc").exists() and "FINAL RESOLUTION" in read_text(post / "run.out")


SCREEN_JOBS = ("relion_cryopares.jobs.train", "relion_cryopares.jobs.infer", "relion_cryopares.jobs.localrefine")


def _screen_jobs_available() -> str | None:
    """None when the three jobs import, else why not."""
    import importlib

    for module in SCREEN_JOBS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import problem means: not available here
            return f"{module} is not available yet ({type(exc).__name__}: {exc})"
    return None


def _ligand_chunks(project, test_map, n_per_chunk):
    """Extracted-looking particles (no poses, centred) simulated from the map, in cumulative chunks."""
    from relion_cryopares.data import SimulationConfig, simulate_particles

    vol, px = test_map
    cfg = SimulationConfig(n_particles=N_CHUNKS * n_per_chunk, snr=0.5, seed=23, particles_per_stack=n_per_chunk)
    star = simulate_particles(vol, px, cfg, project / "Extract" / "job002" / "Particles", project_dir=project)
    star.particles = star.particles.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi",
                                                  "rlnRandomSubset", "rlnMaxValueProbDistribution"],
                                         errors="ignore")
    return star, [star.select(np.arange(n_per_chunk * (k + 1))) for k in range(N_CHUNKS)]


@pytest.mark.slow
def test_train_then_screen_schedules(tmp_path, test_map):
    """cryopares_train Schedule, then cryopares_screen for three passes of arriving particles."""
    reason = _screen_jobs_available()
    if reason:
        pytest.skip(reason)
    project = simulated_project(tmp_path / "project", test_map, n=400)  # the "apo" training set
    _mask(project)
    for command, module in (("cryopares_train", "train"), ("cryopares_infer", "infer"),
                            ("cryopares_localrefine", "localrefine")):
        write_launcher(project, command, module=f"relion_cryopares.jobs.{module}")
    px = test_map[1]
    install_scheme("cryopares_train", project, form="3.1", exe_dir=".", values={
        "particles": "Import/job001/particles.star", "ref_map": "", "sym": "C1", "preset": "tiny",
        "train_args": f"--epochs 1 --angpix_nnet {px} --box_nnet 64"})
    train = subprocess.run(["relion_scheduler", "--schedule", "cryopares_train", "--run", "--verb", "2"],
                           cwd=project, capture_output=True, text=True, timeout=600)
    assert "reached an exit point" in train.stdout, train.stdout[-3000:] + read_text(
        project / "External/job001/run.err")
    assert job_statuses(project) == {"External/job001/": "Succeeded"}

    star, chunks = _ligand_chunks(project, test_map, 100)
    install_scheme("cryopares_screen", project, form="3.1", exe_dir=".", values={
        "particles": "Extract/job002/particles.star", "model": "External/job001/", "ref_map": "truth.mrc",
        "mask": "mask.mrc", "sym": "C1", "wait_s": 1, "stop_file": "STOP", "auto_bfac": False,
        "max_loops": N_CHUNKS + 2})
    run = run_growing_loop(project, "cryopares_screen", project / "Extract/job002/particles.star", chunks,
                           "STOP", timeout=900)
    assert run.returncode == 0 and "The schedule has reached an exit point" in run.output, run.output[-3000:]
    assert run.passes == N_CHUNKS
    statuses = job_statuses(project)
    assert statuses == {"External/job001/": "Succeeded", "External/job002/": "Succeeded",
                        "External/job003/": "Succeeded", "PostProcess/job004/": "Succeeded"}, statuses
    infer_dir, refine_dir = project / "External/job002", project / "External/job003"
    # infer predicted each particle once, on the pass it arrived
    log = read_text(infer_dir / "cryopares.log")
    passes = [tuple(map(int, m)) for m in re.findall(r"(\d+) particles: (\d+) with stored results, (\d+) to predict",
                                                      log)]
    assert passes == [(100 * (k + 1), 100 * k, 100) for k in range(N_CHUNKS)], passes
    kept = read_particle_star(infer_dir / "particles.star")
    rejected = read_particle_star(infer_dir / "rejected.star")
    names = list(kept.image_names()) + list(rejected.image_names())
    assert sorted(names) == sorted(star.image_names())            # each particle once, kept or rejected
    # localrefine refined each kept particle once; its half maps hold all of them
    log = read_text(refine_dir / "cryopares.log")
    refined = [tuple(map(int, m)) for m in re.findall(r"(\d+) particles: (\d+) refined before, (\d+) to refine", log)]
    assert len(refined) == N_CHUNKS and refined[-1][0] == len(kept)
    assert sum(r[2] for r in refined) == len(kept), refined
    data = read_particle_star(refine_dir / "run_data.star")  # kept by the second pruning stage
    rejected2 = read_particle_star(refine_dir / "rejected.star")
    assert sorted(list(data.image_names()) + list(rejected2.image_names())) == sorted(kept.image_names())
    state = json.loads(read_text(refine_dir / "localrefine_state.json"))
    chunk_files = sorted((refine_dir / "localrefine_chunks").glob("chunk_*.star"))
    assert set(state["accumulator"]["chunks"]) == {int(p.stem.split("_")[1]) for p in chunk_files}
    assert sum(len(read_particle_star(p)) for p in chunk_files) == len(kept)   # each recorded once
    post = project / "PostProcess/job004"
    assert read_text(post / "note.txt").count("Executing") == N_CHUNKS
    assert "FINAL RESOLUTION" in read_text(post / "run.out")


@pytest.mark.parametrize("name", ["cryopares_train", "cryopares_screen"])
def test_relion_scheduler_reads_and_rewrites_shipped_schedules_unchanged(tmp_path, name):
    """relion_scheduler --reset reads our schedule.star + schedule_pipeline.star and writes them back:
    every variable, operator, job, edge and pipeline row survives (RELION drops what it cannot parse)."""
    shipped = Path(__file__).resolve().parents[2] / "schemes" / "Schedules" / name
    project = tmp_path / "project"
    shutil.copytree(shipped, project / "Schedules" / name)
    (project / "default_pipeline.star").write_text("data_pipeline_general\n\n_rlnPipeLineJobCounter 1\n")
    before = {f: read_star(shipped / f) for f in ("schedule.star", "schedule_pipeline.star")}
    out = subprocess.run(["relion_scheduler", "--schedule", name, "--reset"], cwd=project, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for file, blocks in before.items():
        after = read_star(project / "Schedules" / name / file)
        assert set(after) == set(blocks), file
        for key, block in blocks.items():
            assert after[key].pairs == block.pairs, (file, key)
            norm = (lambda rows: sorted(tuple(sorted((k, _num(v)) for k, v in r.items())) for r in rows))
            assert norm(after[key].rows) == norm(block.rows), (file, key)


def _num(text: str) -> str:
    try:
        return f"{float(text):.6f}"
    except ValueError:
        return text
