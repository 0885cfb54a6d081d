"""Where a psMNIST epoch's time goes (``plmu-bench --trainer``): the trainer's epoch against the bare training step.

The bare loop is the least a training epoch can cost: the same model, the same shuffled batches of the same
in-memory split, and per batch only forward, cross-entropy, backward and an Adam step. The trainer's epoch is
``Trainer.fit`` for one epoch (progress bar on, logging every 50 steps, a NaN check per batch, validation and the
two checkpoints at the epoch's end). Its training part is the epoch less the validation and the checkpoint writes,
each timed on its own; the overhead is that training part over the bare loop.

The data are random psMNIST-shaped tensors (N, 784, 1) with 10 labels: the time of a step does not depend on the
pixels, and the benchmark runs without MNIST on disk. The training split augments as the task's default config does
(``conf/task/psmnist.yaml``: each image rotated, scaled and moved before the permutation), in the bare loop too; the
time drawing an epoch of batches, plain and augmented, is measured apart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from plmu.bench.timing import Timing
from plmu.data.psmnist import AugmentedSplit
from plmu.data.splits import DataSplits, TensorSplit
from plmu.models import plmu_model
from plmu.train.objectives import Classification
from plmu.train.trainer import Trainer, TrainerSettings

OVERHEAD_TARGET = 0.25  # issue 15: the trainer may add at most this much to the bare step's epoch
AUGMENT = {"rotate": 10.0, "scale": 0.1, "translate": 2.0}  # conf/task/psmnist.yaml's default


def _split(n: int, steps: int, generator: torch.Generator) -> TensorSplit:
    return TensorSplit(torch.rand(n, steps, 1, generator=generator), torch.randint(0, 10, (n,), generator=generator))


def draw_epoch(args, split: TensorSplit) -> float:
    """Seconds to draw one epoch's shuffled batches of ``split`` (and nothing else)."""
    start = time.perf_counter()
    for _ in split.batches(args.batch, shuffle=True, seed=0):
        pass
    return time.perf_counter() - start


def _model(args) -> torch.nn.Module:
    torch.manual_seed(0)
    return plmu_model(1, 10, False, args.hidden, 1, order=args.order, theta=args.theta)


def bare_epoch(args, split: TensorSplit) -> float:
    """Seconds of one epoch of bare steps over ``split`` (shuffled as the trainer shuffles)."""
    model = _model(args)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for batch in split.batches(args.batch, shuffle=True, seed=0):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch), batch["target"]).backward()
        optimizer.step()
    return time.perf_counter() - start


def trainer_epoch(args, data: DataSplits) -> dict[str, float]:
    """One epoch of ``Trainer.fit`` in a temporary run folder, and its validation and checkpoint writes alone."""
    settings = TrainerSettings(
        max_epochs=1, batch_size=args.batch, optimizer=partial(torch.optim.Adam, lr=1e-3), device="cpu"
    )
    trainer_log = logging.getLogger("plmu.train.trainer")
    level = trainer_log.level
    with (
        tempfile.TemporaryDirectory() as folder,
        open(os.devnull, "w") as null,
        contextlib.redirect_stderr(null),  # the progress bar: drawn (its cost counts), not shown
    ):
        trainer_log.setLevel(logging.WARNING)  # the epoch's log lines: not shown; restored below
        try:
            trainer = Trainer(_model(args), data, Classification(), settings, Path(folder))
            start = time.perf_counter()
            trainer.fit()
            epoch = time.perf_counter() - start
            start = time.perf_counter()
            trainer.evaluate(data.val)
            validation = time.perf_counter() - start
            start = time.perf_counter()
            trainer._save("best.pt")
            trainer._save("last.pt")
            checkpoints = time.perf_counter() - start
        finally:
            trainer_log.setLevel(level)
    return {"epoch": epoch, "validation": validation, "checkpoints": checkpoints}


def report(args, repeats: int = 3) -> str:
    generator = torch.Generator().manual_seed(0)
    n_train, n_val = (300, 100) if args.quick else (50_000, 10_000)
    plain, val = _split(n_train, args.steps, generator), _split(n_val, args.steps, generator)
    augment = AUGMENT if args.steps == 784 else None  # images need 784 pixels (28 × 28)
    train = AugmentedSplit(plain.x, plain.y, augment=augment)
    data = DataSplits(train, val, val)
    bare, epochs, parts, drawing = [], [], [], []
    for attempt in range(repeats):  # alternated, so a load change on the machine hits both alike
        drawing.append((draw_epoch(args, plain), draw_epoch(args, train)))
        bare.append(bare_epoch(args, train))
        measured = trainer_epoch(args, data)
        epochs.append(measured["epoch"])
        parts.append(measured)
        print(f"  [{attempt + 1}/{repeats}] bare {bare[-1]:.2f} s, trainer {epochs[-1]:.2f} s", file=sys.stderr)
    validation = Timing([p["validation"] for p in parts])
    checkpoints = Timing([p["checkpoints"] for p in parts])
    training = Timing([p["epoch"] - p["validation"] - p["checkpoints"] for p in parts])
    bare_timing, epoch_timing = Timing(bare), Timing(epochs)
    draw_plain, draw_augmented = Timing([d[0] for d in drawing]), Timing([d[1] for d in drawing])
    overhead = training.median / bare_timing.median - 1
    steps = -(-n_train // args.batch)
    verdict = "within" if overhead <= OVERHEAD_TARGET else "ABOVE"
    lines = [
        f"One psMNIST epoch: {n_train} training and {n_val} validation examples, batch {args.batch} ({steps} steps); "
        f"median of {repeats} epochs each, alternated (± IQR/2).",
        "",
        "| what | s/epoch | ms/step |",
        "| --- | ---: | ---: |",
        f"| bare loop: forward, cross-entropy, backward, Adam | {_s(bare_timing)} | {_ms(bare_timing, steps)} |",
        f"| of which: drawing the batches, augmented{'' if augment else ' (no augmentation at this T)'} "
        f"| {_s(draw_augmented)} | {_ms(draw_augmented, steps)} |",
        f"| (drawing the batches without augmentation) | {_s(draw_plain)} | {_ms(draw_plain, steps)} |",
        f"| trainer, whole epoch | {_s(epoch_timing)} | |",
        f"| of which: validation ({n_val} examples) | {_s(validation)} | |",
        f"| of which: writing best.pt and last.pt | {_s(checkpoints)} | |",
        f"| of which: training (the rest) | {_s(training)} | {_ms(training, steps)} |",
        "",
        f"Trainer overhead on the training part: {overhead:+.1%} of the bare loop ({verdict} the "
        f"{OVERHEAD_TARGET:.0%} target); validation adds {validation.median / bare_timing.median:.1%} and the "
        f"checkpoints {checkpoints.median / bare_timing.median:.1%} of an epoch; the augmentation costs "
        f"{(draw_augmented.median - draw_plain.median) / bare_timing.median:.1%} of the bare loop.",
        "",
    ]
    return "\n".join(lines)


def _ms(timing: Timing, steps: int) -> str:
    return f"{timing.median / steps * 1e3:.2f}"


def _s(timing: Timing) -> str:
    return f"{timing.median:.2f} ± {timing.iqr / 2:.2f}"
