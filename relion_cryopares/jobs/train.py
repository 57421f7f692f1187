"""cryopares_train: train the cryoPARES pose networks on aligned particles (a RELION External job).

::

    cryopares_train --o External/job020/ --in_parts Refine3D/job010/run_data.star [--in_3dref apo.mrc]
                    --sym D2 [--preset auto|tiny|paper] [--epochs N] [--box_nnet PX] [--angpix_nnet 1.5]
                    [--particle_diameter ANG] [--junk_parts Select/job005/rejected.star]
                    [--init_model DIR] [--batch_size 32] [--num_workers N] [--j N]

Two independent models, one per half set (``rlnRandomSubset``; assigned with a fixed seed where
absent), each trained on 70 % of its half set and validated on the rest (seeded). With
``--in_3dref`` each model first trains for a few epochs on particles simulated from that map at the
training poses and CTFs. At the end each model's pruning normaliser is fitted on its validation
particles and the z-score threshold is set from ``--junk_parts`` (when given: the threshold that
best separates validation particles from held-out junk, Youden's J, but never above the 1 % quantile
of the validation z-scores) or from the validation distribution (its 0.5 % quantile): the network is
the first, lenient stage of two (cryopares_localrefine's refinement z-score is the second,
:func:`relion_cryopares.pruning.network_threshold`). Known junk also trains the networks: 70 % of it (by hashed image name) is
shown to both models during training with a loss that pushes their output towards the uniform
distribution (outlier exposure, so junk gets low pruning scores); the other 30 % sets the
threshold. Outputs: the model directory (``cryopares_model.json``, ``half1/``,
``half2/``, see :mod:`relion_cryopares.jobs._modeldir`), ``learning_curves.png``, a line per
epoch in ``run.out``, and half maps of each half set's training particles at their RELION poses
(``run_half1_class001_unfil.mrc`` etc.: the default reference for local refinement).

``--preset auto`` (the default) trains the paper's network when the training device is a CUDA GPU
and the tiny one otherwise, with a warning in ``run.out`` (on a CPU an epoch of the paper network
takes hours); ``--preset paper`` forces it. The preset used is logged and written, with the other
resolved settings, under ``"resolved"`` in ``cryopares_config.json``. Within each epoch ``run.out``
gets a progress line about every 30 s (batches, particles/s, ETA of the epoch and an upper bound on
that of the whole training).

A continue (or a re-run after a crash) resumes each half from its last checkpoint
(``half<k>/train/checkpoint.pt``) and skips halves already finished; with ``--preset auto`` it keeps
the preset of the run it resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from torch.utils.data import DataLoader

from relion_cryopares.data import (BatchIndexSampler, ImageStackReader, ParticleDataset, PreprocessConfig,
                                   SimulatedParticleDataset, ensure_random_subsets, particle_weights,
                                   read_particle_star, read_volume)
from relion_cryopares.data import check_image_indices
from relion_cryopares.errors import InputError
from relion_cryopares.fourier import FourierAccumulator
from relion_cryopares.geometry import symmetry_matrices
from relion_cryopares.jobs._halfmaps import (ReconstructionGrid, finish_half_maps, insert_particles,
                                             iterate_batches, write_half_map_outputs)
from relion_cryopares.jobs._modeldir import TRAINING_FILE, half_dir, load_model_dir, save_half_model
from relion_cryopares.model import ModelConfig, PoseModel, state_dict_bytes
from relion_cryopares.pruning import DirectionalNormaliser, auroc, network_threshold
from relion_cryopares.relion import (CONFIG_FILE, Input, JobContext, JobSpec, OutputNode, Param, read_json, run_job,
                                     write_json_atomic)
from relion_cryopares.training import (HalfTrainer, TrainingConfig, evaluate, maybe_in_memory, split_half,
                                       split_junk, write_learning_curves)

SPEC = JobSpec(
    name="cryopares_train",
    description="Train the cryoPARES pose networks (one per half set) on aligned particles.",
    inputs=(Input("in_parts", required=True, help="aligned particles (e.g. Refine3D run_data.star)"),
            Input("in_3dref", help="map for pre-training on simulated particles (optional)")),
    params=(
        Param("sym", "str", "C1", help="point-group symmetry (RELION name)"),
        Param("preset", "choice", "auto", choices=("auto", "tiny", "paper"),
              help="model and training sizes: paper (cryoPARES; needs a GPU), tiny (CPU demo, tests) or "
                   "auto (paper on a CUDA GPU, else tiny)"),
        Param("epochs", "int", None, minimum=0, help="maximum training epochs (default: the preset's)"),
        Param("box_nnet", "int", None, minimum=32,
              help="network input box in px (default: the preset's, at most the data's field of view)"),
        Param("angpix_nnet", "float", None, minimum=0.1,
              help="pixel size of the network input in A (default: 1.5 for paper; for tiny, the "
                   "particles' field of view fits the box)"),
        Param("particle_diameter", "float", None, minimum=1.0,
              help="particle diameter in A (default: 80 % of the field of view)"),
        Param("junk_parts", "str", None,
              help="STAR file of known junk particles (70 % trains the networks to spread their probability "
                   "on junk, 30 % sets the pruning threshold)"),
        Param("junk_loss_weight", "float", None, minimum=0.0,
              help="weight of the junk (outlier-exposure) loss; 0: junk only sets the threshold "
                   "(default: 0.5)"),
        Param("init_model", "str", None, help="fine-tune from this cryopares_train job directory"),
        Param("batch_size", "int", None, minimum=1, help="particles per batch (default: the preset's)"),
        Param("num_workers", "int", -1, minimum=-1, help="data-loading processes (-1: automatic)"),
        Param("pretrain_epochs", "int", None, minimum=0,
              help="epochs on simulated particles when --in_3dref is given (default: the preset's)"),
        Param("device", "str", "auto", help="torch device: auto, cpu, cuda, cuda:1, ..."),
        Param("seed", "int", 0, help="random seed (splits, initialisation, augmentation)"),
    ),
)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device: {exc}") from None


def _num_workers(value: int) -> int:
    if value >= 0:
        return value
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def _previous_preset(ctx: JobContext) -> str | None:
    """The preset ``--preset auto`` resolved to in the previous run in this directory, when there is
    training of it to resume (so that a continue on another machine does not start over)."""
    previous = ctx.previous_config or {}
    preset = (previous.get("resolved") or {}).get("preset")
    if (previous.get("params") or {}).get("preset") != "auto" or preset not in ("tiny", "paper"):
        return None
    started = any((half_dir(ctx.output_dir, h) / name).exists() for h in (1, 2)
                  for name in ("train/checkpoint.pt", TRAINING_FILE))
    return preset if started else None


def _resolve_preset(ctx: JobContext, device: torch.device) -> str:
    """``--preset``, with ``auto`` resolved: paper on a CUDA GPU, else tiny (with a warning)."""
    choice = ctx.params["preset"]
    if choice != "auto":
        return choice
    previous = _previous_preset(ctx)
    if previous is not None:
        ctx.log.info("--preset auto: %s, as in the run whose training this one resumes", previous)
        return previous
    if device.type == "cuda":
        ctx.log.info("--preset auto: paper (training on the GPU %s)", device)
        return "paper"
    ctx.log.warning("--preset auto: training on the CPU (device %s), so with the tiny preset (a small network "
                    "for tests and demos, less accurate); the paper preset needs a GPU (on a CPU one epoch takes "
                    "hours). To train the paper network here anyway, give --preset paper", device)
    return "tiny"


def _record_resolved(ctx: JobContext, **values) -> None:
    """Add ``values`` under ``"resolved"`` in this run's ``cryopares_config.json``."""
    config = read_json(ctx.path(CONFIG_FILE), default=None) or {}
    config["resolved"] = {**(config.get("resolved") or {}), **values}
    write_json_atomic(ctx.path(CONFIG_FILE), config)


def _configs(ctx: JobContext, star, init, preset: str) -> tuple[PreprocessConfig, ModelConfig, TrainingConfig]:
    p = ctx.params
    overrides = {k: p[k] for k in ("epochs", "batch_size", "pretrain_epochs", "junk_loss_weight")
                 if p[k] is not None}
    train_cfg = TrainingConfig.preset(preset, seed=p["seed"], **overrides)
    if init is not None:
        if any(p[k] is not None for k in ("box_nnet", "particle_diameter")):
            ctx.log.warning("--init_model: using the preprocessing of %s (box %d px at %.3f A/px)",
                            init.path, init.preprocess.box_nnet, init.preprocess.angpix_nnet)
        first = next(iter(init.halves.values()))
        return init.preprocess, first.model_config, train_cfg
    fov_angstrom = float(np.min(star.image_size_px() * star.pixel_size_angstrom()))
    preset_box = ModelConfig.preset(preset).box
    if p["angpix_nnet"] is not None:
        angpix = float(p["angpix_nnet"])
    elif preset == "paper":
        angpix = 1.5
    else:  # tiny: the whole field of view in the (small) box, never finer than the data
        angpix = max(float(np.max(star.pixel_size_angstrom())), fov_angstrom / (p["box_nnet"] or preset_box))
    fov_px = int(fov_angstrom / angpix) // 2 * 2
    box = p["box_nnet"] or max(32, min(preset_box, fov_px))
    diameter = p["particle_diameter"] or 0.8 * min(box * angpix, fov_angstrom)
    if p["particle_diameter"] is None:
        ctx.log.warning("--particle_diameter not given: using %.0f A (80 %% of the field of view)",
                        diameter)
    if np.max(star.pixel_size_angstrom()) > angpix * 1.01:
        ctx.log.warning("the particles (%.3f A/px) are upsampled to --angpix_nnet %.3f A/px",
                        float(np.max(star.pixel_size_angstrom())), angpix)
    pre = PreprocessConfig(box_nnet=box, particle_diameter_angstrom=diameter, angpix_nnet=angpix)
    model_cfg = ModelConfig.preset(preset, box=box, in_channels=pre.n_channels)
    return pre, model_cfg, train_cfg


def _names_digest(star, rows: np.ndarray) -> str:
    names = "\n".join(np.asarray(star.image_names(), dtype=object)[rows].tolist())
    return hashlib.sha256(names.encode()).hexdigest()[:16]


def _train_one_half(ctx: JobContext, half: int, star, pre, model_cfg, train_cfg, sym_name, sym,
                    device, workers, volume, init, junk, curves) -> dict:
    split = split_half(star, half, train_cfg.val_fraction, train_cfg.min_weight, train_cfg.seed)
    if len(split.train) < 2 or len(split.val) < 1:
        raise InputError(f"half set {half} has too few particles to train ({len(split.train)} training, "
                         f"{len(split.val)} validation)", ctx.args.in_parts)
    key = {"model": model_cfg.to_dict(), "preprocess": pre.to_dict(),
           "training": {k: v for k, v in train_cfg.to_dict().items() if k not in ("epochs", "cache_mb")},
           "symmetry": sym_name, "train": _names_digest(star, split.train), "val": _names_digest(star, split.val),
           "init_model": str(init.path) if init is not None else None,
           "in_3dref": str(ctx.args.in_3dref) if volume is not None else None,
           "junk_parts": ctx.params["junk_parts"], "epochs": train_cfg.epochs}
    hdir = half_dir(ctx.output_dir, half)
    done = read_json(hdir / TRAINING_FILE, default=None)
    if isinstance(done, dict) and done.get("key") == key and (hdir / "model.pt").is_file():
        ctx.log.info("half %d: already trained (best validation median error %.2f deg); skipping",
                     half, done.get("best_val_median_error_deg", float("nan")))
        curves[half] = done.get("curves", {})
        return done
    ctx.log.info("half %d: %d training, %d validation particles (%d dropped with %s < %g)", half,
                 len(split.train), len(split.val), len(split.dropped), "rlnMaxValueProbDistribution",
                 train_cfg.min_weight)
    torch.manual_seed(train_cfg.seed * 1000 + half)
    model = PoseModel(model_cfg)
    if init is not None:
        source = init.halves.get(half) or next(iter(init.halves.values()))
        model.load_state_dict(source.model.state_dict())
        ctx.log.info("half %d: initialised from %s (half %d)", half, init.path, source.half)
    cache = train_cfg.cache_mb
    train_ds = maybe_in_memory(ParticleDataset(star, split.train, pre, finish=False), pre, False, cache, workers)
    val_ds = maybe_in_memory(ParticleDataset(star, split.val, pre, finish=False), pre, True, cache, workers)
    pretrain_ds = None
    if volume is not None and train_cfg.pretrain_epochs > 0:
        vol, vol_px = volume
        pretrain_ds = SimulatedParticleDataset(vol, vol_px, star, split.train, pre, snr=train_cfg.pretrain_snr,
                                               seed=train_cfg.seed * 1000 + half)

    junk_ds, junk_holdout = None, junk
    if junk is not None:
        exposure, held = split_junk(junk.image_names(), train_cfg.junk_holdout_fraction)
        if train_cfg.junk_loss_weight > 0 and len(exposure) and len(held):
            junk_ds = maybe_in_memory(ParticleDataset(junk, exposure, pre, finish=False), pre, False, cache,
                                      workers)
            junk_holdout = junk.select(held)
            ctx.log.info("half %d: %d junk particles shown to the network (outlier exposure), %d held out "
                         "for the pruning threshold", half, len(exposure), len(held))

    def on_epoch(c):
        curves[half] = c
        write_learning_curves(ctx.path("learning_curves.png"), curves)

    trainer_key = {k: v for k, v in key.items() if k != "epochs"}  # more epochs on a continue: train on
    trainer = HalfTrainer(model, train_ds, val_ds, train_cfg, pre, sym, hdir / "train", trainer_key,
                          pretrain_ds=pretrain_ds, junk_ds=junk_ds, device=device, num_workers=workers, half=half,
                          should_abort=ctx.abort_requested, on_epoch=on_epoch, logger=ctx.log,
                          later_halves=2 - half)
    result = trainer.fit()
    curves[half] = result.curves
    # pruning: directional normaliser on the validation particles, threshold from junk or validation
    def run(ds):
        loader = DataLoader(ds, sampler=BatchIndexSampler(len(ds), train_cfg.val_batch_size), batch_size=None,
                            num_workers=0 if not isinstance(ds, ParticleDataset) else workers)
        return evaluate(result.model, loader, sym, device, train_cfg.label_smoothing)

    val = run(val_ds)
    normaliser = DirectionalNormaliser.fit(val.scores, val.matrices)
    z_val = normaliser.zscore(val.scores, val.matrices)
    summary = {**result.summary(), "key": key, "n_train": int(len(split.train)), "n_val": int(len(split.val)),
               "n_dropped": int(len(split.dropped)), "val_median_error_deg": val.median_error_deg,
               "state_dict_bytes": state_dict_bytes(result.model), "training_config": train_cfg.to_dict()}
    if junk_holdout is not None:
        jv = run(ParticleDataset(junk_holdout, None, pre, finish=True))
        z_junk = normaliser.zscore(jv.scores, jv.matrices)
        # the first of two pruning stages: lenient (relion_cryopares.pruning.network_threshold)
        threshold, source = network_threshold(z_val, z_junk)
        summary["junk_auroc"] = auroc(z_val, z_junk)
        summary["junk_rejected_fraction"] = float((z_junk < threshold).float().mean())
        summary["n_junk_exposure"] = len(junk) - len(junk_holdout)
        ctx.log.info("half %d: pruning threshold z = %.2f from %d junk particles (AUROC %.3f, %.1f %% of junk "
                     "rejected)", half, threshold, len(junk_holdout), summary["junk_auroc"],
                     100 * summary["junk_rejected_fraction"])
    else:
        threshold, source = network_threshold(z_val)
        ctx.log.info("half %d: pruning threshold z = %.2f (keeps %.1f %% of validation particles)", half, threshold,
                     100 * float((z_val >= threshold).float().mean()))
    summary["kept_validation_fraction"] = float((z_val >= threshold).float().mean())
    save_half_model(ctx.output_dir, half, result.model.cpu(), model_cfg, pre, normaliser, threshold, source,
                    sym_name, summary)
    ctx.log.info("half %d: best validation median error %.2f deg at epoch %d; model saved in %s "
                 "(%.1f MB)", half, result.best_median_error_deg, result.best_epoch, hdir,
                 summary["state_dict_bytes"] / 2 ** 20)
    return summary


def _half_maps(ctx: JobContext, star, sym, min_weight: float) -> list[OutputNode]:
    grid = ReconstructionGrid.of(star)
    subsets = star.random_subset()
    keep = particle_weights(star) >= min_weight
    accs = {h: FourierAccumulator(grid.box) for h in (1, 2)}
    rows_all = np.flatnonzero(keep)
    progress = ctx.progress(len(rows_all))
    with ImageStackReader() as reader:
        for batch in iterate_batches(rows_all, 256):
            for h in (1, 2):
                rows = batch[subsets[batch] == h]
                if len(rows):
                    insert_particles(accs[h], star, rows, reader, grid, sym)
            progress.update(len(batch))
            ctx.check_abort()
    progress.finish()
    result = finish_half_maps(accs[1], accs[2], grid)
    paths = write_half_map_outputs(ctx.output_dir, result, grid)
    ctx.log.info("half maps of the training particles: FSC 0.143 at %.2f A", result.resolution_0143_angstrom)
    return [OutputNode(paths["half1"], "halfmap"), OutputNode(paths["map"], "map")]


def _body(ctx: JobContext) -> list[OutputNode]:
    star_path = ctx.args.in_parts
    star = ensure_random_subsets(read_particle_star(star_path))
    check_image_indices(star)  # every image in its stack, before any work starts
    if len(star) == 0:
        raise InputError("no particles", star_path)
    if not star.has_poses():
        raise InputError("particles have no poses (rlnAngleRot/Tilt/Psi): train on aligned particles", star_path)
    sym_name = ctx.params["sym"].strip().upper()
    sym = symmetry_matrices(sym_name)
    init = None
    if ctx.params["init_model"]:
        init = load_model_dir(ctx.params["init_model"])
    device = _device(ctx.params["device"])
    preset = _resolve_preset(ctx, device)
    pre, model_cfg, train_cfg = _configs(ctx, star, init, preset)
    workers = _num_workers(ctx.params["num_workers"])
    volume = None
    if ctx.args.in_3dref is not None:
        vol, vol_px = read_volume(ctx.args.in_3dref)
        if vol_px <= 0:
            raise InputError("the map has no pixel size in its header", ctx.args.in_3dref)
        volume = (torch.from_numpy(np.array(vol, dtype=np.float32)), vol_px)
    junk = None
    if ctx.params["junk_parts"]:
        junk_path = Path(ctx.params["junk_parts"])
        junk = read_particle_star(junk_path)
        check_image_indices(junk)
        if len(junk) == 0:
            raise InputError("no particles", junk_path)
    ctx.log.info("%d particles; network input %d px at %.3f A/px, particle diameter %.0f A; symmetry %s; "
                 "preset %s; device %s, %d data workers", len(star), pre.box_nnet, pre.angpix_nnet,
                 pre.particle_diameter_angstrom, sym_name, preset, device, workers)
    ctx.log.info("training configuration: %s", json.dumps(train_cfg.to_dict(), sort_keys=True))
    _record_resolved(ctx, preset=preset, device=str(device), preprocess=pre.to_dict(), model=model_cfg.to_dict(),
                     training=train_cfg.to_dict())
    curves: dict[int, dict] = {}
    for half in (1, 2):
        _train_one_half(ctx, half, star, pre, model_cfg, train_cfg, sym_name, sym, device, workers,
                        volume, init, junk, curves)
        ctx.check_abort()
    write_learning_curves(ctx.path("learning_curves.png"), curves)
    return _half_maps(ctx, star, sym, train_cfg.min_weight)


def main(argv: list[str] | None = None) -> int:
    return run_job(SPEC, _body, argv)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
