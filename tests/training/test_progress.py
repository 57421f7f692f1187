"""Progress lines within a training epoch: batches, particles/s, ETA of the epoch and of the training."""

from __future__ import annotations

import logging

from relion_cryopares.training._progress import EpochProgress


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_epoch_progress_line_rate_and_etas(caplog):
    clock = _Clock()
    log = logging.getLogger("relion_cryopares.test_epoch_progress")
    with caplog.at_level(logging.INFO, logger=log.name):
        progress = EpochProgress(10, log, prefix="half 1 epoch 2/4 (train)", batch_size=32, epochs_after=2,
                                 epochs_per_half=4, later_halves=1, validation_s=5.0, interval_s=30.0, clock=clock)
        clock.t += 10.0
        progress.update(5)  # the first line waits for the interval too
        assert caplog.messages == []
        assert progress.training_eta_s == 10 + 5 + (2 + 4) * (10 / 0.5 + 5)  # epoch ETA, its validation, 6 epochs
        clock.t += 21.0
        progress.update(1)  # rate 6 / 31 s: epoch 10 / rate + 5 s validation; 4 / rate + 5 + 6 epochs left
        assert caplog.messages == [
            "half 1 epoch 2/4 (train): 6 / 10 batches (60.0%), 6.2 particles/s, ETA 0:00:21 for this epoch, "
            "at most 0:06:06 for the whole training (if all 4 epochs of this half and of the other half run; "
            "early stopping may end it sooner)"]
        clock.t += 1.0
        progress.update(4)  # the last batch: always a line
        assert len(caplog.messages) == 2 and "10 / 10 batches (100.0%)" in caplog.messages[-1]
        assert "ETA 0:00:00 for this epoch" in caplog.messages[-1]


def test_resumed_epoch_counts_only_this_runs_batches():
    clock = _Clock()
    progress = EpochProgress(10, logging.getLogger("relion_cryopares.test_epoch_progress"), prefix="p",
                             batch_size=8, done=4, clock=clock)
    clock.t += 2.0
    progress.update(2)
    assert progress.rate == 1.0 and progress.eta_s == 4.0
    assert "6 / 10 batches" in progress.line() and "8.0 particles/s" in progress.line()
    assert "(if all 1 epochs run;" in progress.line()
