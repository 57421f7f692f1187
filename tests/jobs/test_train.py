"""cryopares_train as RELION runs it: pipeliner, outputs, kill + continue, junk threshold, init_model,
model sizes, deterministic inference."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from relion_cryopares.data import (ParticleDataset, SimulationConfig, read_particle_star, read_volume,
                                   simulate_junk, write_particle_star)
from relion_cryopares.jobs import train
from relion_cryopares.jobs._modeldir import load_model_dir
from relion_cryopares.model import ModelConfig, PoseModel, predict_poses, state_dict_bytes
from tests.jobs.conftest import simulated_project
from tests.relion_project import (add_external_job, exit_files, job_statuses, pipeline_nodes, read_text,
                                  requires_relion, run_job_in_project, run_jobs, wait_for_exit_file,
                                  write_launcher)

#: Small and fast: 32 px at 11.4 A/px, the tiny preset.
FAST = ["--preset", "tiny", "--box_nnet", "32", "--angpix_nnet", "11.4", "--particle_diameter", "300",
        "--num_workers", "0"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, test_map):
    return simulated_project(tmp_path_factory.mktemp("train") / "project", test_map, n=400, snr=1.0,
                             max_shift_angstrom=5.0)


def _run(project, argv):
    return run_job_in_project(train, project, argv)


def _continue(job_dir):
    (job_dir / "job.star").write_text("data_job\n\n_rlnJobTypeLabel relion.external\n_rlnJobType 99\n"
                                      "_rlnJobIsContinue 1\n\n")


@requires_relion
def test_through_relion_pipeliner(project):
    exe = write_launcher(project, "cryopares_train", module="relion_cryopares.jobs.train")
    params = {"sym": "C1", "preset": "tiny", "epochs": 2, "box_nnet": 32, "angpix_nnet": 11.4,
              "particle_diameter": 300, "pretrain_epochs": 1, "num_workers": 0}
    job = add_external_job(project, exe, inputs={"in_part": "Import/job001/particles.star",
                                                 "in_3dref": "truth.mrc"}, params=params, threads=2)
    run_jobs(project, job, timeout=900)
    job_dir = project / job
    assert wait_for_exit_file(job_dir) == "RELION_JOB_EXIT_SUCCESS", read_text(job_dir / "run.err")
    assert job_statuses(project)[job] == "Succeeded"
    nodes = pipeline_nodes(project)
    assert nodes[f"{job}run_half1_class001_unfil.mrc"] == "10"
    assert nodes[f"{job}run_class001.mrc"] == "6"
    for name in ("cryopares_model.json", "learning_curves.png", "run_half2_class001_unfil.mrc",
                 "half1/model.pt", "half2/pruning.json", "half1/training.json"):
        assert (job_dir / name).exists(), name
    # a line per epoch and half in run.out: 1 pre-training + 2 training epochs
    out = read_text(job_dir / "run.out")
    lines = re.findall(r"half (\d) epoch (\d)/3 \((pretrain|train)\): train loss [\d.]+, val loss [\d.]+, "
                       r"val median error [\d.]+ deg", out)
    assert len(lines) == 6, out
    assert ("1", "1", "pretrain") in lines and ("2", "3", "train") in lines
    md = load_model_dir(job_dir)
    assert sorted(md.halves) == [1, 2] and md.symmetry == "C1"
    summary = md.half(1).training
    assert summary["n_train"] + summary["n_val"] == int((read_particle_star(
        project / "Import/job001/particles.star").random_subset() == 1).sum())
    assert md.half(1).threshold_source.startswith("validation")


def test_kill_then_continue_resumes_from_the_checkpoint(project):
    job_dir = project / "External/job031"
    job_dir.mkdir(parents=True)
    argv = ["--o", "External/job031/", "--in_parts", "Import/job001/particles.star", "--epochs", "6",
            "--pretrain_epochs", "0", *FAST]
    checkpoint = job_dir / "half1" / "train" / "checkpoint.pt"
    with open(job_dir / "run.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "relion_cryopares.jobs.train", *argv], cwd=project,
                                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # a crash: no exit file, no clean-up
        proc.wait(timeout=60)
    assert checkpoint.exists(), read_text(job_dir / "run.out")
    assert exit_files(job_dir) == []
    saved = torch.load(checkpoint, weights_only=True)
    done = saved["epoch"]
    assert 1 <= done < 6
    _continue(job_dir)
    assert _run(project, argv) == 0
    log = read_text(job_dir / "cryopares.log")
    second = log[log.index("continuing"):]
    assert f"half 1: resuming from the checkpoint after epoch {done}" in second
    first_epoch = int(re.search(r"half 1 epoch (\d+)/6", second).group(1))
    assert first_epoch == done + 1  # not 1
    curves = json.loads((job_dir / "half1" / "training.json").read_text())["curves"]
    assert curves["epoch"] == [1, 2, 3, 4, 5, 6]
    # a further continue finds both halves finished and only redoes the half maps
    assert _run(project, argv) == 0
    last = read_text(job_dir / "cryopares.log").rsplit("new run", 1)[-1]
    assert "half 1: already trained" in last and "half 2: already trained" in last


def test_abort_saves_a_checkpoint_and_continue_goes_on(project):
    """RELION_JOB_ABORT_NOW mid-training -> RELION_JOB_EXIT_ABORTED, checkpoint kept; continue resumes."""
    job_dir = project / "External/job032"
    job_dir.mkdir(parents=True)
    argv = ["--o", "External/job032/", "--in_parts", "Import/job001/particles.star", "--epochs", "4",
            "--pretrain_epochs", "0", "--batch_size", "8", *FAST]
    checkpoint = job_dir / "half1" / "train" / "checkpoint.pt"
    with open(job_dir / "run.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "relion_cryopares.jobs.train", *argv], cwd=project,
                                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        (job_dir / "RELION_JOB_ABORT_NOW").touch()
        proc.wait(timeout=300)
    assert exit_files(job_dir) == ["RELION_JOB_EXIT_ABORTED"], read_text(job_dir / "run.out")
    assert not (job_dir / "RELION_JOB_ABORT_NOW").exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["step"]) > (0, 0) and not saved["finished"]
    _continue(job_dir)
    assert _run(project, argv) == 0
    log = read_text(job_dir / "cryopares.log")
    assert "half 1: resuming from the checkpoint" in log.rsplit("continuing", 1)[-1]
    assert json.loads((job_dir / "half1" / "training.json").read_text())["curves"]["epoch"] == [1, 2, 3, 4]


def test_junk_threshold_and_fine_tuning(project):
    vol, px = read_volume(project / "truth.mrc")
    junk = simulate_junk(torch.from_numpy(vol.copy()), px, SimulationConfig(n_particles=60, snr=1.0, seed=21), project / "Junk",
                         project_dir=project)
    write_particle_star(project / "junk.star", junk)
    base = ["--in_parts", "Import/job001/particles.star", "--epochs", "1", "--pretrain_epochs", "0", *FAST]
    assert _run(project, ["--o", "External/job040/", *base, "--junk_parts", "junk.star"]) == 0
    pruning = json.loads((project / "External/job040/half1/pruning.json").read_text())
    assert pruning["threshold_source"] == "junk_particles"
    summary = json.loads((project / "External/job040/half1/training.json").read_text())
    assert 0.0 <= summary["junk_auroc"] <= 1.0 and "junk_rejected_fraction" in summary
    # fine-tune from that model directory
    assert _run(project, ["--o", "External/job041/", *base, "--init_model", "External/job040/"]) == 0
    log = read_text(project / "External/job041/cryopares.log")
    assert "half 1: initialised from External/job040" in log


def test_bad_inputs_fail_with_one_line(project, tmp_path):
    star = read_particle_star(project / "Import/job001/particles.star")
    no_poses = star.with_columns()
    no_poses.particles = no_poses.particles.drop(columns=["rlnAngleRot"])
    write_particle_star(project / "noposes.star", no_poses)
    job = project / "External/job050"
    job.mkdir(parents=True)
    with open(job / "run.err", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "relion_cryopares.jobs.train", "--o", "External/job050/",
                               "--in_parts", "noposes.star", *FAST], cwd=project, stderr=err,
                              stdout=subprocess.DEVNULL)
    assert proc.returncode != 0 and exit_files(job) == ["RELION_JOB_EXIT_FAILURE"]
    lines = [ln for ln in read_text(job / "run.err").splitlines() if ln.strip()]
    assert len(lines) == 1 and "noposes.star" in lines[0] and "poses" in lines[0], lines
    assert _run(project, ["--o", "External/job051/", "--in_parts", "Import/job001/particles.star",
                          "--init_model", "External/nothing/", *FAST]) == 1


def test_model_sizes():
    tiny = PoseModel(ModelConfig.preset("tiny"), build_tables=False)
    paper = PoseModel(ModelConfig.preset("paper"), build_tables=False)
    assert state_dict_bytes(tiny) < 5 * 2 ** 20
    assert state_dict_bytes(paper) < 2 ** 30
    print(f"state_dict: tiny {state_dict_bytes(tiny) / 2**20:.1f} MB, paper {state_dict_bytes(paper) / 2**20:.1f} MB")


def test_inference_is_deterministic(project):
    """Two loads of the saved model give bit-identical logits, poses and scores."""
    job_dir = project / "External/job040"
    if not (job_dir / "cryopares_model.json").exists():
        pytest.skip("needs the model of test_junk_threshold_and_fine_tuning")
    cwd = os.getcwd()
    os.chdir(project)
    try:
        a, b = load_model_dir(job_dir), load_model_dir(job_dir)
        star = read_particle_star("Import/job001/particles.star")
        x = ParticleDataset(star, np.arange(32), a.preprocess)[np.arange(32)]["images"]
    finally:
        os.chdir(cwd)
    with torch.no_grad():
        la, lb = a.half(1).model(x), b.half(1).model(x)
        la2 = a.half(1).model(x)
    assert torch.equal(la, lb) and torch.equal(la, la2)
    pa, pb = predict_poses(la), predict_poses(lb)
    assert torch.equal(pa.matrices, pb.matrices) and torch.equal(pa.score, pb.score)


def test_default_preset_is_tiny_on_a_cpu_with_a_warning_and_progress_lines(project, monkeypatch, capsys):
    """--preset auto (the default) on the CPU: the tiny preset, a WARNING in run.out (stdout), the
    resolved preset in cryopares_config.json; progress lines within each epoch (interval 0: every batch)."""
    monkeypatch.setattr("relion_cryopares.training._progress.PROGRESS_INTERVAL_S", 0.0)
    argv = ["--o", "External/job060/", "--in_parts", "Import/job001/particles.star", "--epochs", "1",
            "--pretrain_epochs", "0", "--box_nnet", "32", "--angpix_nnet", "11.4", "--particle_diameter", "300",
            "--num_workers", "0", "--device", "cpu"]
    assert _run(project, argv) == 0
    out = capsys.readouterr().out
    warning = [ln for ln in out.splitlines() if "WARNING: --preset auto" in ln]
    assert len(warning) == 1, out
    assert "tiny preset" in warning[0] and "needs a GPU" in warning[0] and "--preset paper" in warning[0]
    config = json.loads((project / "External/job060/cryopares_config.json").read_text())
    assert config["params"]["preset"] == "auto"
    assert config["resolved"]["preset"] == "tiny" and config["resolved"]["device"] == "cpu"
    assert config["resolved"]["training"]["epochs"] == 1 and config["resolved"]["preprocess"]["box_nnet"] == 32
    assert "preset tiny" in out
    progress = re.findall(r"half (\d) epoch 1/1 \(train\): (\d+) / (\d+) batches \([\d.]+%\), ([\d.]+) particles/s, "
                          r"ETA (\d+:\d\d:\d\d) for this epoch, at most (\d+:\d\d:\d\d) for the whole training "
                          r"\(if all 1 epochs(?: of this half and of the other half)? run; early stopping may end "
                          r"it sooner\)", out)
    for half in ("1", "2"):
        mine = [p for p in progress if p[0] == half]
        assert len(mine) >= 2, out  # a line per batch, the last one at the end of the epoch
        assert [int(p[1]) for p in mine] == list(range(1, len(mine) + 1)) and mine[-1][1] == mine[-1][2]
        assert all(float(p[3]) > 0 for p in mine) and mine[-1][4] == "0:00:00"
    assert "of the other half" in [ln for ln in out.splitlines() if "half 1 epoch 1/1 (train): 1 /" in ln][0]


def test_preset_auto_resolution():
    """auto: paper on a CUDA device, tiny on a CPU; a resumed run keeps the preset it started with."""
    from types import SimpleNamespace
    import logging
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        ctx = SimpleNamespace(params={"preset": "auto"}, previous_config=None, output_dir=Path(tmp),
                              log=logging.getLogger("relion_cryopares.test_preset"))
        assert train._resolve_preset(ctx, torch.device("cuda")) == "paper"
        assert train._resolve_preset(ctx, torch.device("cpu")) == "tiny"
        ctx.params = {"preset": "paper"}
        assert train._resolve_preset(ctx, torch.device("cpu")) == "paper"
        ctx.params = {"preset": "auto"}
        ctx.previous_config = {"params": {"preset": "auto"}, "resolved": {"preset": "paper"}}
        assert train._resolve_preset(ctx, torch.device("cpu")) == "tiny"  # nothing trained yet: resolve anew
        (Path(tmp) / "half1" / "train").mkdir(parents=True)
        (Path(tmp) / "half1" / "train" / "checkpoint.pt").touch()
        assert train._resolve_preset(ctx, torch.device("cpu")) == "paper"
