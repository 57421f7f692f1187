"""The schemes we ship: ``cryopares_train`` and ``cryopares_screen`` (plus a reconstruct-only loop).

``cryopares_train``: one ``cryopares_train`` External job on a Refine3D ``run_data.star`` (and its map),
then exit.

``cryopares_screen`` (on the fly, unattended)::

    wait_for_data (wait $$wait_s since the last pass)
      -> check_stop (file_exists $$stop_file) --true--> exit
      -> check_maxtime (exit_maxtime $$maxtime_hr; RELION 4.0+ only)
      -> check_particles (file_exists $$particles) --false--> wait_for_data
      -> count_particles (count_images) -> check_new (n_parts > n_done) --false--> wait_for_data
      -> mark_done (n_done = n_parts)
      -> infer (continue) -> localrefine (continue) -> postprocess (continue)
      -> count_loop (loops += 1) -> check_loops (loops >= max_loops) --true--> exit
      -> wait_for_data

Every pass handles only what is new: the jobs keep a record of the particles they have done and a
*continue* processes the rest. Stop it by creating the stop file (``touch STOP_cryopares_screen``
in the project directory); it also stops after ``maxtime_hr`` hours (RELION 4.0+) or ``max_loops``
passes that found new particles.
"""

from __future__ import annotations

from typing import Callable

from ._jobs import external_job, postprocess_job
from ._model import Edge, Operator, Scheme, Variable, scheme_ref


def _queue_variables() -> list[Variable]:
    return [
        Variable("do_queue", "bool", False, "submit the jobs to the queue (RELION's 'Submit to queue?')", True),
        Variable("queue_name", "string", "openmpi", "queue name (XXXqueueXXX in the submission template)", True),
        Variable("qsub", "string", "qsub", "queue submission command (sbatch, qsub, ...)", True),
        Variable("qsub_script", "string", "", "your site's submission template (RELION_QSUB_TEMPLATE)", True),
    ]


def train_scheme(name: str = "cryopares_train") -> Scheme:
    """From a Refine3D ``run_data.star`` and its map to a trained model (one External job)."""
    variables = [
        Variable("particles", "string", "Refine3D/job010/run_data.star",
                 "aligned apo particles (a Refine3D run_data.star)", True),
        Variable("ref_map", "string", "Refine3D/job010/run_class001.mrc",
                 "the apo map (used for pre-training on simulated particles); empty: none", True),
        Variable("sym", "string", "C1", "point-group symmetry (RELION name, e.g. D2)", True),
        Variable("preset", "string", "auto", "network size: auto (paper on a GPU, tiny on a CPU), paper or tiny",
                 True),
        Variable("train_args", "string", "", "more cryopares_train options, e.g. '--epochs 20 --box_nnet 96'",
                 True),
        Variable("threads", "float", 1.0, "CPU threads per job (--j)", True),
        *_queue_variables(),
    ]
    train = external_job(
        "train", "cryopares_train", mode="new",
        inputs={"in_part": "$$particles", "in_3dref": "$$ref_map"},
        params={"sym": "$$sym", "preset": "$$preset"}, threads="$$threads", other_args="$$train_args",
        help="cryopares_train: two half-set pose networks")
    return Scheme(name, "Train the cryoPARES pose networks on aligned apo particles", variables,
                  [Operator("exit", "exit", help="done")], [train], [Edge("train", "exit")], start="train")


def _screen_variables(name: str, specific: list[Variable] = ()) -> list[Variable]:
    return [
        Variable("particles", "string", "Extract/job007/particles.star",
                 "the particle STAR file that grows (e.g. an on-the-fly Extract job's particles.star)", True),
        *specific,
        Variable("sym", "string", "C1", "point-group symmetry (RELION name, e.g. D2)", True),
        Variable("mask", "string", "MaskCreate/job012/mask.mrc", "mask for PostProcess (and the FSC)", True),
        Variable("wait_s", "float", 60.0, "seconds between passes looking for new particles", True),
        Variable("stop_file", "string", f"STOP_{name}", "create this file (project-relative) to stop", True),
        Variable("maxtime_hr", "float", 48.0, "stop after this many hours (RELION 4.0+ only)", True),
        Variable("max_loops", "float", 100000.0, "stop after this many passes that found new particles", True),
        Variable("angpix", "float", -1.0, "PostProcess pixel size (-1: from the map header)", True),
        Variable("auto_bfac", "bool", True, "PostProcess: estimate a B-factor (needs resolution < 10 A)", True),
        Variable("threads", "float", 1.0, "CPU threads per job (--j)", True),
        *_queue_variables(),
        # internal state (reset by relion_schemer --reset)
        Variable("one", "float", 1.0, "the constant 1 (RELION reads a literal number as 0)"),
        Variable("n_parts", "float", 0.0, "particles in the STAR file now"),
        Variable("n_done", "float", 0.0, "particles in the STAR file at the last pass"),
        Variable("loops", "float", 0.0, "passes that found new particles"),
        Variable("do_stop", "bool", False, "the stop file exists"),
        Variable("has_parts", "bool", False, "the particle STAR file exists"),
        Variable("has_new", "bool", False, "there are new particles"),
        Variable("loops_done", "bool", False, "max_loops reached"),
    ]


def _loop_operators() -> list[Operator]:
    return [
        Operator("wait_for_data", "wait", "wait_s", help="wait until wait_s seconds since the last pass"),
        Operator("check_stop", "bool=file_exists", "stop_file", output="do_stop"),
        Operator("check_maxtime", "exit_maxtime", "maxtime_hr", min_relion="4.0"),
        Operator("check_particles", "bool=file_exists", "particles", output="has_parts"),
        Operator("count_particles", "float=count_images", "particles", output="n_parts"),
        Operator("check_new", "bool=gt", "n_parts", "n_done", output="has_new"),
        Operator("mark_done", "float=set", "n_parts", output="n_done"),
        Operator("count_loop", "float=plus", "loops", "one", output="loops"),
        Operator("check_loops", "bool=ge", "loops", "max_loops", output="loops_done"),
        Operator("exit", "exit"),
    ]


def _loop_edges(chain: list[str]) -> list[Edge]:
    """The loop's edges around ``chain``, the jobs run one after the other on each pass."""
    return [
        Edge("wait_for_data", "check_stop"),
        Edge("check_stop", "check_maxtime", "do_stop", "exit"),
        Edge("check_maxtime", "check_particles"),
        Edge("check_particles", "wait_for_data", "has_parts", "count_particles"),
        Edge("count_particles", "check_new"),
        Edge("check_new", "wait_for_data", "has_new", "mark_done"),
        Edge("mark_done", chain[0]),
        *(Edge(a, b) for a, b in zip(chain, chain[1:])),
        Edge(chain[-1], "count_loop"),
        Edge("count_loop", "check_loops"),
        Edge("check_loops", "wait_for_data", "loops_done", "exit"),
    ]


def screen_scheme(name: str = "cryopares_screen") -> Scheme:
    """The on-the-fly loop: infer -> localrefine -> PostProcess on each batch of new particles."""
    variables = _screen_variables(name, [
        Variable("model", "string", "External/job020/", "the cryopares_train job directory", True),
        Variable("ref_map", "string", "Refine3D/job010/run_class001.mrc",
                 "reference map for local refinement (the apo map)", True),
        Variable("zscore_thr", "string", "auto", "pruning threshold: auto or a robust z-score", True),
        Variable("top_k", "string", "5", "network poses per particle; local refinement searches around each",
                 True),
        Variable("refine_range", "float", 6.0, "local refinement: angular range (degrees)", True),
        Variable("refine_step", "float", 2.0, "local refinement: angular step (degrees)", True),
        Variable("lowpass", "float", 6.0, "local refinement: reference low-pass (A)", True),
    ])
    infer = external_job(
        "infer", "cryopares_infer", mode="continue", inputs={"in_part": "$$particles"},
        params={"model": "$$model", "sym": "$$sym", "zscore_thr": "$$zscore_thr", "top_k": "$$top_k"},
        threads="$$threads",
        outputs={"particles.star": "particles", "rejected.star": "particles"},
        help="cryopares_infer: poses and pruning of the new particles")
    localrefine = external_job(
        "localrefine", "cryopares_localrefine", mode="continue",
        inputs={"in_part": scheme_ref(name, "infer", "particles.star"), "in_3dref": "$$ref_map",
                "in_mask": "$$mask"},
        params={"sym": "$$sym", "range": "$$refine_range", "step": "$$refine_step", "lowpass": "$$lowpass"},
        threads="$$threads", outputs={"run_half1_class001_unfil.mrc": "halfmap", "run_data.star": "particles"},
        help="cryopares_localrefine: local refinement and half maps")
    post = postprocess_job("postprocess", half1=scheme_ref(name, "localrefine", "run_half1_class001_unfil.mrc"),
                           mask="$$mask", angpix="$$angpix", auto_bfac="$$auto_bfac",
                           help="RELION PostProcess of the half maps")
    return Scheme(name, "Screen a growing particle set on the fly: infer, refine, reconstruct, PostProcess",
                  variables, _loop_operators(), [infer, localrefine, post],
                  _loop_edges(["infer", "localrefine", "postprocess"]), start="wait_for_data")


def reconstruct_loop_scheme(name: str = "cryopares_reconstruct_loop") -> Scheme:
    """The same loop with only ``cryopares_reconstruct`` (continue) -> PostProcess: half maps of a
    growing STAR of particles that already have poses (used to test the loop machinery)."""
    variables = _screen_variables(name)
    recon = external_job("reconstruct", "cryopares_reconstruct", mode="continue", inputs={"in_part": "$$particles"},
                         params={"sym": "$$sym"}, threads="$$threads",
                         outputs={"run_half1_class001_unfil.mrc": "halfmap"},
                         help="cryopares_reconstruct: half maps, only new particles inserted")
    post = postprocess_job("postprocess", half1=scheme_ref(name, "reconstruct", "run_half1_class001_unfil.mrc"),
                           mask="$$mask", angpix="$$angpix", auto_bfac="$$auto_bfac")
    return Scheme(name, "Half maps of a growing particle set (poses given), PostProcess each pass",
                  variables, _loop_operators(), [recon, post], _loop_edges(["reconstruct", "postprocess"]),
                  start="wait_for_data")


#: The schemes ``cryopares_install_scheme`` knows: name -> builder(name).
SHIPPED: dict[str, Callable[[str], Scheme]] = {
    "cryopares_train": train_scheme,
    "cryopares_screen": screen_scheme,
}

#: Also installable, not shipped as files under schemes/.
EXTRA: dict[str, Callable[[str], Scheme]] = {
    "cryopares_reconstruct_loop": reconstruct_loop_scheme,
}


def build_scheme(template: str, name: str | None = None) -> Scheme:
    """The scheme ``template`` (a key of :data:`SHIPPED` or :data:`EXTRA`), under ``name``."""
    builders = {**SHIPPED, **EXTRA}
    if template not in builders:
        raise KeyError(f"unknown scheme {template!r}; known: {', '.join(builders)}")
    return builders[template](name or template)
