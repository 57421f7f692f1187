"""Atomic writes, output-node files, job.star reading, exit-file helpers, progress lines."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from relion_cryopares.relion import (EXIT_ABORTED, EXIT_FAILURE, EXIT_SUCCESS, OutputNode, Progress, atomic_path,
                                     atomic_write, detect_pipeline_version, existing_exit_files, format_output_nodes,
                                     read_is_continue, read_job_options, write_bytes_atomic, write_text_atomic)
from relion_cryopares.relion._exitfiles import clear_exit_files, write_exit_file
from tests.conftest import shared_data_dir

_SHARED = shared_data_dir()
JOBSTARS = (_SHARED or Path("/nonexistent")) / "star_formats" / "ccpem_pipeliner_jobstars"
EXTERNAL_JOBSTAR = JOBSTARS / "default_relion_external_job.star"

# --- atomic writes -------------------------------------------------------------------------------


def test_atomic_write_replaces(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_write(target) as handle:
        handle.write("new")
        assert target.read_text() == "old"  # not visible before the end
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "new.bin", "wb") as handle:
            handle.write(b"x")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_suffix_and_cleans_up(tmp_path):
    with atomic_path(tmp_path / "map.mrc") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mrc" and tmp.name.startswith(".")
        tmp.write_bytes(b"abc")
    assert (tmp_path / "map.mrc").read_bytes() == b"abc"
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "other.mrc") as tmp:
            tmp.write_bytes(b"abc")
            raise ValueError
    with pytest.raises(FileNotFoundError):  # the writer wrote nothing
        with atomic_path(tmp_path / "empty.mrc"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.mrc"]


def test_text_and_bytes_helpers(tmp_path):
    assert write_text_atomic(tmp_path / "t", "x\n").read_text() == "x\n"
    assert write_bytes_atomic(tmp_path / "b", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_relion_owned_files_are_refused(tmp_path):
    for name in ("job.star", "note.txt", "job_pipeline.star", "default_pipeline.star"):
        with pytest.raises(ValueError, match="RELION owns"):
            write_text_atomic(tmp_path / name, "x")

# --- output nodes ---------------------------------------------------------------------------------

PIPELINE_31 = ("# version 30001\n\ndata_pipeline_processes\n\nloop_\n_rlnPipeLineProcessName #1\n"
               "_rlnPipeLineProcessAlias #2\n_rlnPipeLineProcessType #3\n_rlnPipeLineProcessStatus #4\n")
PIPELINE_40 = ("# version 30001\n\ndata_pipeline_processes\n\nloop_\n_rlnPipeLineProcessName #1\n"
               "_rlnPipeLineProcessAlias #2\n_rlnPipeLineProcessTypeLabel #3\n_rlnPipeLineProcessStatusLabel #4\n")
PIPELINE_50 = PIPELINE_40.replace("30001", "50001")


@pytest.mark.parametrize("text, version", [(PIPELINE_31, "3.1"), (PIPELINE_40, "4.0"), (PIPELINE_50, "5")])
def test_detect_pipeline_version(tmp_path, text, version):
    (tmp_path / "default_pipeline.star").write_text(text)
    assert detect_pipeline_version(tmp_path / "default_pipeline.star") == version
    assert detect_pipeline_version(tmp_path / "missing.star", tmp_path / "default_pipeline.star") == version
    assert detect_pipeline_version(tmp_path / "missing.star") == "unknown"


ROWS = [("External/job004/run_data.star", OutputNode("x", "particles", "cryopares")),
        ("External/job004/run_class001.mrc", OutputNode("x", "map")),
        ("External/job004/mask.mrc", OutputNode("x", "mask")),
        ("External/job004/run_half1_class001_unfil.mrc", OutputNode("x", "halfmap")),
        ("External/job004/postprocess.star", OutputNode("x", "postprocess")),
        ("External/job004/logfile.pdf", OutputNode("x", "logpdf"))]


def _node_rows(text: str) -> list[list[str]]:
    lines = [l.split() for l in text.splitlines() if l.strip()]
    assert lines[0] == ["#", "version", lines[0][2]]
    assert lines[1] == ["data_output_nodes"] and lines[2] == ["loop_"]
    assert [l[0] for l in lines[3:6]] == ["_rlnPipeLineNodeName", "_rlnPipeLineNodeType", "_rlnPipeLineNodeTypeLabel"]
    return lines[6:]


@pytest.mark.parametrize("version, labels", [
    ("3.1", ["ParticlesData.star.relion.cryopares", "DensityMap.mrc", "Mask3D.mrc", "DensityMap.mrc.halfmap",
             "ProcessData.star.relion.postprocess", "LogFile.pdf.relion"]),
    ("4.0", ["ParticlesData.star.relion.cryopares", "DensityMap.mrc", "Mask3D.mrc", "DensityMap.mrc.halfmap",
             "ProcessData.star.relion.postprocess", "LogFile.pdf.relion"]),
    ("5", ["ParticleGroupMetadata.star.relion.cryopares", "DensityMap.mrc", "Mask3D.mrc", "DensityMap.mrc.halfmap",
           "ProcessData.star.relion.postprocess", "LogFile.pdf.relion"]),
])
def test_output_nodes_all_three_columns(version, labels):
    text = format_output_nodes(ROWS, version)
    assert text.startswith("# version 50001" if version == "5" else "# version 30001")
    rows = _node_rows(text)
    assert [r[0] for r in rows] == [name for name, _ in ROWS]
    assert [int(r[1]) for r in rows] == [3, 6, 7, 10, 14, 13]
    assert [r[2] for r in rows] == labels


def test_output_node_file_reads_with_starfile(tmp_path):
    import starfile

    path = tmp_path / "RELION_OUTPUT_NODES.star"
    path.write_text(format_output_nodes(ROWS, "5"))
    table = starfile.read(path, always_dict=True)["output_nodes"]
    assert list(table.columns) == ["rlnPipeLineNodeName", "rlnPipeLineNodeType", "rlnPipeLineNodeTypeLabel"]
    assert len(table) == len(ROWS) and table["rlnPipeLineNodeType"].tolist() == [3, 6, 7, 10, 14, 13]


def test_output_node_validation():
    with pytest.raises(ValueError):
        OutputNode("a.mrc", "volume")
    with pytest.raises(ValueError):
        OutputNode("a.mrc", "map", keyword="bad keyword")
    with pytest.raises(ValueError, match="spaces"):
        format_output_nodes([("External/job001/a b.mrc", OutputNode("a", "map"))], "3.1")

# --- job.star -------------------------------------------------------------------------------------


def test_is_continue_from_real_jobstar_templates(tmp_path):
    if not EXTERNAL_JOBSTAR.exists():
        pytest.skip("shared job.star templates not available")
    assert read_is_continue(EXTERNAL_JOBSTAR) is False
    options = read_job_options(EXTERNAL_JOBSTAR)
    assert options["fn_exe"] == "lalala" and options["in_part"] == "" and options["nr_threads"] == "1"
    continued = tmp_path / "job.star"
    continued.write_text(EXTERNAL_JOBSTAR.read_text().replace("_rlnJobIsContinue                       0",
                                                              "_rlnJobIsContinue                       1"))
    assert read_is_continue(continued) is True
    templates = sorted(JOBSTARS.glob("*_job.star"))
    assert len(templates) > 10
    for template in templates:  # the manualpick template says 1, all others 0
        expected = re.search(r"^_rlnJobIsContinue\s+(\d)", template.read_text(), re.MULTILINE).group(1) == "1"
        assert read_is_continue(template) is expected, template.name


def test_is_continue_31_header_and_missing_file(tmp_path):
    job = tmp_path / "job.star"
    job.write_text("# version 30001\n\ndata_job\n\n_rlnJobType                            99\n"
                   "_rlnJobIsContinue                       1\n \n")
    assert read_is_continue(job) is True
    assert read_is_continue(tmp_path / "nope.star") is False
    assert read_job_options(tmp_path / "nope.star") == {}


def test_damaged_jobstar_means_new_run(tmp_path, caplog):
    job = tmp_path / "job.star"
    job.write_text("data_job\nloop_\n_rlnJobIsContinue #1\n\"unterminated\n")
    assert read_is_continue(job) in (False, True)  # never raises

# --- exit files -----------------------------------------------------------------------------------


def test_write_exit_file_leaves_exactly_one(tmp_path):
    for name in (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED):
        (tmp_path / name).touch()
    write_exit_file(tmp_path, EXIT_FAILURE)
    assert existing_exit_files(tmp_path) == [EXIT_FAILURE]
    (tmp_path / "RELION_JOB_ABORT_NOW").touch()
    clear_exit_files(tmp_path)
    assert existing_exit_files(tmp_path) == [] and not (tmp_path / "RELION_JOB_ABORT_NOW").exists()

# --- progress -------------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_lines(caplog):
    clock = _Clock()
    log = logging.getLogger("relion_cryopares.test_progress")
    with caplog.at_level(logging.INFO, logger="relion_cryopares.test_progress"):
        progress = Progress(1000, log, done=200, interval_s=10, clock=clock)
        clock.t += 2
        progress.update(100)  # first update always logs
        clock.t += 2
        progress.update(100)  # within the interval: silent
        clock.t += 10
        progress.update(100)
        clock.t += 16
        progress.update(500)  # done: always logs
        progress.finish()     # already logged: silent
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "300 / 1000 particles (30.0%), 50.0 particles/s, ETA 0:00:14",
        "500 / 1000 particles (50.0%), 21.4 particles/s, ETA 0:00:23",
        "1000 / 1000 particles (100.0%), 26.7 particles/s, ETA 0:00:00",
    ]
