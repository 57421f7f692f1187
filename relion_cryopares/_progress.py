"""Progress lines for ``run.out``: done / total, rate, ETA (the jobs and the training loop; no RELION
file in sight, so every layer may use it)."""

from __future__ import annotations

import logging
import time
from typing import Callable


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts finished items and logs at most one line per ``interval_s`` (and one at the end).
    The first line comes with the first update, or only after ``interval_s`` with ``wait_first``.

    ``done`` starts at the items already finished by a previous run (a continue); the rate and
    ETA use only the items of this run::

        with ctx.progress(total=len(particles), done=already_done) as progress:
            for batch in batches:
                ...
                progress.update(len(batch))
                ctx.check_abort()
    """

    def __init__(
        self,
        total: int,
        log: logging.Logger,
        *,
        unit: str = "particles",
        done: int = 0,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wait_first: bool = False,
    ):
        if total < 0 or done < 0:
            raise ValueError("total and done must be >= 0")
        self.total = int(total)
        self.done = int(done)
        self.unit = unit
        self.interval_s = float(interval_s)
        self._log = log
        self._clock = clock
        self._start_done = self.done
        self._start = clock()
        self._last_logged_at: float | None = self._start if wait_first else None
        self._last_logged_done: int | None = None

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    @property
    def rate(self) -> float:
        """Items per second in this run (0 before any time has passed)."""
        elapsed = self.elapsed_s
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate, or None when unknown."""
        rate = self.rate
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """``"1200 / 5000 particles (24.0%), 310.5 particles/s, ETA 0:00:09"``."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        eta = self.eta_s
        eta_text = "unknown" if eta is None else format_duration(eta)
        return (f"{self.done} / {self.total} {self.unit} ({percent:.1f}%), "
                f"{self.rate:.1f} {self.unit}/s, ETA {eta_text}")

    def update(self, n: int = 1) -> None:
        """Add ``n`` finished items; log a line if ``interval_s`` passed or all are done."""
        self.done += int(n)
        now = self._clock()
        due = self._last_logged_at is None or now - self._last_logged_at >= self.interval_s
        if due or self.done >= self.total:
            self._emit(now)

    def finish(self) -> None:
        """Log the final count unless it was the last line logged."""
        if self._last_logged_done != self.done:
            self._emit(self._clock())

    def _emit(self, now: float) -> None:
        self._log.info(self.line())
        self._last_logged_at = now
        self._last_logged_done = self.done

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
