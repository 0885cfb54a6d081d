"""``plmu-generate RUN_DIR --prompt TEXT --length N --temperature T``: sample text from a character language model.

The run's model (rebuilt from its checkpoint, as ``plmu-eval`` does) runs as an RNN: the prompt is read one character
at a time with ``model.step``, then each sampled character is fed back. The parallel LMU's and the LSTM's work per
character is O(1) whatever the context; a transformer's step attends over its key/value cache, which grows.
A model trained with ``trainer.state=reset`` (the transformer) only ever saw contexts of one chunk
(``task.data.chunk_length``): once its context reaches that, it is rebuilt from the last half chunk of the text (one
parallel pass), so it samples in the context it was trained on.
The text goes to stdout (prompt included); characters per second go to stderr. ``--temperature 0`` is greedy.

Errors are one line on stderr (``plmu-generate: error: ...``), exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from plmu.cli import fail, flags, stop_on_sigterm
from plmu.errors import ConfigError, PlmuError

PROG = "plmu-generate"


def alphabet_of(run_dir: Path) -> str:
    """The run's symbols (id i is alphabet[i]), from the ``data_info.json`` plmu-train wrote."""
    info_path = run_dir / "data_info.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        info = {}
    alphabet = info.get("alphabet") if isinstance(info, dict) else None
    if not isinstance(alphabet, str) or not alphabet:
        raise ConfigError(
            f"{run_dir} has no character alphabet in data_info.json: plmu-generate samples from a character language "
            f"model's run (task=text8)"
        )
    return alphabet


def generate(args: argparse.Namespace) -> tuple[str, float]:
    """The prompt and ``args.length`` sampled characters, and the sampling speed (characters per second)."""
    import torch

    from plmu.cli.run_tools import resolve_eval_device
    from plmu.runs import checkpoint_path, load_run
    from plmu.train.settings import TrainerSettings

    run_dir = Path(args.run_dir).expanduser()
    path = checkpoint_path(run_dir, args.checkpoint)
    alphabet = alphabet_of(run_dir)
    prompt = args.prompt or alphabet[0]  # no prompt: start after a space, as at a word's beginning
    unknown = sorted({c for c in prompt if c not in alphabet})
    if unknown:
        raise ConfigError(f"--prompt has characters the model does not know: {unknown}; use only {alphabet!r}")
    device = resolve_eval_device(args.device)
    run = load_run(run_dir, str(path), device)
    model, cfg = run.model, run.config
    if not cfg.task.per_step:
        raise ConfigError(f"{run_dir} is a {cfg.task.name} run, not a language model: nothing to generate")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    ids = torch.tensor([alphabet.index(c) for c in prompt], device=device)
    out = list(prompt)
    window = cfg.task.data.get("chunk_length") if TrainerSettings.recorded(cfg.trainer).state == "reset" else None
    history = ids.tolist()  # every character so far, as ids
    with torch.no_grad():
        state = model.initial_state(1)
        start = time.perf_counter()
        for token in ids[:-1]:  # the prompt but its last character: only the state matters
            _, state = model.step(token.view(1), state)
        token, context = ids[-1:], len(ids) - 1  # characters the state has read
        for _ in range(args.length):
            if window and context >= window:  # rebuild the state from the last half chunk, as in training
                kept = torch.tensor(history[-max(window // 2, 2) : -1], device=device)[None]
                _, state = model.backbone(model.adapter(kept), None, return_state=True)
                context = kept.shape[1]
            logits, state = model.step(token, state)
            context += 1
            if args.temperature == 0:
                token = logits.argmax(-1)
            else:
                probabilities = torch.softmax(logits.float() / args.temperature, dim=-1)
                token = torch.multinomial(probabilities, 1, generator=generator).view(1)
            history.append(int(token))
            out.append(alphabet[int(token)])
        seconds = time.perf_counter() - start
    return "".join(out), (len(prompt) - 1 + args.length) / max(seconds, 1e-9)


def _non_negative(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not math.isfinite(value) or value < 0:  # nan and inf would reach torch.multinomial as NaN weights
            raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    flags.add_run(parser, "a plmu-train run of a character language model (task=text8)", device="cpu")
    parser.add_argument("--prompt", default="", help="text to start from (the run's alphabet only)")
    parser.add_argument("--length", type=_non_negative(int), default=500, help="characters to sample (500)")
    parser.add_argument("--temperature", type=_non_negative(float), default=1.0, help="1: as trained; 0: greedy")
    parser.add_argument("--seed", type=_non_negative(int), default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    try:
        text, rate = generate(args)
    except PlmuError as error:
        return fail(PROG, str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    print(text, flush=True)
    print(f"{PROG}: {rate:.0f} characters/s (prompt and sample, one at a time as an RNN)", file=sys.stderr)
    return 0
