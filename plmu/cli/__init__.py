"""Command-line entry points: ``plmu-train`` (Hydra), ``plmu-eval``, ``plmu-generate``, ``plmu-translate``,
``plmu-export`` and ``plmu-report``."""

from __future__ import annotations

import sys


def fail(prog: str, message: str) -> int:
    """Print ``<prog>: error: <message>`` on stderr as one line (torch's messages span lines); the exit code, 2."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
