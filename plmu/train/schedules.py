"""Learning-rate schedules with a linear warm-up, as ``trainer.scheduler`` partials.

Each function takes the optimiser first and returns a torch scheduler (a ``LambdaLR``), so it plugs into the
config like any ``torch.optim.lr_scheduler`` class::

    trainer.scheduler={_target_:plmu.train.schedules.warmup_cosine,_partial_:true,warmup_steps:500}
    trainer.scheduler_interval=step

``total_steps`` is left out of the config on purpose: the trainer passes it to any scheduler whose signature takes
``total_steps`` and does not set it, as the number of times it will step the scheduler over the whole run (optimizer
steps with ``trainer.scheduler_interval=step``, epochs with ``epoch``; see ``Trainer.scheduler_steps``).

The multiplier f(s) of every parameter group's own learning rate is a closed form of s, the number of scheduler
steps taken so far (the lr of the first optimizer step is lr · f(0)). A ``LambdaLR`` checkpoints s (``last_epoch``)
and the base rates, so a resumed run continues the schedule exactly; the functions themselves are rebuilt from
the config, never pickled.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from plmu.data.splits import is_int


def _check(warmup_steps: int, total_steps: int | None, min_lr_ratio: float) -> None:
    if not is_int(warmup_steps) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if total_steps is not None and (not is_int(total_steps) or total_steps < 1):
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if isinstance(min_lr_ratio, bool) or not isinstance(min_lr_ratio, int | float) or not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio must be a number in [0, 1], got {min_lr_ratio!r}")


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The warm-up's multiplier: (s + 1) / warmup_steps for s < warmup_steps, then 1.

    It starts at 1 / warmup_steps, not 0: no optimizer step is spent at a learning rate of zero.
    """
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def _progress(step: int, warmup_steps: int, total_steps: int) -> float:
    """How far the decay is, in [0, 1]: 0 at the first step after the warm-up, 1 at step total_steps − 1 and after.

    A warm-up as long as the run or longer (a short debug run) leaves the decay one step: the rate drops to the
    minimum right after the warm-up instead of failing.
    """
    return min(max((step - warmup_steps) / max(total_steps - 1 - warmup_steps, 1), 0.0), 1.0)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """f(s) of :func:`warmup_cosine`."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * _progress(step, warmup_steps, total_steps)))
    return min_lr_ratio + (1.0 - min_lr_ratio) * cosine


def warmup_linear_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """f(s) of :func:`warmup_linear`."""
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    return 1.0 - (1.0 - min_lr_ratio) * _progress(step, warmup_steps, total_steps)


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up over ``warmup_steps`` steps to each group's lr, then a half cosine down to
    ``min_lr_ratio`` · lr at step ``total_steps`` − 1 (held there if the run goes on).

    f(s) = (s + 1) / W for s < W; else r + (1 − r) · ½ (1 + cos(π p)), p = (s − W) / (T − 1 − W) clipped to [0, 1].
    """
    _check(warmup_steps, total_steps, min_lr_ratio)
    return LambdaLR(optimizer, lambda s: warmup_cosine_factor(s, warmup_steps, total_steps, min_lr_ratio))


def warmup_linear(optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warm-up over ``warmup_steps`` steps, then a straight line down to ``min_lr_ratio`` · lr at step
    ``total_steps`` − 1: f(s) = 1 − (1 − r) p with p as in :func:`warmup_cosine`."""
    _check(warmup_steps, total_steps, min_lr_ratio)
    return LambdaLR(optimizer, lambda s: warmup_linear_factor(s, warmup_steps, total_steps, min_lr_ratio))


def takes_total_steps(scheduler: Callable[..., object]) -> bool:
    """Whether the trainer should pass ``total_steps`` to the scheduler partial: its signature has the parameter and
    the config did not set it."""
    try:
        parameters = inspect.signature(scheduler).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return False
    bound = getattr(scheduler, "keywords", {}) or {}  # a functools.partial's keyword arguments (the config's)
    return "total_steps" in parameters and "total_steps" not in bound
