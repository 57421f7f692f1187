"""cryopares_infer: one-pass poses and automatic pruning (a RELION External job), incremental.

::

    cryopares_infer --o External/job030/ --in_parts Extract/job007/particles.star --model External/job020/
                    [--sym D2] [--zscore_thr auto|none|<float>] [--top_k 5] [--reconstruct]
                    [--batch_size 64] [--num_workers -1] [--device auto|cpu|cuda] [--save_every 2048] [--j N]

Each particle goes through the model of its half set (``rlnRandomSubset``, kept, or assigned from a
hash of its image name, stable across runs): half 1 through the half-1 model, half 2 through the
half-2 model, so the gold standard of the training is preserved. The network predicts the
orientation (``rlnAngleRot/Tilt/Psi``), its probability (``rlnParticleFigureOfMerit``) and a pruning
score (``rlnCryoparesScore``) whose directional robust z-score (``rlnCryoparesZscore``) decides:
``z >= threshold`` -> ``particles.star``, else ``rejected.star`` (``rlnCryoparesRejectReason``
``network``). A bad image (NaN/Inf pixels, a constant image or background) never ends the job: it
is not predicted, goes to ``rejected.star`` with reason ``bad_image`` and is counted in run.out. A
particle whose image is not in its stack stops the job before any work starts (one line in run.err).
**Shifts are not estimated**: the input's ``rlnOriginXAngst/YAngst`` are kept (run
cryopares_localrefine or Refine3D for them).

``--zscore_thr auto`` uses the threshold stored with each half model by cryopares_train (from junk
particles when training had them, else from the validation z-scores); ``none`` keeps every particle;
a number is used for both halves. ``--sym`` defaults to the model's symmetry and must match it.
``--top_k K`` (default 5) adds the next ``K - 1`` poses as ``rlnCryoparesTop<k>...`` columns (see
:mod:`relion_cryopares.jobs._infer_outputs`). ``--reconstruct`` also writes gold-standard half maps
of the kept particles (``run_half1_class001_unfil.mrc``, ... as cryopares_reconstruct).

Incremental (on-the-fly): results are stored per chunk of ``--save_every`` particles in
``cryopares_infer_results/`` (atomic files); a re-run on the same or a grown STAR (a RELION
continue, a Scheme loop) predicts only particles not stored yet and rebuilds every output from the
input rows and all stored results; a run killed mid-way loses at most one chunk. The half maps grow
by the newly kept particles only. Plots: ``zscore_histogram.png``, ``angular_distribution.png``.
Images are read and prepared in ``--num_workers`` worker processes (auto: ``--j`` - 1) while the
network runs, batch by batch, on the GPU when there is one.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pandas as pd
import torch

from relion_cryopares.data import (ParticleStar, PreprocessConfig, check_image_indices, ensure_random_subsets,
                                   read_particle_star)
from relion_cryopares.errors import InputError
from relion_cryopares.geometry import symmetry_matrices
from relion_cryopares.jobs._infer_chunks import ChunkStore, file_digest
from relion_cryopares.jobs._infer_halfmaps import reconstruct_kept
from relion_cryopares.jobs._infer_loader import iterate_prepared, make_batches
from relion_cryopares.jobs._infer_outputs import (log_rejections, match_results, result_columns,
                                                  split_with_reasons, with_bad_image_poses,
                                                  write_angular_distribution, write_star_with_comment,
                                                  write_zscore_histogram)
from relion_cryopares.jobs._infer_predict import IMAGE_PROBLEM, HalfPredictor, concat_results
from relion_cryopares.jobs._modeldir import ModelDir, half_dir, load_model_dir, read_model_dir_info
from relion_cryopares.pruning import parse_threshold_choice
from relion_cryopares.relion import Input, JobContext, JobSpec, OutputNode, Param, run_job, write_json_atomic

SUMMARY_FILE = "cryopares_infer_summary.json"
#: the particles' field of view may be this much smaller than the network's before it is an error
FOV_TOLERANCE = 0.02
#: particles with pixels this much coarser than the network's are refused (data lack its detail)
MAX_PIXEL_RATIO = 1.25

SPEC = JobSpec(
    name="cryopares_infer",
    description="cryoPARES poses (one network pass) and automatic pruning of junk particles; incremental.",
    inputs=(Input("in_parts", required=True, help="particle STAR file (e.g. Extract/jobNNN/particles.star)"),),
    params=(
        Param("model", "str", required=True, help="cryopares_train job directory (External/jobNNN/)"),
        Param("sym", "str", None, help="point-group symmetry; default and only allowed value: the model's"),
        Param("zscore_thr", "str", "auto", help="pruning threshold: auto (stored with the model), none, or a z"),
        Param("top_k", "int", 5, minimum=1, maximum=10,
              help="poses per particle written (extra columns): starting poses for cryopares_localrefine; "
                   "1: only the best"),
        Param("reconstruct", "bool", False, help="also reconstruct half maps of the kept particles"),
        Param("batch_size", "int", 64, minimum=1, help="particles per network batch"),
        Param("num_workers", "int", -1, minimum=-1, help="data-loading processes (-1: --j minus 1)"),
        Param("device", "choice", "auto", choices=("auto", "cpu", "cuda"), help="where the network runs"),
        Param("save_every", "int", 2048, minimum=1, help="particles per stored result chunk (for continue)"),
    ),
)


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU available to this torch")
    return torch.device("cuda" if choice in ("auto", "cuda") and torch.cuda.is_available() else "cpu")




def _thresholds(choice: str | float, md: ModelDir) -> tuple[dict[int, float], dict[int, str]]:
    """Per half model: the z threshold and where it came from."""
    if choice == "auto":
        return ({h: float(m.zscore_threshold) for h, m in md.halves.items()},
                {h: f"stored with the model ({m.threshold_source})" for h, m in md.halves.items()})
    if choice == "none":
        return {h: -math.inf for h in md.halves}, {h: "none: every particle kept" for h in md.halves}
    return {h: float(choice) for h in md.halves}, {h: "--zscore_thr" for h in md.halves}


def check_compatible(star: ParticleStar, pre: PreprocessConfig, model_path) -> None:
    """InputError unless the preprocessing can turn every optics group into the model's input
    (``pre``): the particles' field of view must cover the network's, their pixels must not be
    much coarser than the network's."""
    need = pre.box_nnet * pre.angpix_nnet
    for number, group in star.optics_groups().items():
        p, n = float(group.pixel_size_angstrom), float(group.image_size_px)
        if not (np.isfinite(n) and np.isfinite(p)):
            continue
        n = int(n)
        if n * p < need * (1.0 - FOV_TOLERANCE):
            raise InputError(
                f"optics group {number}: particles of {n} px at {p:.3f} A/px span {n * p:.0f} A but the model "
                f"{model_path} was trained on {pre.box_nnet} px at {pre.angpix_nnet:.3f} A/px ({need:.0f} A); "
                f"extract with a box of at least {math.ceil(need / p - 1e-6)} px", star.path)
        if p > MAX_PIXEL_RATIO * pre.angpix_nnet:
            raise InputError(
                f"optics group {number}: pixel size {p:.3f} A is coarser than the {pre.angpix_nnet:.3f} A/px "
                f"of the model {model_path}; the particles lack the detail it was trained on", star.path)


def _check_symmetry(requested: str | None, model_sym: str, model_path) -> str:
    model_sym = model_sym.strip().upper()
    if requested and requested.strip() and requested.strip().upper() != model_sym:
        raise InputError(f"--sym {requested} differs from the symmetry of the model {model_path}, "
                         f"{model_sym} (use a model trained for {requested}, or leave --sym out)")
    return model_sym


def _num_workers(ctx: JobContext) -> int:
    n = ctx.params["num_workers"]
    return max(0, min(ctx.threads - 1, 8)) if n < 0 else n


def _model_key(md: ModelDir, sym: str, top_k: int) -> dict:
    key = {"symmetry": sym, "top_k": top_k, "box_nnet": md.preprocess.box_nnet}
    for h in sorted(md.halves):
        folder = half_dir(md.path, h)
        key[f"half{h}"] = file_digest(folder / "model.pt") + ":" + file_digest(folder / "pruning.json")
    return key


def _predict_new(ctx: JobContext, star: ParticleStar, names: np.ndarray, todo: np.ndarray, halves: np.ndarray,
                 predictors: dict[int, HalfPredictor], store: ChunkStore, device: torch.device) -> float:
    """Predict ``todo`` rows chunk by chunk, each chunk stored as soon as it is complete; returns
    the seconds it took."""
    chunks = make_batches(todo, halves, ctx.params["batch_size"], ctx.params["save_every"])
    flat = [b for chunk in chunks for b in chunk]
    left = [len(c) for c in chunks]
    workers = _num_workers(ctx)
    ctx.log.info("predicting %d particles in %d batch(es), %d data-loading worker(s), network on %s",
                 len(todo), len(flat), workers, device)
    pending: list[tuple[np.ndarray, int, dict]] = []
    chunk_of = np.repeat(np.arange(len(chunks)), left)

    def flush() -> None:
        if pending:
            rows = np.concatenate([p[0] for p in pending])
            store.write(names[rows], np.concatenate([np.full(len(p[0]), p[1]) for p in pending]),
                        concat_results([p[2] for p in pending]))
            pending.clear()

    progress = ctx.progress(len(todo))
    t0 = time.perf_counter()
    try:
        preprocess = next(iter(predictors.values())).half_model.preprocess
        batches = iterate_prepared(star, flat, preprocess, workers, pin_memory=device.type == "cuda")
        for i, (batch, channels, problems) in enumerate(batches):  # bad images: not predicted
            pending.append((batch.rows, batch.half, predictors[batch.half].predict_usable(channels, problems)))
            progress.update(len(batch.rows))
            c = chunk_of[i]
            left[c] -= 1
            if left[c] == 0:
                flush()
            ctx.check_abort()
    finally:  # finished batches are kept, whatever stopped the loop
        flush()
    progress.finish()
    dt = time.perf_counter() - t0
    ctx.log.info("predicted %d particles in %.1f s (%.1f particles/s)", len(todo), dt, len(todo) / max(dt, 1e-9))
    return dt


def _body(ctx: JobContext) -> list[OutputNode]:
    t_start = time.perf_counter()
    star_path = ctx.args.inputs["in_parts"]
    star = ensure_random_subsets(read_particle_star(star_path))
    if len(star) == 0:
        raise InputError("no particles", star_path)
    check_image_indices(star)  # every image in its stack, before any work starts
    device = _device(ctx.params["device"])
    thr_choice = parse_threshold_choice(ctx.params["zscore_thr"], "--zscore_thr")
    info = read_model_dir_info(ctx.params["model"])  # cheap checks before the models load
    sym_name = _check_symmetry(ctx.params["sym"], str(info["symmetry"]), ctx.params["model"])
    check_compatible(star, PreprocessConfig.from_dict(info["preprocess"]), ctx.params["model"])
    sym = symmetry_matrices(sym_name)
    md = load_model_dir(ctx.params["model"], device=device)
    thresholds, sources = _thresholds(thr_choice, md)
    halves = star.random_subset()
    for h in np.unique(halves):
        md.half(int(h))  # InputError if the directory lacks the model of a half set in use
    top_k = ctx.params["top_k"]
    ctx.log.info("model %s: symmetry %s, network input %d px at %.3f A/px; poses only: the input's "
                 "origins (rlnOriginXAngst/YAngst) are kept", md.path, sym_name, md.preprocess.box_nnet,
                 md.preprocess.angpix_nnet)
    store = ChunkStore(ctx.output_dir, _model_key(md, sym_name, top_k))
    names = np.asarray(star.image_names(), dtype=object)
    todo = np.flatnonzero(~pd.Index(names).isin(store.done_names()))
    ctx.log.info("%d particles: %d with stored results, %d to predict", len(star), len(star) - len(todo), len(todo))
    predictors = {h: HalfPredictor(m, sym if sym.shape[0] > 1 else None, device, top_k)
                  for h, m in md.halves.items()}
    setup_s = time.perf_counter() - t_start
    predict_s = _predict_new(ctx, star, names, todo, halves, predictors, store, device) if len(todo) else 0.0

    results = store.load()
    index = match_results(names, results)
    if (index < 0).any():
        raise RuntimeError(f"{int((index < 0).sum())} particles have no stored result after prediction")
    problems = np.asarray(results[IMAGE_PROBLEM][index], dtype=str)
    bad = problems != ""  # bad images: never predicted, always rejected (reason bad_image)
    out = star.with_columns(**with_bad_image_poses(star, result_columns(results, index, top_k), bad))
    z = results["zscore"][index].astype(np.float64)
    keep = (z >= np.array([thresholds.get(1, np.inf), thresholds.get(2, np.inf)])[halves - 1]) & ~bad
    paths = {"kept": ctx.path("particles.star"), "rejected": ctx.path("rejected.star")}
    kept_star, rejected_star = split_with_reasons(out, keep, bad)
    write_star_with_comment(paths["kept"], kept_star)
    write_star_with_comment(paths["rejected"], rejected_star)
    summary = {"particles": int(len(star)), "kept": int(keep.sum()), "rejected": int((~keep).sum()),
               "symmetry": sym_name, "model": str(md.path), "device": str(device),
               "predicted_this_run": int(len(todo)), "setup_s": round(setup_s, 3), "predict_s": round(predict_s, 3),
               "particles_per_s": round(len(todo) / predict_s, 3) if predict_s > 0 else None, "halves": {}}
    for h in (1, 2):
        sel = halves == h
        if not sel.any():
            continue
        summary["halves"][h] = {"particles": int(sel.sum()), "kept": int(keep[sel].sum()),
                                "rejected": int((~keep[sel]).sum()), "zscore_threshold": thresholds[h],
                                "threshold_source": sources[h]}
        ctx.log.info("half %d: %d kept, %d rejected of %d (%.1f %% kept; z threshold %.3f, %s)", h,
                     keep[sel].sum(), (~keep[sel]).sum(), sel.sum(), 100.0 * keep[sel].mean(), thresholds[h], sources[h])
    ctx.log.info("total: %d kept -> %s, %d rejected -> %s", keep.sum(), paths["kept"], (~keep).sum(), paths["rejected"])
    summary["rejected_reasons"] = log_rejections(ctx.log, names, problems, keep, bad)
    write_zscore_histogram(ctx.path("zscore_histogram.png"), z[~bad], halves[~bad], keep[~bad],
                           {h: thresholds[h] for h in sorted(set(halves.tolist()))})
    write_angular_distribution(ctx.path("angular_distribution.png"), out.angles_deg()[keep])
    nodes = [OutputNode(paths["kept"], "particles", "cryopares"),
             OutputNode(paths["rejected"], "particles", "cryopares.rejected")]
    if ctx.params["reconstruct"]:
        nodes += reconstruct_kept(ctx, out.select(keep), {**store.key, "thresholds": thresholds}, sym, summary)
    write_json_atomic(ctx.path(SUMMARY_FILE), summary)
    return nodes


def main(argv: list[str] | None = None) -> int:
    return run_job(SPEC, _body, argv)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
