"""Rendering the scheme model to RELION 4.0/5.x Schemes and 3.1 Schedules (formats per RELION's source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relion_cryopares.schemes import (Edge, Operator, Scheme, Variable, build_scheme, render, render_texts,
                                      scheme_dir)
from relion_cryopares.schemes._install import write_shipped
from relion_cryopares.schemes._star import parse_star

REPO = Path(__file__).resolve().parents[2]


def _blocks(files, path):
    return parse_star(files[path], path)


@pytest.mark.parametrize("form, top, stem, label", [("4", "Schemes", "scheme", "Scheme"),
                                                     ("3.1", "Schedules", "schedule", "Schedule")])
def test_blocks_and_labels(form, top, stem, label):
    files = render_texts(build_scheme("cryopares_screen"), form)
    blocks = _blocks(files, f"{top}/cryopares_screen/{stem}.star")
    assert set(blocks) == {f"{stem}_{b}" for b in ("general", "floats", "bools", "strings", "operators",
                                                    "jobs", "edges")}
    general = blocks[f"{stem}_general"].pairs
    assert general == {f"_rln{label}Name": f"{top}/cryopares_screen/",
                       f"_rln{label}CurrentNodeName": "wait_for_data"}
    assert blocks[f"{stem}_floats"].labels == [f"_rln{label}FloatVariable{p}" for p in ("Name", "Value", "ResetValue")]
    assert blocks[f"{stem}_bools"].labels == [f"_rln{label}BooleanVariable{p}" for p in ("Name", "Value", "ResetValue")]
    assert blocks[f"{stem}_operators"].labels == [f"_rln{label}Operator{p}" for p in
                                                  ("Name", "Type", "Output", "Input1", "Input2")]
    assert blocks[f"{stem}_jobs"].labels == [f"_rln{label}Job{p}" for p in
                                             ("NameOriginal", "Name", "Mode", "HasStarted")]
    assert blocks[f"{stem}_edges"].labels == [f"_rln{label}Edge{p}" for p in
                                              ("InputNodeName", "OutputNodeName", "IsFork",
                                               "OutputNodeNameIfTrue", "BooleanVariable")]
    # RELION --reset restarts at the first edge's input node
    assert blocks[f"{stem}_edges"].rows[0][f"_rln{label}EdgeInputNodeName"] == "wait_for_data"
    floats = {r[f"_rln{label}FloatVariableName"]: r[f"_rln{label}FloatVariableValue"]
              for r in blocks[f"{stem}_floats"].rows}
    assert floats["one"] == "1.000000" and floats["wait_s"] == "60.000000"
    bools = {r[f"_rln{label}BooleanVariableName"]: r[f"_rln{label}BooleanVariableValue"]
             for r in blocks[f"{stem}_bools"].rows}
    assert bools["auto_bfac"] == "1" and bools["do_stop"] == "0"
    jobs = {r[f"_rln{label}JobNameOriginal"]: r[f"_rln{label}JobMode"] for r in blocks[f"{stem}_jobs"].rows}
    assert jobs == {"infer": "continue", "localrefine": "continue", "postprocess": "continue"}


def test_exit_maxtime_only_in_relion4_and_bypassed_for_31():
    scheme = build_scheme("cryopares_screen")
    ops4 = _blocks(render_texts(scheme, "4"), "Schemes/cryopares_screen/scheme.star")["scheme_operators"].rows
    assert {r["_rlnSchemeOperatorType"] for r in ops4 if r["_rlnSchemeOperatorName"] == "check_maxtime"} \
        == {"exit_maxtime"}
    blocks31 = _blocks(render_texts(scheme, "3.1"), "Schedules/cryopares_screen/schedule.star")
    assert "check_maxtime" not in {r["_rlnScheduleOperatorName"] for r in blocks31["schedule_operators"].rows}
    fork = next(r for r in blocks31["schedule_edges"].rows if r["_rlnScheduleEdgeInputNodeName"] == "check_stop")
    assert fork["_rlnScheduleEdgeOutputNodeName"] == "check_particles"          # bypassed
    assert fork["_rlnScheduleEdgeOutputNodeNameIfTrue"] == "exit" and fork["_rlnScheduleEdgeIsFork"] == "1"


def test_job_star_carries_both_type_labels_and_all_options():
    files = render_texts(build_scheme("cryopares_screen"), "3.1")
    infer = _blocks(files, "Schedules/cryopares_screen/infer/job.star")
    assert infer["job"].pairs["_rlnJobTypeLabel"] == "relion.external"
    assert infer["job"].pairs["_rlnJobType"] == "99"
    options = {r["_rlnJobOptionVariable"]: r["_rlnJobOptionValue"] for r in infer["joboptions_values"].rows}
    assert options["fn_exe"] == "cryopares_infer" and options["in_part"] == "$$particles"
    assert options["param1_label"] == "model" and options["param1_value"] == "$$model"
    assert options["param10_value"] == "" and options["nr_threads"] == "$$threads"
    post = _blocks(files, "Schedules/cryopares_screen/postprocess/job.star")
    assert post["job"].pairs["_rlnJobType"] == "15"
    options = {r["_rlnJobOptionVariable"]: r["_rlnJobOptionValue"] for r in post["joboptions_values"].rows}
    # 3.1 finds the job's real directory through schedule_pipeline.star
    assert options["fn_in"] == "Schedules/cryopares_screen/localrefine/run_half1_class001_unfil.mrc"
    pipe = _blocks(files, "Schedules/cryopares_screen/schedule_pipeline.star")
    assert {r["_rlnPipeLineProcessName"]: r["_rlnPipeLineProcessType"] for r in pipe["pipeline_processes"].rows} == {
        "Schedules/cryopares_screen/infer/": "99", "Schedules/cryopares_screen/localrefine/": "99",
        "Schedules/cryopares_screen/postprocess/": "15"}
    assert ("Schedules/cryopares_screen/infer/particles.star", "Schedules/cryopares_screen/localrefine/") in {
        (r["_rlnPipeLineEdgeFromNode"], r["_rlnPipeLineEdgeProcess"]) for r in pipe["pipeline_input_edges"].rows}
    four = render_texts(build_scheme("cryopares_screen"), "4")
    assert "_rlnJobIsTomo" in four["Schemes/cryopares_screen/infer/job.star"]
    assert "Schemes/cryopares_screen/localrefine/run_half1" in four["Schemes/cryopares_screen/postprocess/job.star"]


def test_values_names_and_errors(tmp_path):
    scheme = build_scheme("cryopares_screen").with_values({"wait_s": "30", "auto_bfac": "no", "sym": "D2"})
    assert scheme.variable("wait_s").value == 30.0 and scheme.variable("auto_bfac").value is False
    with pytest.raises(ValueError, match="not a number"):
        scheme.with_values({"wait_s": "soon"})
    with pytest.raises(KeyError, match="no variable"):
        scheme.with_values({"nope": 1})
    renamed = build_scheme("cryopares_screen", "screen_lig2")
    assert renamed.variable("stop_file").value == "STOP_screen_lig2"
    assert renamed.job("localrefine").options["in_part"] == "Schemes/screen_lig2/infer/particles.star"
    assert renamed.renamed("x2").job("postprocess").options["fn_in"].startswith("Schemes/x2/localrefine/")
    target = render(renamed, tmp_path)
    assert target == scheme_dir(tmp_path, "screen_lig2") and (target / "infer" / "job.star").exists()
    with pytest.raises(FileExistsError):
        render(renamed, tmp_path)


def test_structural_errors_are_caught():
    v = [Variable("flag", "bool", False)]
    ops = [Operator("a", "bool=not", "flag", output="flag"), Operator("b", "exit")]
    with pytest.raises(ValueError, match="first edge"):
        Scheme("s", "", v, ops, [], [Edge("b", "a")], start="a").check()
    with pytest.raises(ValueError, match="more than one outgoing"):
        Scheme("s", "", v, ops, [], [Edge("a", "b"), Edge("a", "a")], start="a").check()
    with pytest.raises(ValueError, match="unknown node"):
        Scheme("s", "", v, ops, [], [Edge("a", "c")], start="a").check()
    with pytest.raises(ValueError, match="unknown type"):
        Operator("x", "float=sqrt")


def test_shipped_files_are_the_current_rendering(tmp_path):
    """schemes/ in the repository equals what the model renders (refresh with
    ``cryopares_install_scheme --render-shipped schemes``)."""
    write_shipped(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.star"))
    shipped = sorted(p.relative_to(REPO / "schemes") for p in (REPO / "schemes").rglob("*.star"))
    assert fresh == shipped
    for rel in fresh:
        assert (REPO / "schemes" / rel).read_text() == (tmp_path / rel).read_text(), rel
