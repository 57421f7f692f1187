"""Progress within a training epoch: a ``run.out`` line every :data:`PROGRESS_INTERVAL_S` seconds
(and at the end of the epoch's batches) with the batches done, particles per second, the ETA of the
epoch and an upper bound on the ETA of the whole training, e.g. (one line)::

    half 1 epoch 3/30 (train): 120 / 400 batches (30.0%), 95.3 particles/s, ETA 0:01:10 for this
    epoch, at most 1:05:00 for the whole training (if all 30 epochs of this half and of the other
    half run; early stopping may end it sooner)
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from relion_cryopares._progress import Progress, format_duration

#: Seconds between two progress lines of an epoch (tests set it to 0: a line per batch).
PROGRESS_INTERVAL_S = 30.0


class EpochProgress(Progress):
    """Counts the training batches of one epoch (``total`` batches, ``done`` already finished by a
    resumed run); ``batch_size`` particles per batch turn the batch rate into particles per second.

    The training ETA assumes that every remaining epoch runs: ``epochs_after`` more epochs of this
    half, then ``epochs_per_half`` epochs of each of ``later_halves`` halves trained after it, each
    epoch as long as this one's batches plus ``validation_s`` (the last validation's duration). It
    is an upper bound: early stopping may end a half sooner.
    """

    def __init__(self, total: int, log: logging.Logger, *, prefix: str, batch_size: int, done: int = 0,
                 epochs_after: int = 0, epochs_per_half: int = 1, later_halves: int = 0,
                 validation_s: float = 0.0, interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(total, log, unit="batches", done=done,
                         interval_s=PROGRESS_INTERVAL_S if interval_s is None else interval_s,
                         clock=clock, wait_first=True)
        self.prefix, self.batch_size = prefix, int(batch_size)
        self.epochs_after, self.epochs_per_half = int(epochs_after), int(epochs_per_half)
        self.later_halves, self.validation_s = int(later_halves), float(validation_s)

    @property
    def training_eta_s(self) -> float | None:
        """Seconds until the training's last epoch ends if none stops early (None: unknown yet)."""
        eta, rate = self.eta_s, self.rate
        if eta is None or rate <= 0:
            return None
        epoch_s = self.total / rate + self.validation_s
        later = self.epochs_after + self.later_halves * self.epochs_per_half
        return eta + self.validation_s + later * epoch_s

    def line(self) -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        eta, training_eta = self.eta_s, self.training_eta_s
        epoch_text = "unknown" if eta is None else format_duration(eta)
        training_text = "unknown" if training_eta is None else f"at most {format_duration(training_eta)}"
        halves = " of this half and of the other half" if self.later_halves == 1 else \
            f" of this half and of {self.later_halves} more halves" if self.later_halves else ""
        return (f"{self.prefix}: {self.done} / {self.total} batches ({percent:.1f}%), "
                f"{self.rate * self.batch_size:.1f} particles/s, ETA {epoch_text} for this epoch, "
                f"{training_text} for the whole training (if all {self.epochs_per_half} epochs{halves} run; "
                f"early stopping may end it sooner)")
