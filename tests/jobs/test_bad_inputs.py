"""A bad image never ends a job (issue 12): NaN/Inf/constant images are rejected by cryopares_infer
(``rejected.star``, ``rlnCryoparesRejectReason bad_image``) and skipped by cryopares_reconstruct;
a malformed STAR line and a particle past the end of its stack stop every job before any work,
with one line in run.err naming the file and line, or the particle and the stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from relion_cryopares.data import (PreprocessConfig, SimulationConfig, read_particle_star, read_volume,
                                   simulate_particles, write_particle_star, write_stack, write_volume)
from relion_cryopares.jobs import infer, localrefine, reconstruct, train
from tests.jobs.test_infer_job import _model_dir
from tests.relion_project import exit_files, make_project, read_text, run_job_in_project

N = 48
#: row -> what is wrong with its image
BAD = {3: "non-finite pixels", 10: "non-finite pixels", 17: "constant image", 30: "constant background"}
REASON = "rlnCryoparesRejectReason"


@pytest.fixture(scope="module")
def project(tmp_path_factory, test_map) -> Path:
    vol, px = test_map
    root = make_project(tmp_path_factory.mktemp("bad_inputs") / "project")
    star = simulate_particles(vol, px, SimulationConfig(n_particles=N, snr=0.5, seed=7, particles_per_stack=N,
                                                        max_shift_angstrom=4.0),
                              root / "Extract/job001/Particles", project_dir=root)
    write_particle_star(root / "Extract/job001/particles.star", star)
    write_volume(root / "truth.mrc", vol.numpy(), px)
    star = read_particle_star(root / "Extract/job001/particles.star")
    pre = PreprocessConfig(box_nnet=64, particle_diameter_angstrom=250, angpix_nnet=px)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        _model_dir(root / "External/job002", star, pre)  # on the good images
    finally:
        os.chdir(cwd)
    stack = root / star.image_names()[0].split("@")[1]
    with mrcfile.open(stack) as mrc:
        images = np.array(mrc.data, dtype=np.float32)
    images[3, 10, 10] = np.nan
    images[10, 40:, :] = np.inf
    images[17] = 2.5
    n = images.shape[-1]
    c = np.arange(n) - n // 2
    outside = (c[:, None] ** 2 + c[None, :] ** 2) > (0.5 * pre.particle_diameter_angstrom / px) ** 2
    images[30][outside] = 0.0  # the particle is there, the background is flat
    write_stack(stack, images, px)
    return root


def _bad_names(project: Path) -> dict[str, str]:
    names = read_particle_star(project / "Extract/job001/particles.star").image_names()
    return {names[r]: problem for r, problem in BAD.items()}


def test_infer_rejects_bad_images_and_succeeds(project):
    job = "External/job010/"
    argv = ["--o", job, "--in_parts", "Extract/job001/particles.star", "--model", "External/job002/",
            "--zscore_thr", "none", "--top_k", "2", "--batch_size", "16", "--reconstruct"]
    assert run_job_in_project(infer, project, argv + ["--num_workers", "1", "--j", "2"]) == 0  # a data-loading worker
    bad = _bad_names(project)
    rejected = read_particle_star(project / job / "rejected.star")
    kept = read_particle_star(project / job / "particles.star")
    assert sorted(rejected.image_names()) == sorted(bad) and len(kept) == N - len(bad)
    assert set(rejected.particles[REASON]) == {"bad_image"} and REASON not in kept.particles.columns
    assert np.isfinite(kept.column("rlnCryoparesScore")).all() and np.isfinite(kept.angles_deg()).all()
    # bad images were never predicted: their poses are the input's, their scores 0
    given = read_particle_star(project / "Extract/job001/particles.star")
    by_name = dict(zip(given.image_names(), given.angles_deg()))
    assert np.allclose(rejected.angles_deg(), [by_name[n] for n in rejected.image_names()])
    assert (rejected.column("rlnCryoparesScore") == 0).all()
    summary = json.loads((project / job / infer.SUMMARY_FILE).read_text())
    assert summary["rejected_reasons"] == {"network": 0, "bad_image": len(bad)}
    log = read_text(project / job / "cryopares.log")
    assert "0 by the network" in log and f"{len(bad)} bad images rejected" in log
    first = min(bad, key=lambda n: int(n.split("@")[0]))
    assert f"{first}: {bad[first]}" in log and "1 constant background" in log
    half1 = read_volume(project / job / "run_half1_class001_unfil.mrc")[0]
    assert np.isfinite(half1).all() and np.abs(half1).max() > 0
    # a continue reads no image again; the stored reason survives; the network now rejects some too
    argv[argv.index("--zscore_thr") + 1] = "0"
    assert run_job_in_project(infer, project, argv) == 0
    summary = json.loads((project / job / infer.SUMMARY_FILE).read_text())
    assert summary["predicted_this_run"] == 0 and summary["rejected_reasons"]["bad_image"] == len(bad)
    rejected = read_particle_star(project / job / "rejected.star")
    reasons = dict(zip(rejected.image_names(), rejected.particles[REASON]))
    assert {n: reasons[n] for n in bad} == {n: "bad_image" for n in bad}
    assert set(reasons.values()) == {"bad_image", "network"}
    assert summary["rejected_reasons"]["network"] == len(reasons) - len(bad) > 0


def test_reconstruct_skips_bad_images_and_succeeds(project):
    job = "External/job020/"
    argv = ["--o", job, "--in_parts", "Extract/job001/particles.star", "--batch_size", "16"]
    assert run_job_in_project(reconstruct, project, argv) == 0
    assert exit_files(project / job) == ["RELION_JOB_EXIT_SUCCESS"]
    log = read_text(project / job / "cryopares.log")
    bad = _bad_names(project)
    # the flat-background particle is usable for a reconstruction (no background normalisation)
    skipped = {n: p for n, p in bad.items() if p != "constant background"}
    assert f"{len(skipped)} bad images skipped, not inserted ({len(skipped)} found in this run" in log
    assert "2 non-finite pixels" in log and all(n in log for n in skipped)
    half = read_volume(project / job / "run_half1_class001_unfil.mrc")[0]
    assert np.isfinite(half).all() and np.abs(half).max() > 0
    assert run_job_in_project(reconstruct, project, argv) == 0  # continue: the count is kept, nothing read again
    assert f"{len(skipped)} bad images skipped, not inserted (0 found in this run" in \
        read_text(project / job / "cryopares.log")


def test_malformed_star_line_fails_with_file_and_line(project):
    lines = (project / "Extract/job001/particles.star").read_text().splitlines()
    target = len(lines) - 5  # a data row: drop its last value
    lines[target - 1] = " ".join(lines[target - 1].split()[:-1])
    (project / "Extract/job001/malformed.star").write_text("\n".join(lines) + "\n")
    job = project / "External/job030"
    job.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    with open(job / "run.err", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "relion_cryopares.jobs.reconstruct", "--o", "External/job030/",
                               "--in_parts", "Extract/job001/malformed.star"],
                              cwd=project, stderr=err, stdout=subprocess.DEVNULL, env=env, timeout=120)
    assert proc.returncode != 0
    assert exit_files(job) == ["RELION_JOB_EXIT_FAILURE"]
    err = [ln for ln in read_text(job / "run.err").splitlines() if ln.strip()]
    assert len(err) == 1 and "Extract/job001/malformed.star" in err[0], err
    assert f"line {target}:" in err[0] and "values for" in err[0] and "columns of data_particles" in err[0], err


@pytest.mark.parametrize("module, extra", [
    (infer, ["--model", "External/job002/"]),
    (reconstruct, []),
    (localrefine, ["--in_3dref", "truth.mrc"]),
    (train, []),
])
def test_image_past_the_end_fails_before_any_work(project, capsys, module, extra):
    star = read_particle_star(project / "Extract/job001/particles.star")
    names = star.image_names()
    stack = names[0].split("@")[1]
    wrong = f"{N + 2:06d}@{stack}"
    names[5] = wrong
    write_particle_star(project / "Extract/job001/past_end.star", star.with_columns(rlnImageName=names))
    job = f"External/job04{[infer, reconstruct, localrefine, train].index(module)}/"
    capsys.readouterr()
    assert run_job_in_project(module, project, ["--o", job, "--in_parts", "Extract/job001/past_end.star", *extra]) == 1
    assert exit_files(project / job) == ["RELION_JOB_EXIT_FAILURE"]
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, lines
    assert all(w in lines[0] for w in ("past_end.star", "row 6", wrong, stack, f"({N} images)")), lines
    assert not [p for p in (project / job).iterdir() if p.suffix in (".mrc", ".pt", ".npz")]
