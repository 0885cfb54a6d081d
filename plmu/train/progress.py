"""Training progress: a tqdm bar on a terminal, log lines elsewhere (a log file, a cluster job's output).

tqdm's frames written into a file would be glued to the log lines (``0%| | 0/500 [...][2026-... INFO] epoch 1``),
so off a terminal :class:`ProgressLines` takes the bar's calls and writes one log line every 30 s instead.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from contextlib import AbstractContextManager

from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("plmu.train.trainer")  # the trainer's lines: one logger for the run's story


def duration(seconds: float) -> str:
    """``H:MM:SS``, rounded to the second."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class ProgressLines:
    """The progress bar's news as a log line every ``interval`` seconds, for output that is not a terminal:
    ``epoch 3/10: 1200/5000 batches (24%), loss 0.31, samples/s 512, about 0:04:10 left`` (the batches left in the
    run when it started or resumed). Takes the calls the trainer makes of a tqdm bar."""

    def __init__(self, total: int, interval: float = 30.0, enabled: bool = True) -> None:
        self.total, self.interval, self.enabled = total, interval, enabled
        self.done, self.description, self.postfix = 0, "", ""
        self.started = self.last = time.perf_counter()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_description(self, text: str, refresh: bool = False) -> None:
        self.description = text

    def set_postfix(self, refresh: bool = False, **values: object) -> None:
        self.postfix = ", ".join(f"{key.replace('_per_', '/')} {value}" for key, value in values.items())

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        left = (now - self.started) / self.done * (self.total - self.done) if self.total else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        log.info("%s: %d/%d batches%s, %s, about %s left", self.description, self.done, self.total, share,
                 self.postfix, duration(left))  # fmt: skip


Bar = tqdm | ProgressLines


def bar(total: int, enabled: bool) -> Bar:
    """One bar over ``total`` batches (the rest of the run: its ETA is the run's) on a terminal, else
    :class:`ProgressLines`; ``enabled=False`` (``trainer.progress=false``, or not the main process) shows nothing."""
    if not sys.stderr.isatty():
        return ProgressLines(total, enabled=enabled)
    return tqdm(total=total, unit="batch", disable=not enabled, dynamic_ncols=True, mininterval=0.1, leave=False)


def logs_above_bar(enabled: bool) -> AbstractContextManager[object]:
    """On a terminal with a bar, log lines are printed above it (not through it); elsewhere nothing to do."""
    return logging_redirect_tqdm() if enabled and sys.stderr.isatty() else contextlib.nullcontext()
