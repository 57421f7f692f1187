"""cryopares_reconstruct as RELION runs it: pipeliner, PostProcess, failure, abort, continue."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import torch

from relion_cryopares.data import read_particle_star, read_volume, write_particle_star
from relion_cryopares.fourier import fsc_curve, resolution_at
from relion_cryopares.jobs import reconstruct
from tests.relion_project import (add_external_job, exit_files, job_statuses, pipeline_nodes, read_text,
                                  requires_relion, run_job_in_project, run_jobs, wait_for_exit_file,
                                  write_launcher)


def _run(project, argv):
    return run_job_in_project(reconstruct, project, argv)


def test_half_maps_and_fsc_against_truth(sim_project, test_map):
    vol, px = test_map
    assert _run(sim_project, ["--o", "External/job002/", "--in_parts",
                              "Import/job001/particles.star", "--sym", "C1"]) == 0
    job = sim_project / "External/job002"
    assert exit_files(job) == ["RELION_JOB_EXIT_SUCCESS"]
    for name in ("run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc", "run_class001.mrc",
                 "run_fsc.star", "fsc.png", "RELION_OUTPUT_NODES.star"):
        assert (job / name).exists(), name
    full = torch.from_numpy(read_volume(job / "run_class001.mrc")[0].copy())
    # the map agrees with the truth well beyond the half-map resolution criterion
    assert resolution_at(fsc_curve(full, vol), 0.5, 64, px) < 2.5 * 2 * px
    fsc_star = read_text(job / "run_fsc.star")
    res = float(re.search(r"_rlnFinalResolution\s+([\d.]+)", fsc_star).group(1))
    assert 2 * px <= res < 30.0


def test_missing_stack_fails_with_one_line(sim_project):
    star = read_particle_star(sim_project / "Import/job001/particles.star")
    os.remove(sim_project / star.image_names()[0].split("@")[1])
    job = sim_project / "External/job003"
    job.mkdir(parents=True)
    with open(job / "run.err", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "relion_cryopares.jobs.reconstruct", "--o",
                               "External/job003/", "--in_parts", "Import/job001/particles.star"],
                              cwd=sim_project, stderr=err, stdout=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert exit_files(job) == ["RELION_JOB_EXIT_FAILURE"]
    lines = [ln for ln in read_text(job / "run.err").splitlines() if ln.strip()]
    assert len(lines) == 1 and "not found" in lines[0] and ".mrcs" in lines[0], lines
    assert not (job / "run_class001.mrc").exists()


def test_abort_mid_run_then_continue_without_redoing(sim_project):
    """Touch RELION_JOB_ABORT_NOW mid-run -> ABORTED; the continue inserts only what is left."""
    job = sim_project / "External/job004"
    job.mkdir(parents=True)
    cmd = [sys.executable, "-m", "relion_cryopares.jobs.reconstruct", "--o", "External/job004/",
           "--in_parts", "Import/job001/particles.star", "--batch_size", "20", "--save_every", "20"]
    with open(job / "run.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=sim_project, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (job / reconstruct.STATE_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (job / "RELION_JOB_ABORT_NOW").touch()
        proc.wait(timeout=120)
    assert exit_files(job) == ["RELION_JOB_EXIT_ABORTED"], read_text(job / "run.out")
    assert not (job / "run_class001.mrc").exists()
    saved = torch.load(job / reconstruct.STATE_FILE, weights_only=True)
    done_first = len(saved["done"])
    assert 0 < done_first < 600
    (job / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.external\n_rlnJobType 99\n"
                                  "_rlnJobIsContinue 1\n\n")
    assert _run(sim_project, ["--o", "External/job004/", "--in_parts",
                              "Import/job001/particles.star"]) == 0
    log = read_text(job / "cryopares.log")
    new = int(re.findall(r"600 particles \((\d+) new\)", log)[-1])
    assert new == 600 - done_first


def test_grown_star_matches_from_scratch(sim_project):
    """60 % then 100 % (continue) gives the same half maps as one run on 100 %."""
    full = read_particle_star(sim_project / "Import/job001/particles.star")
    part = full.select(np.arange(360))
    write_particle_star(sim_project / "part.star", part)
    assert _run(sim_project, ["--o", "External/job005/", "--in_parts", "part.star"]) == 0
    assert _run(sim_project, ["--o", "External/job005/", "--in_parts",
                              "Import/job001/particles.star"]) == 0
    assert _run(sim_project, ["--o", "External/job006/", "--in_parts",
                              "Import/job001/particles.star"]) == 0
    a = read_volume(sim_project / "External/job005/run_half1_class001_unfil.mrc")[0]
    b = read_volume(sim_project / "External/job006/run_half1_class001_unfil.mrc")[0]
    assert np.allclose(a, b, atol=1e-4 * np.abs(b).max())


@requires_relion
def test_through_relion_pipeliner_and_postprocess(sim_project):
    exe = write_launcher(sim_project, "cryopares_reconstruct",
                         module="relion_cryopares.jobs.reconstruct")
    job = add_external_job(sim_project, exe, inputs={"in_part": "Import/job001/particles.star"},
                           params={"sym": "C1"}, threads=2)
    run_jobs(sim_project, job, timeout=600)
    assert wait_for_exit_file(sim_project / job) == "RELION_JOB_EXIT_SUCCESS", \
        read_text(sim_project / job / "run.err")
    assert job_statuses(sim_project)[job] == "Succeeded"
    nodes = pipeline_nodes(sim_project)
    assert nodes[f"{job}run_half1_class001_unfil.mrc"] == "10"
    assert nodes[f"{job}run_class001.mrc"] == "6"
    # RELION PostProcess on our half1 map with a mask made by relion_mask_create
    subprocess.run(["relion_mask_create", "--i", "truth.mrc", "--o", "mask.mrc", "--ini_threshold",
                    "0.05", "--extend_inimask", "2", "--width_soft_edge", "4"],
                   cwd=sim_project, check=True, capture_output=True)
    os.makedirs(sim_project / "PostProcess/job003", exist_ok=True)
    pp = subprocess.run(["relion_postprocess", "--mask", "mask.mrc", "--i",
                         f"{job}run_half1_class001_unfil.mrc", "--o", "PostProcess/job003/postprocess",
                         "--angpix", "5.7", "--auto_bfac", "false", "--adhoc_bfac", "0"],
                        cwd=sim_project, capture_output=True, text=True)
    assert pp.returncode == 0, pp.stderr
    m = re.search(r"FINAL RESOLUTION:\s+([\d.]+)", pp.stdout)
    assert m and float(m.group(1)) < 40, pp.stdout[-2000:]
