"""Command-line entry points: ``plmu-train`` (Hydra), ``plmu-eval``, ``plmu-generate``, ``plmu-translate``,
``plmu-export`` and ``plmu-report``."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def fail(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` on stderr as one line (torch's messages span lines); the exit code, 2."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill / pre-emption, a closed terminal


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a cluster's pre-emption) and SIGHUP (the terminal closed) end the command as Ctrl-C
    does: through its ``except KeyboardInterrupt``, so that the run records that it was interrupted and the temp
    files of half-written reports are removed (their default ends the process on the spot). Only the first such
    signal interrupts: later ones (an impatient second Ctrl-C) would cut the recording short, and are ignored
    while it finishes (kill -9 still stops the process at once)."""
    stopping = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            os.write(2, b"plmu: already stopping: recording what the run folder holds (kill -9 stops at once)\n")
            return
        stopping = True
        raise KeyboardInterrupt

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)
