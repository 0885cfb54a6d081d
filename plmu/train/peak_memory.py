"""How much memory a run will need, from its config alone, checked before any data is read: a run that cannot fit
is refused with one line (the estimate, what this machine has, the override that fits) instead of being killed by
the kernel an hour in, with no message and no record.

The estimate is a training step's peak: the activations autograd keeps for the backward pass (per example and per
time step, by family and width; the transformer's attention scores grow with the square of the length), the
weights with their gradients and Adam's two moments, and a fixed base for the interpreter and torch. The constants
were fitted to the peak resident memory of real training steps on this project's CPU box (experiments/memory/):
within a factor of about 1.5, enough to tell "fits" from "cannot fit" (the failure it guards against needed 40 GiB
on a 24 GiB machine). ``trainer.memory_check=false`` runs anyway.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from plmu.train.settings import TrainerSettings, evaluation_batch_size

GIB = 2**30
BASE_BYTES = int(0.6 * GIB)  # the interpreter, torch and its kernels, the run's bookkeeping
HEADROOM = 0.8  # a suggested batch's activations use at most this share of the room left for them
FLOAT = 4  # bytes; bf16 autocast keeps the LMU memory in float32, so the estimate stays at float32


@dataclass(frozen=True)
class Estimate:
    """A run's peak bytes, the larger of a training step's and an evaluation batch's: ``fixed`` + ``per_example`` ×
    ``batch`` (training: activations kept for backward) or ``fixed`` + ``eval_per_example`` × ``eval_batch``
    (evaluation keeps no activations, but a transformer's attention scores, batch × heads × T², are made whole
    there: measured on CPU, where the training step's attention does not materialise them)."""

    fixed: int
    per_example: int
    batch: int
    eval_per_example: int
    eval_batch: int

    @property
    def training(self) -> int:
        return self.fixed + self.per_example * self.batch

    @property
    def evaluation(self) -> int:
        return self.fixed + self.eval_per_example * self.eval_batch

    @property
    def total(self) -> int:
        return max(self.training, self.evaluation)


def estimate(cfg: Mapping[str, Any], parameters: int, world_size: int = 1) -> Estimate | None:
    """The estimate for ``cfg`` (a composed config, resolved) with a model of ``parameters`` weights, or None when
    the task does not declare its ``sequence_length`` or the model's family states no activations (its registry
    entry's ``activations``: a family the estimate was not fitted to is not guessed at)."""
    from plmu.models.backbones import family_entry, model_family

    task, model, trainer = cfg["task"], cfg["model"], cfg["trainer"]
    length = task.get("sequence_length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        return None
    entry = family_entry(model_family(model))
    if entry is None or entry.activations is None:
        return None
    floats = entry.activations
    layers = int(model.get("num_layers") or 1)
    if "translation" in str(model.get("_target_", "")):
        layers += int(model.get("decoder_layers") or layers)  # the decoder's layers too
    per_step = layers * floats.per_step(model)
    if floats.last_state and not task.get("per_step") and model.get("pooling", "last") in ("last", None):
        # the last layer computes m_T alone (a whole-sequence label read at the last step): only its input per step
        per_step += 2 * float(model.get("memory_d") or 1) - floats.per_step(model)
    embed = float(model.get("embed_dim") or 0)
    outputs = float(task.get("output_size") or 1) if task.get("per_step") else 0.0
    sequences = 2 if model.get("pair") else 1  # a sentence pair runs two sequences
    per_example = int(sequences * length * (per_step + 3 * embed + 3 * outputs) * FLOAT)
    world = max(world_size, 1)
    train_size, eval_size = stated_split_sizes(task)  # a batch never holds more examples than its split
    batch = max(min(int(trainer["batch_size"]), train_size) // world, 1)
    eval_batch = max(min(evaluation_batch_size(trainer), eval_size) // world, 1)
    attention = 2 * float(model.get("num_heads") or 4) * length * length if floats.attention else 0.0
    eval_per_example = int(
        sequences * (attention + 4 * length * (embed + outputs + 4 * float(model.get("hidden_size") or 0))) * FLOAT
    )
    weights = 4 * parameters * FLOAT  # weights, gradients, Adam's two moments
    return Estimate(BASE_BYTES + weights, per_example, batch, eval_per_example, eval_batch)


def stated_split_sizes(task: Mapping[str, Any]) -> tuple[int, int]:
    """(training examples, the largest evaluation split's) where the task's config states them (Mackey-Glass's
    ``n_series``, ``n_train``, ``n_val``), else no bound: other tasks' sizes are known only once their data is read,
    after this check."""
    data = task.get("data") or {}
    sizes = [data.get(key) for key in ("n_series", "n_train", "n_val")]
    if not all(isinstance(size, int) and size > 0 for size in sizes):
        return sys.maxsize, sys.maxsize
    total, train, val = sizes
    return train, max(val, total - train - val, 1)


def available_bytes(device: str) -> int | None:
    """Memory this run may use: free memory on a CUDA device, else the machine's available memory (Linux's
    MemAvailable; the physical memory elsewhere); None if unknown."""
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            index = torch.device(device).index
            return int(torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0])
        return None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(count: int) -> str:
    return f"{count / GIB:.1f} GiB"


def refusal(found: Estimate, available: int, length_key: str) -> str | None:
    """The one line for a run whose estimate exceeds ``available``, or None when it fits."""
    if found.total <= available:
        return None
    if found.training >= found.evaluation:
        what, key, batch, per_example = "a training step", "trainer.batch_size", found.batch, found.per_example
    else:
        what, key, batch, per_example = (
            "an evaluation batch",
            "trainer.eval_batch_size",
            found.eval_batch,
            found.eval_per_example,
        )
    head = (
        f"this run needs about {gib(found.total)} ({what} of {batch} examples: {gib(per_example * batch)}), more "
        f"than the {gib(available)} available here"
    )
    room = int(HEADROOM * (available - found.fixed))  # a suggestion leaves room for the data set and the machine
    fits = max(room // max(per_example, 1), 0)
    if fits >= 1 and key == "trainer.batch_size":
        accumulate = math.ceil(batch / fits)
        fix = (
            f"lower {key} to {fits} (about {gib(found.fixed + fits * per_example)}), with "
            f"trainer.accumulate_grad_batches={accumulate} to keep about the same batch per optimizer step"
        )
    elif fits >= 1:
        fix = f"set {key}={fits} (about {gib(found.fixed + fits * per_example)})"
    else:
        fix = f"shorten the sequences ({length_key}) or use a smaller model"
    return f"{head}: {fix}; or trainer.memory_check=false to try anyway"


def check_memory(cfg: Any, config: Mapping[str, Any], parameters: int, world_size: int = 1) -> str | None:
    """Refuse (a ConfigError) a run whose estimate exceeds what its device has; returns the estimate as a log
    line, or None when none is made (no ``task.sequence_length``, memory unknown, ``trainer.memory_check=false``).
    ``cfg`` is the composed config (for where the length is written), ``config`` the same resolved."""
    from omegaconf import OmegaConf

    from plmu.errors import ConfigError
    from plmu.train.distributed import resolve_device

    settings = TrainerSettings.recorded(config["trainer"])
    if not settings.memory_check:
        return None
    found = estimate(config, parameters, world_size)
    available = available_bytes(str(resolve_device(settings.device)))
    if found is None or available is None:
        return None
    written = OmegaConf.to_container(cfg.task, resolve=False).get("sequence_length")
    length_key = str(written)[2:-1] if str(written).startswith("${") else "task.sequence_length"
    if (line := refusal(found, available, length_key)) is not None:
        raise ConfigError(line)
    return f"memory: about {gib(found.total)} needed at the peak (estimate), {gib(available)} available"
