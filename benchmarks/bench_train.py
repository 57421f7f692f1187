"""Training and inference throughput of the pose network, tiny and paper sizes, on this machine.

    python -m benchmarks.bench_train [--batches 3] [--paper_batches 2] [--paper_batch 8]

For each size: preprocessing (raw images -> network input: Fourier rescale, normalisation,
phase-flip channel, crop, mask, filter bank), one training step (augmentation of ``n_copies``
copies per particle, forward, loss, backward, optimizer step) and inference (forward in eval mode +
``predict_poses``), timed over a few batches after one warm-up batch. Particles/s counts particles
(a training particle is ``n_copies`` images). The paper model runs a reduced batch of
``--paper_batch`` particles (x 4 copies) so that a few batches finish on a CPU; its build time
(fixed tables, from the on-disk cache after the first build) and state_dict size are reported too.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks._common import write_results
from relion_cryopares.ctf import CtfParameters
from relion_cryopares.data import PreprocessConfig, finish_channels, prepare_channels
from relion_cryopares.geometry import random_rotations
from relion_cryopares.model import ModelConfig, PoseModel, grid_targets, pose_cross_entropy, predict_poses
from relion_cryopares.model import state_dict_bytes
from relion_cryopares.training import Augmenter, TrainingConfig

#: (name, data box px, data pixel size A, network box px, network pixel size A)
SIZES = {"tiny": (64, 5.7, 64, 5.7), "paper": (256, 1.0, 160, 1.5)}


def _timed(fn, batches: int) -> float:
    """Seconds per call of ``fn``, after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(batches):
        fn()
    return (time.perf_counter() - t0) / batches


def bench(name: str, batch: int, batches: int) -> tuple[list[dict], dict]:
    data_box, data_px, box, angpix = SIZES[name]
    model_cfg = ModelConfig.preset(name, box=box)
    train_cfg = TrainingConfig.preset(name)
    pre = PreprocessConfig(box_nnet=box, particle_diameter_angstrom=0.8 * box * angpix, angpix_nnet=angpix)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    model = PoseModel(model_cfg)
    build_s = time.perf_counter() - t0
    raw = torch.randn(batch, data_box, data_box, generator=gen)
    ctf = CtfParameters.constant(batch, defocus_u_angstrom=15000.0, pixel_size_angstrom=data_px)
    pix = torch.full((batch,), data_px)
    flipped = torch.zeros(batch, dtype=torch.bool)
    two = prepare_channels(raw, pix, ctf, flipped, pre)
    poses = random_rotations(batch, generator=gen).float()
    augment = Augmenter(train_cfg.augment)
    optimizer = torch.optim.RAdam(model.parameters(), lr=train_cfg.learning_rate)

    pre_batch = 32  # preprocessing runs in data-loader workers, in batches of its own
    raw32 = torch.randn(pre_batch, data_box, data_box, generator=gen)
    ctf32 = CtfParameters.constant(pre_batch, defocus_u_angstrom=15000.0, pixel_size_angstrom=data_px)

    def preprocess():
        finish_channels(prepare_channels(raw32, torch.full((pre_batch,), data_px), ctf32,
                                         torch.zeros(pre_batch, dtype=torch.bool), pre), pre)

    def train_step():
        model.train()
        x = two.repeat_interleave(train_cfg.n_copies, 0)
        m = poses.repeat_interleave(train_cfg.n_copies, 0)
        x, m = augment(x, m, gen)
        loss = pose_cross_entropy(model(finish_channels(x, pre)), grid_targets(m, None, model_cfg.grid_order))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()

    inputs = finish_channels(two, pre)

    @torch.no_grad()
    def infer():
        model.eval()
        predict_poses(model(inputs))

    rows = []
    for stage, fn, n, images in (("preprocess", preprocess, pre_batch, pre_batch),
                                 ("train step", train_step, batch, batch * train_cfg.n_copies),
                                 ("inference", infer, batch, batch)):
        s = _timed(fn, batches)
        rows.append({"size": name, "stage": stage, "box_px": box, "particles_per_batch": n,
                     "images_per_batch": images, "s_per_batch": s, "particles_per_s": n / s,
                     "images_per_s": images / s})
    facts = {"size": name, "parameters": sum(p.numel() for p in model.parameters()),
             "state_dict_MB": state_dict_bytes(model) / 2 ** 20, "build_s": build_s,
             "grid_rotations": model_cfg.n_rotations}
    return rows, facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=3, help="timed batches (tiny)")
    ap.add_argument("--paper_batches", type=int, default=2, help="timed batches (paper)")
    ap.add_argument("--paper_batch", type=int, default=8, help="particles per batch (paper)")
    args = ap.parse_args()
    rows, facts = bench("tiny", 32, args.batches)
    paper_rows, paper_facts = bench("paper", args.paper_batch, args.paper_batches)
    rows += paper_rows
    notes = ("Raw images: tiny 64 px at 5.7 A/px (no rescaling), paper 256 px at 1.0 A/px rescaled to 1.5 A/px "
             "and cropped to 160 px. Training copies per particle: tiny 1, paper 4 (augmented). "
             "Inference = forward + predict_poses (top-k, neighbour average, pruning score).\n\n"
             "| size | parameters | state_dict (MB) | build (s) | grid rotations |\n|---|---|---|---|---|\n"
             + "\n".join(f"| {f['size']} | {f['parameters']:,} | {f['state_dict_MB']:.1f} | {f['build_s']:.1f} | "
                         f"{f['grid_rotations']:,} |" for f in (facts, paper_facts)))
    load = os.getloadavg()
    notes += (f"\n\nLoad average during the run: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min) on "
              f"{os.cpu_count()} cores: on a shared machine the numbers scale down with the load.")
    rows_out = [{**r, "s_per_batch": round(r["s_per_batch"], 3)} for r in rows]
    write_results("train", "Training and inference throughput (CPU)", rows_out, notes)


if __name__ == "__main__":
    main()
