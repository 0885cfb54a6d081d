"""The flags the command-line tools share, declared once: which run and checkpoint, where to run, what data, where
the report goes. plmu-eval, plmu-translate, plmu-generate and plmu-export take them from here, so that a flag reads
and behaves the same in each."""

from __future__ import annotations

import argparse

CHECKPOINT_HELP = "best (default), last, or the path of a checkpoint file (of the same task)"


def positive_int_flag(text: str) -> int:
    """argparse ``type=``: argparse prefixes the flag (``argument --batch-size: ...``) and exits 2 with usage."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...), got {text!r}")
    return value


def add_run(parser: argparse.ArgumentParser, what: str, device: str | None = "auto", optional: bool = False) -> None:
    """RUN_DIR (``what`` says which runs), ``--checkpoint``, and ``--device`` (default ``device``; None: the tool
    has no device to choose)."""
    parser.add_argument("run_dir", nargs="?" if optional else None, help=what)
    parser.add_argument("--checkpoint", default="best", help=CHECKPOINT_HELP)
    if device is not None:
        devices = "auto (cuda if available), cpu, cuda, cuda:N, mps"
        parser.add_argument("--device", default=device, help=f"{devices} (default {device})")


def add_data(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--data-root``, ``--no-progress``: for the tools that read a split."""
    parser.add_argument("--batch-size", type=positive_int_flag, default=None, help="default: the run's eval batch size")
    parser.add_argument("--data-root", default=None, help="where the data is, if not where training found it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_report_output(parser: argparse.ArgumentParser) -> None:
    """``--output``: a report file, or a folder for the default name."""
    parser.add_argument("--output", metavar="PATH", help="report file, or folder for the default name (RUN_DIR)")
