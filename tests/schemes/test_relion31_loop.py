"""Our Schedules run for real under RELION 3.1.3's relion_scheduler while particles arrive.

The reconstruct loop (cryopares_reconstruct continue -> PostProcess) proves the Schedule machinery
with the job that exists everywhere; the screening loop (cryopares_infer -> cryopares_localrefine ->
PostProcess, model from cryopares_train --preset tiny) runs where those jobs exist.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch

from relion_cryopares.data import read_particle_star
from relion_cryopares.jobs import reconstruct
from relion_cryopares.schemes._install import install_scheme
from relion_cryopares.schemes._validate import validate_scheme_dir
from tests.jobs.conftest import simulated_project
from tests.relion_project import RELION_MARKS, job_statuses, read_text, write_launcher
from tests.schemes._loop import run_growing_loop

pytestmark = [*RELION_MARKS, pytest.mark.slow]

N_CHUNKS, CHUNK = 3, 200


def _mask(project):
    subprocess.run(["relion_mask_create", "--i", "truth.mrc", "--o", "mask.mrc", "--ini_threshold", "0.05",
                    "--extend_inimask", "2", "--width_soft_edge", "4"], cwd=project, check=True,
                   capture_output=True)


def _chunks(star):
    return [star.select(np.arange(CHUNK * (k + 1))) for k in range(N_CHUNKS)]


def test_reconstruct_loop_processes_each_particle_once(tmp_path, test_map):
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
