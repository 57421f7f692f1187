"""cryopares_infer as a RELION job: incremental continue (also after SIGKILL), outputs, pipeliner,
bad inputs. An untrained tiny model is enough here (accuracy is tested in test_infer.py), with its
last layer scaled up so that its scores differ between particles; its pruning normaliser is fitted
on its own scores, so that a z threshold of 0 splits the particles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from relion_cryopares.data import (ImageStackReader, ParticleStar, PreprocessConfig, SimulationConfig, preprocess_particles,
                                   read_particle_star, read_volume, simulate_particles, write_particle_star)
from relion_cryopares.jobs import infer
from relion_cryopares.jobs._infer_chunks import RESULTS_DIR
from relion_cryopares.jobs._modeldir import load_model_dir, save_half_model
from relion_cryopares.model import ModelConfig, PoseModel, predict_poses
from relion_cryopares.pruning import DirectionalNormaliser
from tests.relion_project import (add_external_job, exit_files, job_statuses, make_project, pipeline_nodes,
                                  read_text, requires_relion, run_job_in_project, run_jobs, write_launcher)

N = 240


def _model_dir(path: Path, star, pre: PreprocessConfig, symmetry: str = "C1") -> None:
    cfg = ModelConfig.preset("tiny", box=pre.box_nnet)
    idx = np.arange(min(len(star), 96))
    with ImageStackReader() as reader:
        images = torch.from_numpy(star.read_images(reader, idx))
    x = preprocess_particles(images, torch.from_numpy(star.pixel_size_angstrom()[idx]),
                             star.ctf_parameters(idx), torch.zeros(len(idx), dtype=torch.bool), pre)
    for half in (1, 2):
        torch.manual_seed(half)
        model = PoseModel(cfg).eval()
        with torch.no_grad():  # untrained logits hardly depend on the image: sharpen them
            for p in model.so3_conv.parameters():
                p.mul_(1000.0)
        with torch.inference_mode():
            pred = predict_poses(model(x))
        norm = DirectionalNormaliser.fit(pred.score, pred.matrices, min_count=1000)  # global stats
        save_half_model(path, half, model, cfg, pre, norm, 0.0, "test", symmetry, {})


@pytest.fixture(scope="module")
def project(tmp_path_factory, test_map) -> Path:
    vol, px = test_map
    root = make_project(tmp_path_factory.mktemp("infer_job") / "project")
    star = simulate_particles(vol, px, SimulationConfig(n_particles=N, snr=0.5, seed=5, particles_per_stack=80,
                                                        max_shift_angstrom=6.0),
                              root / "Extract/job001/Particles", project_dir=root)
    star = star.with_columns(rlnRandomSubset=np.zeros(N, dtype=int),  # no half sets: the job assigns them
                             rlnAngleRot=0.0, rlnAngleTilt=0.0, rlnAnglePsi=0.0)
    write_particle_star(root / "Extract/job001/particles.star", star)
    write_particle_star(root / "Extract/job001/part60.star", star.select(np.arange(int(0.6 * N))))
    star = read_particle_star(root / "Extract/job001/particles.star")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        _model_dir(root / "External/job002", star, PreprocessConfig(box_nnet=64, particle_diameter_angstrom=250,
                                                                     angpix_nnet=px))
        # a model for twice the field of view: these particles are too small for it
        _model_dir(root / "External/job003", star, PreprocessConfig(box_nnet=64, particle_diameter_angstrom=250,
                                                                     angpix_nnet=2 * px))
    finally:
        os.chdir(cwd)
    return root


def _main(project: Path, argv: list[str]) -> int:
    return run_job_in_project(infer, project, argv)


def _args(job: str, star: str = "Extract/job001/particles.star", *extra: str) -> list[str]:
    return ["--o", job, "--in_parts", star, "--model", "External/job002/", "--zscore_thr", "0", *extra]


def _names(path: Path) -> list[str]:
    return read_particle_star(path).image_names()


def _check_partition(project: Path, job: str) -> tuple[list[str], list[str]]:
    """Every input particle is in exactly one of particles.star / rejected.star, once."""
    kept, rejected = _names(project / job / "particles.star"), _names(project / job / "rejected.star")
    everything = _names(project / "Extract/job001/particles.star")
    assert sorted(kept + rejected) == sorted(everything)
    assert len(set(kept)) == len(kept) and not set(kept) & set(rejected)
    return kept, rejected


def _summary(project: Path, job: str) -> dict:
    return json.loads((project / job / infer.SUMMARY_FILE).read_text())


def test_outputs_columns_and_grown_star(project):
    job = "External/job010/"
    assert _main(project, _args(job, "Extract/job001/part60.star", "--top_k", "3")) == 0
    assert _summary(project, job)["predicted_this_run"] == int(0.6 * N)
    assert _main(project, _args(job, "Extract/job001/particles.star", "--top_k", "3")) == 0
    s = _summary(project, job)
    assert s["predicted_this_run"] == N - int(0.6 * N)  # only the new particles
    kept, rejected = _check_partition(project, job)
    assert kept and rejected
    assert s["kept"] == len(kept) and sum(h["kept"] for h in s["halves"].values()) == len(kept)
    star = read_particle_star(project / job / "particles.star")
    for col in ("rlnParticleFigureOfMerit", "rlnCryoparesScore", "rlnCryoparesZscore", "rlnCryoparesTop2AngleRot",
                "rlnCryoparesTop3Probability", "rlnOriginXAngst"):
        assert col in star.particles.columns, col
    assert (star.column("rlnCryoparesZscore") >= 0).all()
    assert np.isin(star.column("rlnRandomSubset"), (1, 2)).all()
    # origins are the input's; angles are the network's (the input had zeros)
    inp = read_particle_star(project / "Extract/job001/particles.star")
    by_name = dict(zip(inp.image_names(), inp.origins_angstrom()))
    assert np.allclose(star.origins_angstrom(), np.stack([by_name[n] for n in star.image_names()]))
    assert np.abs(star.angles_deg()).sum() > 0
    assert (star.column("rlnCryoparesTop2Probability") <= star.column("rlnCryoparesScore")).all()
    text = read_text(project / job / "particles.star")
    assert text.startswith("# cryopares_infer") and "not estimate shifts" in text.splitlines()[0]
    for name in ("zscore_histogram.png", "angular_distribution.png", "RELION_OUTPUT_NODES.star"):
        assert (project / job / name).stat().st_size > 0, name
    assert "half 1:" in read_text(project / job / "cryopares.log")
    # the same job again: nothing to predict, same split; --zscore_thr none keeps everything
    assert _main(project, _args(job, "Extract/job001/particles.star", "--top_k", "3")) == 0
    assert _summary(project, job)["predicted_this_run"] == 0
    assert sorted(_names(project / job / "particles.star")) == sorted(kept)
    argv = _args(job, "Extract/job001/particles.star", "--top_k", "3")
    argv[argv.index("--zscore_thr") + 1] = "none"
    assert _main(project, argv) == 0
    assert len(_names(project / job / "particles.star")) == N and not _names(project / job / "rejected.star")


def test_each_half_set_goes_through_its_own_model(project):
    """Gold standard: a particle's stored score is its own half model's, not the other's."""
    job = "External/job016/"
    assert _main(project, _args(job)) == 0
    out = read_particle_star(project / job / "particles.star")
    out = ParticleStar.concat([out, read_particle_star(project / job / "rejected.star")])
    md = load_model_dir(project / "External/job002")
    rows = np.arange(32)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        with ImageStackReader() as reader:
            images = torch.from_numpy(out.read_images(reader, rows))
    finally:
        os.chdir(cwd)
    x = preprocess_particles(images, torch.from_numpy(out.pixel_size_angstrom()[rows]), out.ctf_parameters(rows),
                             torch.zeros(len(rows), dtype=torch.bool), md.preprocess)
    with torch.inference_mode():
        score = {h: predict_poses(m.model(x)).score.numpy() for h, m in md.halves.items()}
    halves = out.column("rlnRandomSubset")[rows]
    assert set(halves) == {1, 2}
    stored = out.column("rlnCryoparesScore")[rows]
    assert np.allclose(stored, np.where(halves == 1, score[1], score[2]), atol=2e-6)
    assert not np.allclose(stored, np.where(halves == 1, score[2], score[1]), atol=2e-6)


def test_reconstruct_grows_with_new_kept_particles(project):
    """--reconstruct on 60 % then 100 %: the continue inserts only the newly kept particles and the
    half maps equal those of one run on 100 %."""
    job, scratch = "External/job014/", "External/job015/"
    assert _main(project, _args(job, "Extract/job001/part60.star", "--reconstruct")) == 0
    first = _summary(project, job)["kept"]
    assert _main(project, _args(job, "Extract/job001/particles.star", "--reconstruct")) == 0
    total = _summary(project, job)["kept"]
    assert f"inserting {total - first} newly kept particles ({first} already" in \
        read_text(project / job / "cryopares.log")
    assert _main(project, _args(scratch, "Extract/job001/particles.star", "--reconstruct")) == 0
    a = read_volume(project / job / "run_half1_class001_unfil.mrc")[0]
    b = read_volume(project / scratch / "run_half1_class001_unfil.mrc")[0]
    assert np.allclose(a, b, atol=1e-4 * np.abs(b).max())


def test_killed_run_then_full_run_loses_and_repeats_nothing(project):
    job = project / "External/job011"
    job.mkdir(parents=True)
    cmd = [sys.executable, "-m", "relion_cryopares.jobs.infer",
           *_args("External/job011/", "Extract/job001/part60.star", "--save_every", "16", "--batch_size", "8",
                  "--num_workers", "0")]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    with open(job / "run.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if list((job / RESULTS_DIR).glob("chunk_*.npz")):
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, read_text(job / "run.out")
    assert not exit_files(job)  # killed: no exit file, no outputs
    done = _stored(job)
    assert 16 <= done < int(0.6 * N) and not (job / "particles.star").exists()
    assert _main(project, _args("External/job011/", "Extract/job001/particles.star", "--save_every", "64")) == 0
    assert _summary(project, "External/job011/")["predicted_this_run"] == N - done
    _check_partition(project, "External/job011/")
    assert not list((job / RESULTS_DIR).glob(".chunk_*"))  # no temporary files left


def _stored(job_dir: Path) -> int:
    """Particles in the complete result chunks of a job."""
    total = 0
    for path in (job_dir / RESULTS_DIR).glob("chunk_*.npz"):
        with np.load(path) as data:
            total += len(data["names"])
    return total


def test_abort_keeps_finished_chunks(project):
    job = project / "External/job012"

    def touch_abort_after_first_chunk():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((job / RESULTS_DIR).glob("chunk_*.npz")):
            time.sleep(0.01)
        (job / "RELION_JOB_ABORT_NOW").touch()

    thread = threading.Thread(target=touch_abort_after_first_chunk, daemon=True)
    thread.start()
    assert _main(project, _args("External/job012/", "Extract/job001/particles.star", "--save_every", "8",
                                "--batch_size", "4", "--num_workers", "0")) == 2
    thread.join()
    assert exit_files(job) == ["RELION_JOB_EXIT_ABORTED"]
    done = _stored(job)
    assert 8 <= done < N and not (job / "particles.star").exists()
    assert _main(project, _args("External/job012/")) == 0
    assert _summary(project, "External/job012/")["predicted_this_run"] == N - done
    _check_partition(project, "External/job012/")


@pytest.mark.parametrize("extra, words", [
    (["--sym", "D2"], ["--sym D2", "C1"]),
    (["--model", "External/job099/"], ["External/job099", "model directory not found"]),
    (["--model", "External/job003/"], ["External/job003", "extract with a box of at least 128 px"]),
    (["--zscore_thr", "lots"], ["--zscore_thr", "lots"]),
])
def test_bad_inputs_fail_with_one_line(project, capsys, extra, words):
    job = "External/job013/"
    argv = _args(job)
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    capsys.readouterr()
    assert _main(project, argv) == 1
    assert exit_files(project / job) == ["RELION_JOB_EXIT_FAILURE"]
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines


@requires_relion
def test_through_relion_pipeliner(project):
    exe = write_launcher(project, "cryopares_infer", module="relion_cryopares.jobs.infer")
    ok = add_external_job(project, exe, inputs={"in_part": "Extract/job001/particles.star"},
                          params={"model": "External/job002/", "zscore_thr": "0", "reconstruct": True}, threads=2)
    bad = add_external_job(project, exe, inputs={"in_part": "Extract/job001/particles.star"},
                           params={"model": "External/job002/", "sym": "D7"})
    run_jobs(project, ok, bad, timeout=600)
    assert job_statuses(project)[ok] == "Succeeded", read_text(project / ok / "run.err")
    nodes = pipeline_nodes(project)
    assert nodes[f"{ok}particles.star"] == "3" and nodes[f"{ok}rejected.star"] == "3"
    assert nodes[f"{ok}run_half1_class001_unfil.mrc"] == "10"
    assert job_statuses(project)[bad] == "Failed"
    err = [ln for ln in read_text(project / bad / "run.err").splitlines() if ln.strip()]
    assert len(err) == 1 and "D7" in err[0], err
