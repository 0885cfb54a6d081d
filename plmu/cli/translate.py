"""``plmu-translate RUN_DIR``: translate with a trained translation run (task=iwslt15_en_vi), decoding as an RNN.

    plmu-translate RUN_DIR < talk.en > talk.vi            tokenised source lines in, one translation a line out
    plmu-translate RUN_DIR --split test                   tst2013 translated and scored: RUN_DIR/translate_test.json

The model is rebuilt from the run's checkpoint (``--checkpoint best``, as ``plmu-eval`` does) and decodes one token at
a time (``Seq2Seq.decode_step``): beam search of ``--beam`` hypotheses (default 5; 1 is greedy) with GNMT's length
penalty ``--length-penalty`` α (default 0.6; 0 for none), at most ``--max-length`` tokens (default 2 · source + 10).
Words are looked up in the run's vocabularies (``vocab.<lang>`` in its data folder). ``--data-root`` points at the
data if it moved since training: the folder of the files for a run trained with ``task.data.path``, else the run's
``data_dir`` (which holds ``iwslt15_en_vi/``).

With ``--split`` the split's sentences are translated and scored against their references with sacreBLEU:

- ``bleu_tokenized``: BLEU of the tokenised text exactly as the Stanford files have it (``tokenize="none"``): what
  the IWSLT'15 literature reports (multi-bleu.perl on tokenised text; Luong & Manning 2015: 23.3 on tst2013);
- ``sacrebleu``: sacreBLEU's default (13a tokeniser, mixed case) on the same text with its HTML entities unescaped
  (``&apos;`` → ``'``), with its signature. The text stays tokenised (no detokeniser here), so this is not the
  detokenised sacreBLEU of WMT papers; it is recorded with its signature so that it is clear what it is.

The report (JSON, also on stdout) is written atomically to ``RUN_DIR/translate_<split>[_beam<K>|_greedy][_lp<α>]
[_max<N>][_<checkpoint>][_limit<N>].json`` (the suffixes only where a setting is not the default), the translations
beside it (same name, ``.txt``, one a line in the split's order). ``--output PATH`` writes elsewhere.
Errors are one line on stderr (``plmu-translate: error: ...``), exit code 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmu.cli import fail, stop_on_sigterm
from plmu.cli.run_tools import batch_size, set_data_root
from plmu.errors import ConfigError, PlmuError
from plmu.train.provenance import portable
from plmu.translate import DEFAULT_ALPHA, DEFAULT_BEAM
from plmu.version import __version__

if TYPE_CHECKING:  # torch loads lazily: `plmu-translate --help` answers at once
    pass

PROG = "plmu-translate"


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (e.g. 0.6; 0 for no length penalty), got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------ the run
def _said_with_data_root(error: PlmuError, args: argparse.Namespace) -> PlmuError:
    message = str(error)
    if args.data_root is None and "--data-root" not in message:
        message += "; or point --data-root at the folder that holds the data"
    return ConfigError(message)


def load_translation_run(args: argparse.Namespace) -> Any:
    """The run of ``args`` (:func:`plmu.load_run`, on ``--device``), refused unless its model translates."""
    from plmu.cli.run_tools import resolve_eval_device
    from plmu.models.seq2seq import Seq2Seq
    from plmu.runs import load_run

    device = resolve_eval_device(args.device)  # before the checkpoint: a wrong flag fails at once
    run = load_run(Path(args.run_dir).expanduser(), args.checkpoint, device)
    if not isinstance(run.model, Seq2Seq):
        raise ConfigError(
            f"{run.path} is a {run.config.task.name} run, not a translation model: plmu-translate needs a run of "
            f"task=iwslt15_en_vi (or another task with a plmu.models.seq2seq model)"
        )
    return run


def translate_stdin(args: argparse.Namespace) -> int:
    """Source lines from stdin → translations on stdout, in order, one a line."""
    from plmu.data.translation import as_split
    from plmu.translate import check_vocabularies, recorded_vocabularies, translate_split

    run = load_translation_run(args)
    model, cfg, device = run.model, run.config, run.device
    set_data_root(args, cfg)  # checks the flag; the vocabularies come from the run's record (below)
    if not run.data_info:
        raise ConfigError(
            f"{run.path}/data_info.json is missing or unreadable: it names the run's vocabulary files (plmu-train "
            f"writes it when the run starts)"
        )
    try:
        source_vocab, target_vocab, folder = recorded_vocabularies(run.data_info, run.path, args.data_root)
    except PlmuError as error:
        raise _said_with_data_root(error, args) from None
    check_vocabularies(model, source_vocab, target_vocab, str(folder))
    lines = sys.stdin.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return 0
    split = as_split(lines, (source_vocab, target_vocab))
    translations, speed = translate_split(
        model, split, target_vocab, None, batch_size(args, cfg, run.checkpoint), args.beam, args.length_penalty,
        args.max_length, device, not args.no_progress,
    )  # fmt: skip
    sys.stdout.write("".join(line + "\n" for line in translations))
    sys.stdout.flush()
    print(f"{PROG}: {len(lines)} sentences, {speed['sentences_per_second']} sentences/s", file=sys.stderr)
    return 0


def report_name(args: argparse.Namespace, run_dir: Path, path: Path) -> str:
    """``translate_<split>`` and a suffix for each setting that is not the default (module docstring)."""
    from plmu.cli.run_tools import checkpoint_label

    parts = [f"translate_{args.split}"]
    if args.beam != DEFAULT_BEAM:
        parts.append("greedy" if args.beam == 1 else f"beam{args.beam}")
    if args.length_penalty != DEFAULT_ALPHA and args.beam != 1:
        parts.append(f"lp{args.length_penalty:g}")
    if args.max_length is not None:
        parts.append(f"max{args.max_length}")
    if (label := checkpoint_label(run_dir, path)) is not None:
        parts.append(label)
    if args.limit is not None:
        parts.append(f"limit{args.limit}")
    return "_".join(parts)


def translate_report(args: argparse.Namespace) -> int:
    """``--split``: translate, score, write the report and the translations (atomically), print the report."""
    import torch

    from plmu.cli.run_tools import ReportFile, check_recorded_data, strict_json
    from plmu.data.folders import library_progress
    from plmu.data.translation import TranslationSplits
    from plmu.runs import checkpoint_path
    from plmu.train.run import load_data
    from plmu.translate import check_vocabularies, score, translate_split

    run_dir = Path(args.run_dir).expanduser()
    path = checkpoint_path(run_dir, args.checkpoint)
    stem = report_name(args, run_dir, path)
    report_file = ReportFile(_output(args, run_dir, stem), args.output, run_dir)
    text_file: ReportFile | None = None
    try:
        text_file = ReportFile(report_file.target.with_suffix(".txt"), args.output, run_dir)
        run = load_translation_run(args)
        model, cfg, device = run.model, run.config, run.device
        set_data_root(args, cfg)
        try:
            library_progress(not args.no_progress and sys.stderr.isatty())  # datasets' bars: a terminal's only
            data = load_data(cfg)
        except PlmuError as error:
            raise _said_with_data_root(error, args) from None
        if not isinstance(data, TranslationSplits):
            raise ConfigError(f"{run_dir}'s data ({cfg.task.data._target_}) is not a translation data set")
        folder = str(data.info.get("folder", "the data folder"))
        check_vocabularies(model, data.source_vocab, data.target_vocab, folder)
        split = getattr(data, args.split)
        check_recorded_data(run_dir, args.split, split, path)  # the vocabularies' content too, not only their sizes
        indices = list(range(min(args.limit, len(split)) if args.limit is not None else len(split)))
        started = time.perf_counter()
        translations, speed = translate_split(
            model, split, data.target_vocab, indices, batch_size(args, cfg, run.checkpoint), args.beam,
            args.length_penalty, args.max_length, device, not args.no_progress,
        )  # fmt: skip
        references = [split.references[i] for i in indices]
        report = {
            "checkpoint": str(path.resolve()),
            "checkpoint_epoch": run.epoch,
            "task": cfg.task.name,
            "dataset": data.info.get("dataset"),
            "split": args.split,
            "split_file": data.info.get("files", {}).get(args.split),
            "sentences": len(indices),
            "beam": args.beam,
            "length_penalty": args.length_penalty if args.beam > 1 else None,
            "max_length": args.max_length if args.max_length is not None else "2 * source + 10",
            **score(translations, references),
            **speed,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "examples": [
                {"source": split.sources[i], "translation": translations[n], "reference": references[n]}
                for n, i in enumerate(indices[:3])
            ],
            "translations": str(text_file.target.resolve()),
            "device": str(device),
            "data_root": folder,
            "parameters": model.num_parameters,
            "torch_version": torch.__version__,
            "plmu_version": __version__,
            "translated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "output": str(report_file.target.resolve()),
        }
        text = strict_json(portable(report, run_dir))  # paths relative to the run folder: any machine reads it
        try:
            text_file.commit("".join(line + "\n" for line in translations))
            text_file = None
            report_file.commit(text + "\n")
            report_file = None
        except OSError as error:
            raise PlmuError(f"cannot write the report next to {path}: {error}; pass --output PATH") from None
    finally:
        for pending in (report_file, text_file):
            if pending is not None:  # failed or interrupted: no partial report, no stray temp file
                pending.discard()
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(
        f"{PROG}: {args.split} BLEU {report['bleu_tokenized']} (tokenised), sacreBLEU {report['sacrebleu']}; "
        f"wrote {report['output']}",
        file=sys.stderr,
    )
    return 0


def _output(args: argparse.Namespace, run_dir: Path, stem: str) -> Path:
    name = stem + ".json"
    if args.output is None:
        return run_dir / name
    output = Path(args.output).expanduser()
    folder = output.is_dir() or args.output.endswith(("/", os.sep))
    return output / name if folder else output


# ------------------------------------------------------------------------------------------------ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from plmu.cli import flags
    from plmu.cli.flags import positive_int_flag

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    flags.add_run(parser, "a plmu-train run directory of a translation task")
    parser.add_argument("--split", choices=["test", "val", "train"], default=None,
                        help="translate and score this split (default: translate stdin to stdout)")  # fmt: skip
    parser.add_argument("--beam", type=positive_int_flag, default=DEFAULT_BEAM,
                        help="beam size; 1 is greedy (default 5)")  # fmt: skip
    parser.add_argument("--length-penalty", type=non_negative_float, default=DEFAULT_ALPHA,
                        help="GNMT length penalty alpha (default 0.6; 0: none)")  # fmt: skip
    parser.add_argument("--max-length", type=positive_int_flag, default=None,
                        help="at most this many tokens per translation (default 2 * source length + 10)")  # fmt: skip
    parser.add_argument("--limit", type=positive_int_flag, default=None, help="only the split's first N sentences")
    flags.add_data(parser)
    flags.add_report_output(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    try:
        if args.split is None:
            if args.limit is not None:
                raise ConfigError("--limit needs --split (stdin is translated whole)")
            if args.output is not None:
                raise ConfigError("--output needs --split (stdin's translations go to stdout)")
            return translate_stdin(args)
        return translate_report(args)
    except PlmuError as error:
        return fail(PROG, str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
