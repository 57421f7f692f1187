"""run_job in-process: exit files, node file, config, logging, continue, abort."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from relion_cryopares.relion import (CONFIG_FILE, EXIT_ABORTED, EXIT_FAILURE, EXIT_SUCCESS, LOG_FILE,
                                     OUTPUT_NODES_FILE, existing_exit_files)
from tests.relion._toy_job import main as toy_main

JOB = "External/job007/"

PIPELINE_50 = ("# version 50001\n\ndata_pipeline_processes\n\nloop_\n_rlnPipeLineProcessName #1\n"
               "_rlnPipeLineProcessAlias #2\n_rlnPipeLineProcessTypeLabel #3\n_rlnPipeLineProcessStatusLabel #4\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_success_writes_nodes_config_and_one_exit_file(project, capsys):
    threads_before = torch.get_num_threads()
    handlers_before = list(logging.getLogger("relion_cryopares").handlers)
    assert toy_main(["--o", JOB, "--sym", "C1", "x", "--j", "2", "--pipeline_control", JOB]) == 0
    job = project / JOB
    assert existing_exit_files(job) == [EXIT_SUCCESS]
    rows = [l.split() for l in (job / OUTPUT_NODES_FILE).read_text().splitlines()[8:] if l.strip()]
    assert rows == [["External/job007/toy_map.mrc", "6", "DensityMap.mrc"],
                    ["External/job007/toy_data.star", "3", "ParticlesData.star.relion.cryopares"]]
    config = json.loads((job / CONFIG_FILE).read_text())
    assert config["params"]["sym"] == "C1 x" and config["threads"] == 2 and config["is_continue"] is False
    for key in ("version", "command_line", "time", "cwd", "host", "torch"):
        assert config[key], key
    out, err = capsys.readouterr()
    assert err == ""
    assert "10 / 10 particles (100.0%)" in out and "finished" in out
    assert torch.get_num_threads() == threads_before
    assert logging.getLogger("relion_cryopares").handlers == handlers_before
    assert "cryopares_toy started" in (job / LOG_FILE).read_text()


def test_labels_follow_a_relion5_pipeline(project):
    (project / "default_pipeline.star").write_text(PIPELINE_50)
    assert toy_main(["--o", JOB]) == 0
    text = (project / JOB / OUTPUT_NODES_FILE).read_text()
    assert text.startswith("# version 50001")
    assert "External/job007/toy_data.star 3 ParticleGroupMetadata.star.relion.cryopares" in text


def test_input_error_is_one_line_on_stderr(project, capsys):
    assert toy_main(["--o", JOB, "--mode", "fail"]) == 1
    assert existing_exit_files(project / JOB) == [EXIT_FAILURE]
    assert not (project / JOB / OUTPUT_NODES_FILE).exists()
    err = capsys.readouterr().err
    assert err == "ERROR: toy.star: toy failure on purpose\n"


def test_crash_is_one_line_and_traceback_goes_to_the_log(project, capsys):
    assert toy_main(["--o", JOB, "--mode", "crash"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ERROR: ZeroDivisionError: division by zero")
    log = (project / JOB / LOG_FILE).read_text()
    assert "Traceback (most recent call last)" in log and "1 / 0" in log


def test_verbose_prints_the_traceback(project, capsys):
    assert toy_main(["--o", JOB, "--mode", "crash", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("ERROR:")


def test_unknown_parameter_fails_with_the_known_list(project, capsys):
    assert toy_main(["--o", JOB, "--foo", "1"]) == 1
    assert existing_exit_files(project / JOB) == [EXIT_FAILURE]
    assert capsys.readouterr().err == ("ERROR: unknown parameter --foo for cryopares_toy; known: --mode, --sym, "
                                       "--count, --scale, --fast, --in_parts, --in_3dref\n")


def test_missing_input_file(project, capsys):
    assert toy_main(["--o", JOB, "--in_parts", "Extract/job001/particles.star"]) == 1
    assert capsys.readouterr().err == ("ERROR: Extract/job001/particles.star: input file not found (--in_parts)\n")


def test_abort(project, capsys):
    assert toy_main(["--o", JOB, "--mode", "abort"]) == 2
    job = project / JOB
    assert existing_exit_files(job) == [EXIT_ABORTED]
    assert not (job / "RELION_JOB_ABORT_NOW").exists()  # honoured, then removed
    assert capsys.readouterr().err == ""


def test_stale_files_of_a_previous_run_are_removed(project):
    job = project / JOB
    job.mkdir(parents=True)
    for name in (EXIT_FAILURE, EXIT_ABORTED, "RELION_JOB_ABORT_NOW"):
        (job / name).touch()
    assert toy_main(["--o", JOB]) == 0
    assert existing_exit_files(job) == [EXIT_SUCCESS]
    # a failing re-run leaves no success file and no stale node file behind
    assert toy_main(["--o", JOB, "--mode", "fail"]) == 1
    assert existing_exit_files(job) == [EXIT_FAILURE] and not (job / OUTPUT_NODES_FILE).exists()


def test_continue_and_previous_config(project):
    from relion_cryopares.relion import JobSpec, OutputNode, run_job

    seen = {}

    def body(ctx):
        seen["is_continue"] = ctx.is_continue
        seen["previous"] = ctx.previous_config
        seen["relative"] = ctx.relative(ctx.path("a.txt"))
        seen["absolute"] = ctx.relative(project / JOB / "a.txt")
        ctx.path("a.txt").write_text("x")
        return [OutputNode(ctx.path("a.txt"), "logpdf")]

    spec = JobSpec("cryopares_cont")
    assert run_job(spec, body, ["--o", JOB]) == 0
    assert seen["is_continue"] is False and seen["previous"] is None
    assert seen["relative"] == seen["absolute"] == "External/job007/a.txt"
    (project / JOB / "job.star").write_text("# version 30001\n\ndata_job\n\n_rlnJobTypeLabel relion.external\n"
                                           "_rlnJobIsContinue 1\n\n")
    assert run_job(spec, body, ["--o", JOB]) == 0
    assert seen["is_continue"] is True and seen["previous"]["job"] == "cryopares_cont"
    assert (project / JOB / "job.star").read_text().endswith("_rlnJobIsContinue 1\n\n")  # untouched


def test_declared_but_missing_output_is_a_failure(project, capsys):
    from relion_cryopares.relion import JobSpec, OutputNode, run_job

    assert run_job(JobSpec("t"), lambda ctx: [OutputNode(ctx.path("nope.mrc"), "map")], ["--o", JOB]) == 1
    assert "was declared but not written" in capsys.readouterr().err


def test_no_output_dir_and_help(project, capsys):
    assert toy_main(["--sym", "C1"]) == 1
    assert capsys.readouterr().err.startswith("ERROR: --o")
    assert toy_main(["--help"]) == 0
    assert "--sym <str>" in capsys.readouterr().out
    assert list(project.iterdir()) == []


def test_python_warnings_go_to_run_out_not_run_err(project, capsys):
    import warnings

    from relion_cryopares.relion import JobSpec, run_job

    def body(ctx):
        warnings.warn("a library complains", UserWarning)
        return []

    assert run_job(JobSpec("t"), body, ["--o", JOB]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "a library complains" in out
    assert "a library complains" in (project / JOB / LOG_FILE).read_text()


def _start_sleeping_toy(project):
    import subprocess
    import sys
    import time

    from tests.relion_project import REPO

    proc = subprocess.Popen([sys.executable, "-m", "tests.relion._toy_job", "--o", JOB, "--mode", "sleep",
                             "--count", "300"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while "sleeping" not in ((project / JOB / LOG_FILE).read_text() if (project / JOB / LOG_FILE).exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def test_external_abort_request_of_a_running_job(project):
    proc = _start_sleeping_toy(project)
    (project / JOB / "RELION_JOB_ABORT_NOW").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err == ""
    assert existing_exit_files(project / JOB) == [EXIT_ABORTED]


def test_sigterm_ends_in_a_failure_exit_file(project):
    import signal

    proc = _start_sleeping_toy(project)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err == "ERROR: terminated by SIGTERM (queue time limit or scancel?)\n"
    assert existing_exit_files(project / JOB) == [EXIT_FAILURE]


def test_params_as_builds_a_frozen_config(project):
    from dataclasses import dataclass

    from relion_cryopares.relion import JobSpec, Param, run_job

    @dataclass(frozen=True)
    class Config:
        batch_size: int = 8
        lowpass_angstrom: float = 6.0
        extra: str = "x"

    seen = {}
    spec = JobSpec("t", params=(Param("batch_size", "int", 16), Param("device", "str", "cpu")))
    assert run_job(spec, lambda ctx: seen.setdefault("c", [ctx.params_as(Config, extra="y")]) and [],
                   ["--o", JOB, "--batch_size", "4"]) == 0
    assert seen["c"][0] == Config(batch_size=4, lowpass_angstrom=6.0, extra="y")
