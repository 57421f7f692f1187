"""The training loop of one half model, with checkpoints to resume after a crash or an abort.

Every epoch ends with a checkpoint (``<workdir>/checkpoint.pt``: model, optimizer, scheduler,
epoch, best metric, curves) written atomically, and ``best_model.pt`` when the validation metric
improved. An abort request (``should_abort()`` true between batches) first applies the gradient
accumulated so far, then saves a mid-epoch checkpoint (batch position included; the batch order
of an epoch is a function of the seed and the epoch) and raises :class:`JobAborted`. A later call
with the same ``key`` resumes where the checkpoint left off. Within an epoch a progress line
(:class:`~relion_cryopares.training._progress.EpochProgress`) is logged every
:data:`~relion_cryopares.training._progress.PROGRESS_INTERVAL_S` seconds and after its last batch.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from relion_cryopares.data import BatchIndexSampler, PreprocessConfig, finish_channels
from relion_cryopares.errors import JobAborted
from relion_cryopares.model import PoseModel, grid_targets, pose_cross_entropy, uniform_kl

from ._augment import Augmenter
from ._checkpoint import BEST_MODEL_NAME, CHECKPOINT_NAME, load_checkpoint, save_atomic
from ._config import TrainingConfig
from ._evaluate import Evaluation, evaluate
from ._memory import InMemoryDataset
from ._progress import EpochProgress

log = logging.getLogger(__name__)

CURVE_KEYS = ("epoch", "phase", "lr", "train_loss", "val_loss", "val_median_error_deg",
              "val_mean_error_deg", "seconds")


@dataclass
class TrainResult:
    """The best model (eval mode) and the learning curves (lists per :data:`CURVE_KEYS`)."""

    model: PoseModel
    curves: dict[str, list] = field(default_factory=dict)
    best_epoch: int = 0
    best_median_error_deg: float = float("nan")
    stopped_early: bool = False
    resumed_from_epoch: int = 0

    def summary(self) -> dict:
        return {"curves": self.curves, "best_epoch": self.best_epoch,
                "best_val_median_error_deg": self.best_median_error_deg,
                "stopped_early": self.stopped_early, "epochs_run": len(self.curves.get("epoch", []))}


def _batch_seed(*parts) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _loader(dataset, sampler, num_workers: int, device: torch.device):
    workers = 0 if isinstance(dataset, InMemoryDataset) else num_workers
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=workers,
                      pin_memory=device.type == "cuda")


class HalfTrainer:
    """Trains ``model`` on ``train_ds`` (2-channel images, ``finish=False``), validating on
    ``val_ds`` (network input, ``finish=True``); optional ``pretrain_ds`` (simulated particles)
    for the first ``cfg.pretrain_epochs`` epochs; optional ``junk_ds`` (known junk, ``finish=False``):
    each training batch after pre-training adds ``cfg.junk_batch_size`` of them (drawn with the
    batch's seed) with the outlier-exposure loss :func:`~relion_cryopares.model.uniform_kl`
    weighted ``cfg.junk_loss_weight``. ``key`` (JSON-able) identifies the run: a
    checkpoint with another key is not resumed; a finished run resumed with more ``cfg.epochs`` (and
    not stopped early) trains on. ``later_halves``: how many more half models of this size are trained
    after this one (for the training ETA of the progress lines); ``progress_interval_s``: seconds
    between progress lines (None: :data:`~relion_cryopares.training._progress.PROGRESS_INTERVAL_S`)."""

    def __init__(self, model: PoseModel, train_ds, val_ds, cfg: TrainingConfig, pre: PreprocessConfig,
                 symmetry: torch.Tensor | None, workdir: str | Path, key: dict, *, pretrain_ds=None, junk_ds=None,
                 device: str | torch.device = "cpu", num_workers: int = 0, half: int = 1,
                 should_abort: Callable[[], bool] = lambda: False,
                 on_epoch: Callable[[dict], None] | None = None, logger: logging.Logger | None = None,
                 later_halves: int = 0, progress_interval_s: float | None = None):
        self.model, self.train_ds, self.val_ds, self.pretrain_ds = model, train_ds, val_ds, pretrain_ds
        self.junk_ds = junk_ds if junk_ds is not None and len(junk_ds) > 0 and cfg.junk_loss_weight > 0 else None
        self.cfg, self.pre, self.key, self.half = cfg, pre, key, half
        self.device = torch.device(device)
        self.symmetry = None if symmetry is None or symmetry.shape[0] == 1 else symmetry.to(self.device)
        self.workdir = Path(workdir)
        self.num_workers, self.should_abort, self.on_epoch = num_workers, should_abort, on_epoch
        self.log = logger or log
        self.later_halves, self.progress_interval_s = later_halves, progress_interval_s
        self.validation_s = 0.0
        self.augment = Augmenter(cfg.augment)
        self.model.to(self.device)
        self.optimizer = torch.optim.RAdam(model.parameters(), lr=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience)
        self.n_pretrain = cfg.pretrain_epochs if pretrain_ds is not None else 0
        self.curves: dict[str, list] = {k: [] for k in CURVE_KEYS}
        self.epoch, self.step = 0, 0
        self.best_metric, self.best_epoch, self.stale = math.inf, 0, 0
        self.loss_sum, self.weight_sum, self.n_acc = 0.0, 0.0, 0
        self.finished = self.stopped_early = False
        self.resumed_from = 0

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.workdir / CHECKPOINT_NAME

    def _state(self) -> dict:
        return {"key": self.key, "epoch": self.epoch, "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "best_metric": self.best_metric,
                "best_epoch": self.best_epoch, "stale": self.stale, "curves": self.curves,
                "loss_sum": self.loss_sum, "weight_sum": self.weight_sum, "finished": self.finished,
                "stopped_early": self.stopped_early}

    def save(self) -> None:
        save_atomic(self._state(), self.checkpoint_path)

    def resume(self) -> bool:
        """Load the checkpoint if it belongs to this run; True when one was loaded."""
        state = load_checkpoint(self.checkpoint_path, map_location=self.device)
        if state is None:
            return False
        if state.get("key") != self.key:
            self.log.warning("half %d: %s was made with other settings; training from the start",
                             self.half, self.checkpoint_path)
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_metric, self.best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        self.stale, self.curves = int(state["stale"]), state["curves"]
        self.loss_sum, self.weight_sum = float(state["loss_sum"]), float(state["weight_sum"])
        self.stopped_early = bool(state.get("stopped_early", False))
        self.finished = self.stopped_early or self.epoch >= self.total_epochs  # more epochs: go on
        self.resumed_from = self.epoch
        self.log.info("half %d: resuming from the checkpoint after epoch %d%s", self.half, self.epoch,
                      f" (batch {self.step} of epoch {self.epoch + 1})" if self.step else "")
        return True

    # ------------------------------------------------------------------ one batch
    def _junk_batch(self, gen: torch.Generator) -> torch.Tensor:
        """``cfg.junk_batch_size`` augmented junk images (2-channel, not finished)."""
        n = len(self.junk_ds)
        pick = torch.randint(n, (min(self.cfg.junk_batch_size, n),), generator=gen).numpy()
        x = self.junk_ds[pick]["images"].to(self.device)
        x, _ = self.augment(x, torch.eye(3, device=self.device).expand(x.shape[0], 3, 3), gen)
        return x

    def _train_batch(self, batch: dict, epoch: int, step: int) -> None:
        cfg = self.cfg
        x = batch["images"].to(self.device, non_blocking=True)
        mats = batch["matrices"].to(self.device)
        w = batch["weights"].to(self.device)
        if cfg.n_copies > 1:
            x, mats, w = (t.repeat_interleave(cfg.n_copies, 0) for t in (x, mats, w))
        gen = torch.Generator().manual_seed(_batch_seed(cfg.seed, self.half, epoch, step))
        x, mats = self.augment(x, mats, gen)
        n_good = x.shape[0]
        with_junk = self.junk_ds is not None and epoch >= self.n_pretrain
        if with_junk:
            x = torch.cat([x, self._junk_batch(gen)])
        logits = self.model(finish_channels(x, self.pre))
        targets = grid_targets(mats, self.symmetry, self.model.config.grid_order)
        loss = pose_cross_entropy(logits[:n_good], targets, w, cfg.label_smoothing)
        if with_junk:
            loss = loss + cfg.junk_loss_weight * uniform_kl(logits[n_good:])
        (loss / cfg.accumulate_batches).backward()
        self.loss_sum += float(loss.detach()) * n_good
        self.weight_sum += n_good
        self.n_acc += 1
        if self.n_acc >= cfg.accumulate_batches:
            self._optimizer_step()

    def _optimizer_step(self) -> None:
        if self.n_acc == 0:
            return
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.n_acc = 0

    # ------------------------------------------------------------------ epochs
    def _validate(self) -> Evaluation:
        sampler = BatchIndexSampler(len(self.val_ds), self.cfg.val_batch_size)
        return evaluate(self.model, _loader(self.val_ds, sampler, self.num_workers, self.device),
                        self.symmetry, self.device, self.cfg.label_smoothing)

    def _run_epoch(self, epoch: int) -> None:
        pretrain = epoch < self.n_pretrain
        ds = self.pretrain_ds if pretrain else self.train_ds
        sampler = BatchIndexSampler(len(ds), self.cfg.batch_size, shuffle=True,
                                    seed=self.cfg.seed * 1000 + self.half, epoch=epoch,
                                    start_batch=self.step, drop_last=True)
        start = time.monotonic()
        phase = "pretrain" if pretrain else "train"
        progress = EpochProgress(
            len(sampler) + self.step, self.log, prefix=f"half {self.half} epoch {epoch + 1}/{self.total_epochs} "
            f"({phase})", batch_size=self.cfg.batch_size, done=self.step,
            epochs_after=self.total_epochs - epoch - 1, epochs_per_half=self.total_epochs,
            later_halves=self.later_halves, validation_s=self.validation_s, interval_s=self.progress_interval_s)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        for batch in _loader(ds, sampler, self.num_workers, self.device):
            self._train_batch(batch, epoch, self.step)
            self.step += 1
            progress.update()
            if self.should_abort():
                self._optimizer_step()
                self.save()
                raise JobAborted(f"abort requested during epoch {epoch + 1} (checkpoint saved)")
        self._optimizer_step()
        val_start = time.monotonic()
        val = self._validate()
        self.validation_s = time.monotonic() - val_start
        metric = val.median_error_deg
        self.scheduler.step(metric)
        row = {"epoch": epoch + 1, "phase": phase,
               "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": self.loss_sum / max(self.weight_sum, 1.0), "val_loss": val.loss,
               "val_median_error_deg": metric, "val_mean_error_deg": val.mean_error_deg,
               "seconds": time.monotonic() - start}
        for k in CURVE_KEYS:
            self.curves[k].append(row[k])
        if metric < self.best_metric:
            self.best_metric, self.best_epoch, self.stale = metric, epoch + 1, 0
            save_atomic(self.model.state_dict(), self.workdir / BEST_MODEL_NAME)
        else:
            self.stale += 1
        self.epoch, self.step, self.loss_sum, self.weight_sum = epoch + 1, 0, 0.0, 0.0
        self.log.info("half %d epoch %d/%d (%s): train loss %.4f, val loss %.4f, val median error "
                      "%.2f deg (mean %.2f), lr %.2e, %.1f s", self.half, epoch + 1, self.total_epochs,
                      row["phase"], row["train_loss"], row["val_loss"], metric, row["val_mean_error_deg"],
                      row["lr"], row["seconds"])

    @property
    def total_epochs(self) -> int:
        return self.n_pretrain + self.cfg.epochs

    def fit(self) -> TrainResult:
        """Train (or resume) to the end; returns the best model in eval mode."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.resume()
        while not self.finished and self.epoch < self.total_epochs:
            self._run_epoch(self.epoch)
            past_pretrain = self.epoch > self.n_pretrain
            if past_pretrain and self.stale >= self.cfg.early_stop_patience:
                self.log.info("half %d: early stop after epoch %d (no improvement for %d epochs)",
                              self.half, self.epoch, self.stale)
                self.finished = self.stopped_early = True
            self.finished = self.finished or self.epoch >= self.total_epochs
            self.save()
            if self.on_epoch is not None:
                self.on_epoch(self.curves)
            if self.should_abort() and not self.finished:
                raise JobAborted(f"abort requested after epoch {self.epoch} (checkpoint saved)")
        best = load_checkpoint(self.workdir / BEST_MODEL_NAME, map_location=self.device)
        if best is not None:
            self.model.load_state_dict(best)
        self.model.eval()
        return TrainResult(self.model, self.curves, self.best_epoch, self.best_metric, self.stopped_early,
                           self.resumed_from)
