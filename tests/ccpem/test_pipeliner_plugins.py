"""CCP-EM pipeliner plugins: discovery through entry points, options from our JobSpecs, command lines,
and cryopares.reconstruct run to success by the pipeliner itself on simulated particles."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pipeliner = pytest.importorskip("pipeliner", reason="ccpem-pipeliner not installed (pip install .[ccpem])")

from pipeliner.job_factory import get_job_types, new_job_of_type  # noqa: E402

from relion_cryopares.ccpem import PLUGINS  # noqa: E402
from relion_cryopares.jobs import reconstruct  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.jobs.conftest import simulated_project  # noqa: E402


def _env() -> dict[str, str]:
    """PATH with this interpreter's bin dir first (where our console scripts are)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, PYTHONPATH=str(REPO))


def test_job_listing_shows_our_four_jobs():
    jobs = {job.PROCESS_NAME: job for job in get_job_types("cryopares")}
    assert set(jobs) == set(PLUGINS) == {"cryopares.train", "cryopares.infer", "cryopares.localrefine",
                                         "cryopares.reconstruct"}
    assert jobs["cryopares.reconstruct"].jobinfo.is_available
    listing = subprocess.run(["pipeliner", "--available_jobs", "cryopares"], capture_output=True, text=True,
                             env=_env(), timeout=120)
    assert listing.returncode == 0, listing.stderr
    for name in PLUGINS:
        assert name in listing.stdout


def test_options_follow_the_job_spec_and_commands_are_ours():
    job = new_job_of_type("cryopares.reconstruct")
    spec_names = [i.flag for i in reconstruct.SPEC.inputs] + [p.name for p in reconstruct.SPEC.params]
    assert [k for k in job.joboptions if k in spec_names] == spec_names
    assert job.joboptions["in_parts"].node_type == "ParticleGroupMetadata"
    assert job.joboptions["in_mask"].node_type == "Mask3D"
    job.output_dir = "External/job007/"
    job.joboptions["in_parts"].value = "Refine3D/job010/run_data.star"
    job.joboptions["sym"].value = "D2"
    job.joboptions["use_fom"].value = True
    job.joboptions["nr_threads"].value = 4
    (command,) = job.get_commands()
    assert command.cmd == ["cryopares_reconstruct", "--o", "External/job007/", "--in_parts",
                           "Refine3D/job010/run_data.star", "--sym", "D2", "--use_fom", "--batch_size", "256",
                           "--save_every", "2048", "--j", "4"]
    job.create_output_nodes()
    assert {(n.name, n.toplevel_type) for n in job.output_nodes} == {
        ("External/job007/run_half1_class001_unfil.mrc", "DensityMap"),
        ("External/job007/run_class001.mrc", "DensityMap")}
    infer = new_job_of_type("cryopares.infer")
    infer.output_dir = "External/job021/"
    infer.joboptions["in_parts"].value = "Extract/job007/particles.star"
    infer.joboptions["model"].value = "External/job020/cryopares_model.json"  # the train job's model node
    (command,) = infer.get_commands()
    assert command.cmd[command.cmd.index("--model") + 1] == "External/job020/"
    infer.create_output_nodes()
    assert "External/job021/particles.star" in {n.name for n in infer.output_nodes}


def test_importing_the_package_does_not_need_the_pipeliner():
    code = ("import sys; sys.modules['pipeliner'] = None\n"
            "import relion_cryopares, relion_cryopares.ccpem, relion_cryopares.schemes\n"
            "import relion_cryopares.jobs.reconstruct\n"
            "try:\n    import relion_cryopares.ccpem.jobs\nexcept ImportError:\n    print('optional')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "optional", out.stderr


@pytest.mark.slow
def test_pipeliner_runs_reconstruct_to_success(tmp_path, test_map):
    project = simulated_project(tmp_path / "project", test_map, n=200)
    (project / "default_pipeline.star").unlink()  # the pipeliner makes its own (RELION 5 format)
    script = textwrap.dedent("""
        from pipeliner.api.manage_project import PipelinerProject
        project = PipelinerProject(make_new_project=True)
        job = project.run_job({"_rlnJobTypeLabel": "cryopares.reconstruct",
                               "in_parts": "Import/job001/particles.star", "sym": "C1", "nr_threads": 2},
                              run_in_foreground=True)
        print("JOB", job.output_dir)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=project, capture_output=True, text=True,
                         env=_env(), timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "JOB External/job001/" in out.stdout
    job = project / "External/job001"
    assert (job / "PIPELINER_JOB_EXIT_SUCCESS").exists() and (job / "RELION_JOB_EXIT_SUCCESS").exists()
    for name in ("run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc", "run_class001.mrc", "fsc.png"):
        assert (job / name).exists(), name
    pipeline = (project / "default_pipeline.star").read_text()
    assert "External/job001/ None cryopares.reconstruct Succeeded" in " ".join(pipeline.split())
    assert "External/job001/run_half1_class001_unfil.mrc DensityMap.mrc.cryopares.halfmap" in pipeline
