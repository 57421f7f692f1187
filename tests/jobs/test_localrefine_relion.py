"""cryopares_localrefine with the real RELION 3.1: run by relion_pipeliner, its half map consumed by
relion_postprocess, its run_data.star and run_class001.mrc accepted by relion_refine."""

from __future__ import annotations

import re

import numpy as np
import pytest

from relion_cryopares.data import read_particle_star, write_volume
from tests.refine._simulated import simulate
from tests.relion_project import (RELION_MARKS, add_external_job, job_statuses, make_project, pipeline_nodes,
                                  read_text, run_in_project, run_jobs, write_launcher)

pytestmark = RELION_MARKS


@pytest.fixture(scope="module")
def pipeline_job(test_map, tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("localrefine_relion"))
    vol, px = test_map
    simulate(test_map, project, n=120, seed=31)
    write_volume(project / "map.mrc", vol.numpy(), px)
    exe = write_launcher(project, "localrefine", module="relion_cryopares.jobs.localrefine")
    job = add_external_job(project, exe, inputs={"in_part": "start.star", "in_3dref": "map.mrc"},
                           params={"sym": "C1", "range": 4}, threads=1)
    run_jobs(project, job, timeout=300)
    return project, job, px


def test_pipeliner_runs_the_job_to_success(pipeline_job):
    project, job, _ = pipeline_job
    status = job_statuses(project)[job]
    assert status == "Succeeded", read_text(project / job / "run.err")
    assert (project / job / "RELION_JOB_EXIT_SUCCESS").exists()
    nodes = pipeline_nodes(project)
    assert nodes.get(f"{job}run_data.star") == "3"
    assert nodes.get(f"{job}run_half1_class001_unfil.mrc") == "10"
    assert nodes.get(f"{job}run_class001.mrc") == "6"
    assert nodes.get(f"{job}rejected.star") == "3"
    kept = len(read_particle_star(project / job / "run_data.star"))
    rejected = len(read_particle_star(project / job / "rejected.star"))
    assert kept + rejected == 120 and rejected <= 6  # all are good particles: the second stage loses few


def test_relion_postprocess_reads_the_half_maps(pipeline_job):
    project, job, px = pipeline_job
    vol = np.asarray(__import__("mrcfile").open(project / "map.mrc").data)
    threshold = float(vol.mean() + 2.0 * vol.std())
    made = run_in_project(project, ["relion_mask_create", "--i", "map.mrc", "--o", "mask.mrc", "--ini_threshold",
                                    f"{threshold:.6f}", "--extend_inimask", "2", "--width_soft_edge", "4",
                                    "--angpix", str(px)], timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    (project / "PostProcess" / "job002").mkdir(parents=True)
    post = run_in_project(project, ["relion_postprocess", "--mask", "mask.mrc", "--i",
                                    f"{job}run_half1_class001_unfil.mrc", "--o", "PostProcess/job002/postprocess",
                                    "--angpix", str(px), "--adhoc_bfac", "0"], timeout=120)
    assert post.returncode == 0, post.stdout + post.stderr
    star = read_text(project / "PostProcess" / "job002" / "postprocess.star")
    match = re.search(r"_rlnFinalResolution\s+([0-9.]+)", star)
    assert match, star[:500]
    resolution = float(match.group(1))
    print(f"relion_postprocess: final resolution {resolution:.2f} Å")
    assert 2 * px <= resolution < 60


def test_relion_refine_accepts_run_data_and_map(pipeline_job):
    project, job, px = pipeline_job
    (project / "Refine3D" / "job003").mkdir(parents=True)
    refine = run_in_project(project, [
        "relion_refine", "--i", f"{job}run_data.star", "--ref", f"{job}run_class001.mrc",
        "--o", "Refine3D/job003/run", "--iter", "1", "--ini_high", "20", "--particle_diameter", "300",
        "--ctf", "--sym", "C1", "--healpix_order", "1", "--offset_range", "2", "--offset_step", "2",
        "--oversampling", "1", "--pad", "1", "--j", "1", "--dont_combine_weights_via_disc", "--pool", "30",
        "--flatten_solvent", "--zero_mask"], timeout=240)
    assert refine.returncode == 0, refine.stdout[-2000:] + refine.stderr[-2000:]
    out = project / "Refine3D" / "job003" / "run_it001_data.star"
    assert out.exists(), refine.stdout[-2000:]
    assert len(read_particle_star(out)) == len(read_particle_star(project / job / "run_data.star"))
