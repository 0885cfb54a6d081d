"""Evaluating a trained model on a split, as an RNN or in parallel: :func:`evaluate` (``plmu-eval``'s measurement).

    run = plmu.load_run("outputs/psmnist/plmu/...")
    data = load_data(run.config)                                        # plmu.train.run.load_data
    result = evaluate(run.model, data.test, build_objective(run.config.task.objective), batch_size=250)
    result["value"], result["max_abs_difference_recurrent_vs_parallel"]

``mode="recurrent"`` steps through time with the model's ``step`` (``forward_recurrent``), O(1) work per step, as a
deployed streaming model would; ``mode="parallel"`` runs the training-time forward. Either way the metric comes from
the objective's additive statistics, the speed from the timed mode alone, and the largest difference between the
recurrent and the parallel outputs from every batch (recurrent mode) or the first batch (parallel mode, where the
step-by-step pass would dominate the time).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

from plmu.errors import OutOfMemoryError

MODES = ("recurrent", "parallel")


def evaluate(
    model: nn.Module,
    split: Any,
    objective: Any,
    *,
    mode: str = "recurrent",
    batch_size: int,
    limit_batches: int | None = None,
    carry: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
    label: str = "",
) -> dict[str, Any]:
    """``objective``'s metrics of ``model`` over ``split`` (a :class:`plmu.data.splits.Split`), in ``mode``.

    ``carry``: a stream task's chunks continue each other (``trainer.state=carry``), so the state runs on from batch
    to batch in both modes. ``progress``: a tqdm bar on stderr (``label`` names it). The model must already be on
    ``device``, in eval mode. Returns the metric (``metric``, ``value``, ``metrics``), what was scored (``samples``,
    ``batches``), the speed of ``mode`` (``samples_per_second``, ``time_steps_per_second``: real steps, where a
    padding mask says which) and the recurrent-vs-parallel check (``max_abs_difference_recurrent_vs_parallel``,
    its relative form and ``batches_compared_recurrent_vs_parallel``). Out of memory is an OutOfMemoryError that
    names the batch size.
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    total = split.num_batches(batch_size, limit_batches)
    interactive = sys.stderr.isatty()
    stats, max_difference, max_output, samples, seconds, compared = objective.zeros(), 0.0, 0.0, 0, 0.0, 0
    time_steps = 0
    recurrent_state = parallel_state = None
    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    bar = tqdm(
        split.batches(batch_size, limit=limit_batches),
        total=total,
        desc=label or mode,
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        leave=not interactive,  # a terminal gets its line back; a log keeps the final count and rate
        dynamic_ncols=interactive,
        mininterval=0.1 if interactive else 30.0,  # in a log file every refresh is a line: one per 30 s is plenty
    )
    try:
        with bar, torch.no_grad():
            for batch in bar:
                batch = {key: value.to(device) for key, value in batch.items()}
                start = time.perf_counter()
                recurrent = None
                if mode == "recurrent" and carry:
                    recurrent, recurrent_state = model.forward_recurrent_with_state(batch, recurrent_state)
                elif mode == "recurrent":
                    recurrent = model.forward_recurrent(batch)
                middle = time.perf_counter()
                if carry:
                    parallel, parallel_state = model.forward_with_state(batch, parallel_state)
                else:
                    parallel = model(batch)
                end = time.perf_counter()
                prediction = recurrent if mode == "recurrent" else parallel
                seconds += (middle - start) if mode == "recurrent" else (end - middle)
                if recurrent is None and samples == 0:  # parallel mode: check the RNN on the first batch only (slow)
                    recurrent = model.forward_recurrent(batch)
                if recurrent is not None:
                    max_difference = max(max_difference, (recurrent - parallel).abs().max().item())
                    max_output = max(max_output, parallel.abs().max().item())
                    compared += 1
                stats += objective.stats(prediction, batch).cpu()
                samples += len(batch["target"])
                inputs = batch.get("inputs")
                if inputs is not None:  # real steps only, where a padding mask says which
                    mask = batch.get("mask")
                    time_steps += int(mask.sum()) if mask is not None else inputs.shape[0] * inputs.shape[1]
                bar.set_postfix(samples_per_s=f"{samples / max(seconds, 1e-9):.1f}", refresh=False)
    except out_of_memory:
        raise OutOfMemoryError(f"out of memory on {device} at batch size {batch_size}") from None
    return {
        "metric": objective.metric,
        "value": objective.value(stats),
        "metrics": objective.reduce(stats),
        "samples": samples,
        "batches": total,
        "samples_per_second": samples / seconds if seconds > 0 else None,
        "time_steps_per_second": time_steps / seconds if seconds > 0 else None,
        "max_abs_difference_recurrent_vs_parallel": max_difference,
        # relative to the largest output: float32 rounding accumulated over T steps is ~1e-6 .. 1e-5
        "max_relative_difference_recurrent_vs_parallel": max_difference / max(max_output, 1e-30),
        "batches_compared_recurrent_vs_parallel": compared,
    }
