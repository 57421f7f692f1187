"""The toy job run by the real RELION 3.1 pipeliner (``relion_pipeliner --RunJobs``)."""

from __future__ import annotations

from pathlib import Path

from relion_cryopares.relion import OUTPUT_NODES_FILE
from tests.relion_project import (RELION_MARKS, add_external_job, exit_files, job_statuses, make_project,
                                  pipeline_nodes, read_text, run_jobs, write_launcher)

pytestmark = RELION_MARKS

TOY = Path(__file__).with_name("_toy_job.py")


def test_relion_runs_a_succeeding_job(tmp_path):
    project = make_project(tmp_path)
    (project / "particles.star").write_text("data_\n")
    exe = write_launcher(project, "toyjob", script=TOY)
    job = add_external_job(project, exe, inputs={"in_part": "particles.star"},
                           params={"sym": "C1 x", "fast": True, "count": 3}, threads=2)
    assert job == "External/job001/" and job_statuses(project) == {job: "Scheduled"}
    run_jobs(project, job)
    job_dir = project / job
    assert exit_files(job_dir) == ["RELION_JOB_EXIT_SUCCESS"]
    assert job_statuses(project) == {job: "Succeeded"}
    nodes = pipeline_nodes(project)
    assert nodes["External/job001/toy_map.mrc"] == "6"       # DensityMap
    assert nodes["External/job001/toy_data.star"] == "3"     # particles
    assert nodes["particles.star"] == "3"                     # the input node, typed by RELION
    assert read_text(job_dir / "run.err") == ""
    run_out = read_text(job_dir / "run.out")
    assert "parameters: mode=ok, sym=C1 x, count=3, scale=1.0, fast=True" in run_out
    assert "2 thread(s)" in run_out and "3 / 3 particles" in run_out
    assert (job_dir / OUTPUT_NODES_FILE).exists()
    # RELION's own files are still there and ours did not touch them
    for name in ("job.star", "note.txt", "job_pipeline.star", "default_pipeline.star"):
        assert (job_dir / name).exists(), name
    # RELION 3.1.3's command: a bare flag leaves two spaces, --j comes after the label/value pairs
    assert "./toyjob --o External/job001/ --in_parts particles.star --sym C1 x --fast  --count 3 --j 2" in read_text(
        job_dir / "note.txt")


def test_relion_runs_a_failing_job(tmp_path):
    project = make_project(tmp_path)
    exe = write_launcher(project, "toyjob", script=TOY)
    job = add_external_job(project, exe, params={"mode": "crash"})
    run_jobs(project, job)
    job_dir = project / job
    assert exit_files(job_dir) == ["RELION_JOB_EXIT_FAILURE"]
    assert job_statuses(project) == {job: "Failed"}
    err_lines = read_text(job_dir / "run.err").splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("ERROR: ZeroDivisionError: division by zero")
    assert "Traceback" in read_text(job_dir / "cryopares.log")


def test_relion_unknown_parameter_and_rerun(tmp_path):
    project = make_project(tmp_path)
    exe = write_launcher(project, "toyjob", script=TOY)
    job = add_external_job(project, exe, params={"symmetry": "C2"})
    run_jobs(project, job)
    assert job_statuses(project) == {job: "Failed"}
    assert read_text(project / job / "run.err").startswith("ERROR: unknown parameter --symmetry for cryopares_toy")


def test_relion_abort(tmp_path):
    project = make_project(tmp_path)
    exe = write_launcher(project, "toyjob", script=TOY)
    job = add_external_job(project, exe, params={"mode": "abort"})
    run_jobs(project, job)
    assert exit_files(project / job) == ["RELION_JOB_EXIT_ABORTED"]
    assert job_statuses(project) == {job: "Aborted"}


def test_relion_appends_pipeline_control_for_relion_named_programs(tmp_path):
    project = make_project(tmp_path)
    exe = write_launcher(project, "relion_toyjob", script=TOY)
    job = add_external_job(project, exe, params={"count": 2})
    run_jobs(project, job)
    assert "--pipeline_control External/job001/" in read_text(project / job / "note.txt")
    assert job_statuses(project) == {job: "Succeeded"}
