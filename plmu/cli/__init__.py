"""Command-line entry points: ``plmu-train`` (Hydra), ``plmu-eval``, ``plmu-generate``, ``plmu-translate``,
``plmu-export`` and ``plmu-report``."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def fail(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` on stderr as one line (torch's messages span lines); the exit code, 2."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a cluster's pre-emption) end the command as Ctrl-C does: through its
    ``except KeyboardInterrupt``, so that the temp files of half-written reports are removed (SIGTERM's default
    ends the process on the spot and leaves them)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
