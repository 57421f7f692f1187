"""The scheme validator passes on everything we ship and catches deliberately broken copies."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from relion_cryopares.schemes import build_scheme, render
from relion_cryopares.schemes._install import main as install_main
from relion_cryopares.schemes._validate import find_scheme_dirs, validate_scheme_dir, validate_tree

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "schemes"


def test_everything_shipped_is_valid():
    dirs = find_scheme_dirs(SHIPPED)
    assert {(d.parent.name, d.name) for d in dirs} == {
        (top, name) for top in ("Schemes", "Schedules") for name in ("cryopares_train", "cryopares_screen")}
    assert validate_tree(SHIPPED) == []


@pytest.mark.parametrize("template", ["cryopares_train", "cryopares_screen", "cryopares_reconstruct_loop"])
@pytest.mark.parametrize("form", ["4", "3.1"])
def test_every_rendering_is_valid(tmp_path, template, form):
    assert validate_scheme_dir(render(build_scheme(template), tmp_path, form)) == []


@pytest.fixture(params=["Schemes", "Schedules"])
def copy(request, tmp_path) -> Path:
    """A fresh copy of the shipped cryopares_screen in one form."""
    target = tmp_path / request.param / "cryopares_screen"
    shutil.copytree(SHIPPED / request.param / "cryopares_screen", target)
    return target


def _star(copy: Path) -> Path:
    return copy / ("scheme.star" if copy.parent.name == "Schemes" else "schedule.star")


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, count))


def _one(problems: list[str], pattern: str) -> None:
    assert any(re.search(pattern, p) for p in problems), problems


def test_undefined_variable_in_job_option(copy):
    _edit(copy / "infer" / "job.star", "$$zscore_thr", "$$zscore_threshold")
    _one(validate_scheme_dir(copy), r"job infer: option param3_value uses \$\$zscore_threshold, which is not")


def test_literal_number_as_operator_input(copy):
    _edit(_star(copy), "loops loops one", "loops loops 1")
    _one(validate_scheme_dir(copy), r"operator count_loop .*input2 is the literal number 1; RELION reads it as 0")


def test_unreachable_node(copy):
    _edit(_star(copy), "mark_done infer 0", "mark_done localrefine 0")
    problems = validate_scheme_dir(copy)
    _one(problems, r"node infer cannot be reached from the start node wait_for_data")


def test_unknown_param_label_and_command(copy):
    _edit(copy / "localrefine" / "job.star", "param4_label lowpass", "param4_label low_pass")
    _edit(copy / "infer" / "job.star", "fn_exe cryopares_infer", "fn_exe cryopares_predict")
    problems = validate_scheme_dir(copy)
    _one(problems, r"job localrefine: cryopares_localrefine has no parameter --low_pass \(known: .*lowpass")
    _one(problems, r"job infer: fn_exe 'cryopares_predict' is not one of our jobs")


def test_kinds_forks_and_edges(copy):
    star = _star(copy)
    _edit(copy / "postprocess" / "job.star", "do_auto_bfac $$auto_bfac", "do_auto_bfac $$sym")
    _edit(star, "check_stop bool=file_exists do_stop stop_file", "check_stop bool=file_exists do_stop wait_s")
    text = star.read_text()
    first_edge = re.search(r"^wait_for_data check_stop 0 undefined undefined$", text, re.M).group(0)
    star.write_text(text.replace(first_edge, first_edge + "\nwait_for_data exit 0 undefined undefined"))
    problems = validate_scheme_dir(copy)
    _one(problems, r"Yes/No option do_auto_bfac needs a boolean variable, \$\$sym is a string")
    _one(problems, r"operator check_stop .*input1 'wait_s' must be a string variable, it is a float")
    _one(problems, r"node wait_for_data has more than one outgoing edge")


def test_a_scheme_relion_has_run_is_valid(copy):
    """After a run RELION (5.0.1) writes the node where it stopped as the current node, often
    ``exit``; the start node is still the first edge's input node (where ``--reset`` restarts)."""
    star = _star(copy)
    label = "_rlnSchemeCurrentNodeName" if copy.parent.name == "Schemes" else "_rlnScheduleCurrentNodeName"
    text = star.read_text()
    current = re.search(rf"^{label}\s+(\S+)", text, re.M)
    for stopped in ("exit", "localrefine"):
        star.write_text(text.replace(current.group(0), f"{label} {stopped}"))
        assert validate_scheme_dir(copy) == []
    star.write_text(text.replace(current.group(0), f"{label} nowhere"))
    _one(validate_scheme_dir(copy), r"the current node 'nowhere' is neither an operator nor a job")


def test_scheme_name_must_match_directory(copy, tmp_path):
    moved = copy.parent / "other_name"
    copy.rename(moved)
    _one(validate_scheme_dir(moved), r"Name is '(Schemes|Schedules)/cryopares_screen/'; RELION needs")


def test_relion31_specifics(tmp_path):
    target = tmp_path / "Schedules" / "cryopares_screen"
    shutil.copytree(SHIPPED / "Schedules" / "cryopares_screen", target)
    _edit(target / "schedule.star", "exit exit undefined", "exit exit_maxtime undefined")
    (target / "schedule_pipeline.star").write_text(
        (target / "schedule_pipeline.star").read_text().replace("Schedules/cryopares_screen/infer/particles.star "
                                                                "Schedules/cryopares_screen/localrefine/", ""))
    problems = validate_scheme_dir(target)
    _one(problems, r"operator exit: unknown type 'exit_maxtime' \(RELION 4.0\+ only\)")
    _one(problems, r"schedule_pipeline.star lacks the node Schedules/cryopares_screen/infer/particles.star")


def test_check_command_exit_codes(copy, capsys):
    assert install_main(["--check", str(SHIPPED)]) == 0
    _edit(copy / "infer" / "job.star", "$$model", "$$no_such_var")
    assert install_main(["--check", str(copy)]) == 1
    assert "no_such_var" in capsys.readouterr().out
