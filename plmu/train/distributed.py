"""Training on several processes (``torchrun``) with DistributedDataParallel; one process is unchanged.
(Over 400 lines as one idea: what every process must agree on, from the device to the carried state.)

``torchrun --nproc_per_node N -m plmu.cli.train ...`` starts N processes and tells each its place through the
environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`setup` joins them
into one process group: NCCL on ``cuda:LOCAL_RANK`` when the run's device is CUDA, gloo on the CPU otherwise.
Without ``WORLD_SIZE`` > 1 every function here is a no-op and the trainer runs exactly as a single process.

How the processes share the work, so that N processes train the same model a single process would:

- ``trainer.batch_size`` is the global batch. Every process draws the same global batch order (the same seeded
  permutation, the same stream chunks) and keeps its contiguous rows of each global batch (:func:`shard_bounds`);
  a short last batch may leave a process no rows, and it then runs one row with weight 0 (DDP needs every process
  in every step).
- Each process's loss is weighted by its share of what the global loss averages over (examples, values or
  tokens: :meth:`Objective.loss_count <plmu.train.objectives.Objective.loss_count>`), times N because DDP averages
  the gradients: the step is the one the global batch gives a single process, to float rounding.
- The loss is all-reduced every micro-batch, before the backward pass: every process logs the global loss, and a
  non-finite loss on any process stops every process with the same :class:`NonFiniteLossError`.
- Evaluation shards each global batch the same way and all-reduces the objective's additive statistics.
- Only rank 0 writes (checkpoints, metrics.jsonl, results.json, config, the wandb run) and logs; it gathers every
  process's RNG state (and carried model state) into the checkpoint, and a resume gives each process its own.
- The run folder is rank 0's (Hydra's ``${now:...}`` may differ between processes), broadcast to the others.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from plmu.errors import CheckpointError, ConfigError, PlmuError

T = TypeVar("T")
log = logging.getLogger(__name__)
TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a missing process (a slow data download)


@dataclass(frozen=True)
class Context:
    """This process's place: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(f"the environment variable {name}={value!r} must be an integer (torchrun sets it)") from None


def env_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def context() -> Context:
    """This process's place in the process group, or a single process's when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def resolve_device(name: str) -> torch.device:
    """A single process's device: ``trainer.device`` (auto: cuda when available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"trainer.device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but CUDA is not available here; use trainer.device=auto or cpu")
    return device


DEVICE_TYPES = ("cpu", "cuda", "mps")  # what the model code is tested on; `meta` etc. would fail mid-evaluation


def named_device(name: str, shown: str, fallback: str) -> torch.device:
    """A device a tool or the Python API was given (``shown``: how the user gave it, ``--device `` or ``device=``;
    ``fallback``: the setting to suggest), checked so that every error is one line in those terms."""
    if name != "auto":
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError, TypeError):
            device = None
        if device is None or device.type not in DEVICE_TYPES:
            raise ConfigError(f"{shown}{name}: not a device plmu runs on; use cpu, cuda, cuda:N or auto")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{shown}{name}: CUDA is not available here; use {fallback}")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ConfigError(f"{shown}{name}: this machine has {count} CUDA device(s); use cuda:0..{count - 1}")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"{shown}{name}: MPS is not available here; use {fallback}")
    try:
        return resolve_device(name)
    except ConfigError as error:  # whatever else it checks, said in the user's terms
        raise ConfigError(f"{shown}{name}: {error}") from None


def process_device(setting: str, local_rank: int) -> torch.device:
    """The device of process ``local_rank`` under torchrun: ``cuda:LOCAL_RANK`` (auto or cuda) or the CPU.

    One GPU per process: ``cuda:N`` names one GPU for all of them and is refused, as is mps (no DDP backend).
    """
    if setting == "cpu":
        return torch.device("cpu")
    if setting not in ("auto", "cuda"):
        raise ConfigError(
            f"trainer.device={setting!r} cannot be shared by several processes: under torchrun each process uses "
            f"its own GPU (cuda:LOCAL_RANK); set trainer.device=auto, cuda or cpu"
        )
    if not torch.cuda.is_available():
        if setting == "cuda":
            raise ConfigError("trainer.device='cuda' but CUDA is not available here; use trainer.device=auto or cpu")
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"process LOCAL_RANK={local_rank} has no GPU of its own: this machine has {torch.cuda.device_count()}; "
            f"launch at most that many processes per node (torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local_rank)


def setup(device: str = "auto") -> Context:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); idempotent. One process: nothing happens.

    The backend follows the run's device (``trainer.device``): NCCL for CUDA, gloo for the CPU. Ranks other than 0
    log warnings and errors only (rank 0 tells the run's story once).
    """
    if dist.is_available() and dist.is_initialized():
        return context()
    world = env_world_size()
    if world <= 1:
        return Context()
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    target = process_device(str(device), local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    try:
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", timeout=TIMEOUT)
    except (ValueError, RuntimeError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(
            f"could not join the process group (WORLD_SIZE={world}, RANK={rank}): {first}. Launch with "
            f"torchrun --nproc_per_node N -m plmu.cli.train ..., or unset WORLD_SIZE for one process"
        ) from None
    if rank:
        logging.getLogger("plmu").setLevel(logging.WARNING)
    return context()


def teardown() -> None:
    """Leave the process group (at the end of the command); nothing when there is none."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_sizes(batch_size: int, eval_batch_size: int | None, world_size: int) -> None:
    """``trainer.batch_size`` (and ``eval_batch_size``) are global batches, split evenly over the processes."""
    for key, value in (("trainer.batch_size", batch_size), ("trainer.eval_batch_size", eval_batch_size)):
        if value is None or world_size <= 1 or value % world_size == 0:
            continue
        lower = value // world_size * world_size
        fits = f"{lower} or {lower + world_size}" if lower else f"{world_size}"
        raise ConfigError(
            f"{key}={value} is the global batch, split evenly over the {world_size} processes, and {value} does not "
            f"divide by {world_size}: use {key}={fits} (a multiple of {world_size}), or launch a number of processes "
            f"that divides {value}"
        )


# ----------------------------------------------------------------------------------------------- collectives
def _comm_device() -> torch.device:
    """Where a collective's tensors must be: the GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the processes (a new tensor on ``tensor``'s device); itself for one process."""
    if not context().enabled:
        return tensor
    work = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work)
    return work.to(tensor.device)


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every process (pickled); ``value`` itself for one process."""
    if not context().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any) -> list[Any] | None:
    """Every process's ``value``, by rank, on rank 0; None on the others. ``[value]`` for one process."""
    ctx = context()
    if not ctx.enabled:
        return [value]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def _raise_relayed(relayed: tuple[type, tuple, str]) -> None:
    """Raise rank 0's error here too: the same class and message where it can be rebuilt, else a PlmuError."""
    kind, args, text = relayed
    try:
        error = kind(*args)
    except Exception:
        error = PlmuError(text)
    raise error


def on_main(action: Callable[[], T]) -> T:
    """``action()`` on rank 0 only; its result, or its error (the same class and message), on every process.

    One process: ``action()``. Used for what only rank 0 may do (the run folder's lock and records, reading
    a checkpoint), so that a failure there ends every process with the same one-line error, not a hang.
    """
    if not context().enabled:
        return action()
    result, relayed, error = None, None, None
    if context().is_main:
        try:
            result = action()
        except Exception as caught:
            error, relayed = caught, (type(caught), caught.args, str(caught))
    result, relayed = broadcast_object((result, relayed))
    if error is not None:
        raise error
    if relayed is not None:
        _raise_relayed(relayed)
    return result


def main_first(action: Callable[[], T]) -> T:
    """``action()`` on every process, rank 0 first (it downloads and caches data; the others then read the cache).
    An error on rank 0 is raised on every process, which then does not run ``action``."""
    if not context().enabled:
        return action()
    if context().is_main:
        return on_main(action)
    on_main(lambda: None)  # wait for rank 0's outcome (its error is raised here)
    return action()


def agree_run_dir(run_dir: T) -> T:
    """Rank 0's run folder on every process (Hydra's ``${now:...}`` folder name may differ by a microsecond)."""
    return broadcast_object(run_dir)


def seed_rank(seed: int) -> None:
    """Give ranks > 0 their own random streams (dropout masks), derived from ``seed``; rank 0 keeps the stream a
    single process has. Called once the model is built (its initial weights are rank 0's on every process)."""
    ctx = context()
    if not ctx.enabled or ctx.is_main:
        return
    derived = (seed * 1_000_003 + ctx.rank * 7_919) % 2**32
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


# ----------------------------------------------------------------------------------------------- batches
def shard_bounds(rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s rows of a global batch of ``rows``: contiguous, sizes differing by at
    most one (so a stream batch, whose rows divide by the world size, gives every process the same streams)."""
    base, extra = divmod(rows, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def slice_rows(batch: Mapping[str, Tensor], start: int, stop: int) -> dict[str, Tensor]:
    """Rows ``start:stop`` of every tensor of ``batch`` (all of a batch's tensors have the batch's rows first)."""
    return {key: value[start:stop] for key, value in batch.items()}


class Sharding:
    """What the trainer does differently on several processes; with one process every method is the identity.

    The trainer calls it at a few points: the device, the DDP-wrapped training forward, this process's part of a
    global batch, the all-reduced loss and statistics, and the checkpoint's per-rank states.
    """

    def __init__(self) -> None:
        self.context = context()
        self.enabled, self.is_main = self.context.enabled, self.context.is_main
        self.ddp: nn.parallel.DistributedDataParallel | None = None

    def device(self, setting: str) -> torch.device:
        """``trainer.device`` for this process: cuda:LOCAL_RANK or the CPU under torchrun (:func:`process_device`)."""
        return process_device(setting, self.context.local_rank) if self.enabled else resolve_device(setting)

    def wrap(self, model: nn.Module, device: torch.device, state: str, compile: bool) -> Callable[..., Any]:
        """The training forward: ``model`` (or its ``forward_with_state``, for ``state="carry"``) inside DDP, which
        broadcasts rank 0's weights now and averages the gradients in every backward pass."""
        module = _WithState(model) if state == "carry" else model
        self.ddp = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
        return torch.compile(self.ddp) if compile else self.ddp

    def sync(self, last_in_window: bool) -> contextlib.AbstractContextManager:
        """Around a micro-batch's forward and backward: gradients are averaged only at a window's last one."""
        if self.ddp is None or last_in_window:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def rows(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
        """This process's rows of a global batch; None when it has none (a short last batch)."""
        start, stop = shard_bounds(len(batch["target"]), self.context.rank, self.context.world_size)
        return slice_rows(batch, start, stop) if stop > start else None

    def local(self, batch: Mapping[str, Tensor], objective: Any) -> tuple[dict[str, Tensor], float | None]:
        """(this process's part of the global training ``batch``, its loss weight); (batch, None) for one process.

        The weight is N × (what this part's loss averages over) / (what the global loss averages over): DDP
        divides the summed gradients by N. No rows: one row of the batch with weight 0 (see the module docstring).
        """
        if not self.enabled:
            return dict(batch), None
        part = self.rows(batch)
        if part is None:
            return slice_rows(batch, 0, 1), 0.0
        total = objective.loss_count(batch)
        return part, (self.context.world_size * objective.loss_count(part) / total if total else 0.0)

    @staticmethod
    def weighted(loss: Tensor, outputs: Tensor, share: float) -> Tensor:
        """This process's loss term: ``loss × share``. With no rows or nothing to average (share 0; the mean
        would be 0/0) a zero that still reaches every parameter the forward used (DDP waits for all of them)."""
        return outputs.float().sum() * 0.0 if share == 0.0 else loss * share

    def loss_value(self, term: Tensor) -> tuple[float, str]:
        """(the global batch's loss, " on rank R of N" naming the ranks whose term is not finite, or ""), the same
        on every process: one all-reduce of [Σ terms / N, one non-finite flag per rank]. One process: the loss."""
        if not self.enabled:
            return term.item(), ""
        world, vector = self.context.world_size, torch.zeros(1 + self.context.world_size, dtype=torch.float64)
        value = term.detach().double().item()
        vector[0], vector[1 + self.context.rank] = value / world, float(not math.isfinite(value))
        vector = all_reduce_sum(vector)
        bad = [str(rank) for rank in range(world) if vector[1 + rank] > 0]
        return vector[0].item(), f" on rank {', '.join(bad)} of {world}" if bad else ""

    def reduce_stats(self, stats: Tensor) -> Tensor:
        """An objective's additive statistics summed over the processes (the global metric on every process)."""
        return all_reduce_sum(stats) if self.enabled else stats

    def main_value(self, value: T) -> T:
        """Rank 0's ``value`` on every process (e.g. the run's clock, so that all ranks stop at the same step)."""
        return broadcast_object(value) if self.enabled else value

    def broadcast_model(self, model: nn.Module) -> None:
        """Rank 0's weights into every process's ``model`` (e.g. after rank 0 loaded best.pt)."""
        if self.enabled:
            for tensor in model.state_dict().values():
                work = tensor.to(_comm_device())
                dist.broadcast(work, src=0)
                tensor.copy_(work)

    # ------------------------------------------------------------------------------------------- checkpoints
    def gather_states(self, rng: Any, carry: Any) -> dict[str, Any] | None:
        """The checkpoint's per-rank entries: ``{}`` for one process; on rank 0 ``{"world_size", "rng_ranks",
        "carry_ranks"}`` (every process's RNG and carried state, by rank); None on the other ranks (a collective:
        every process calls it)."""
        if not self.enabled:
            return {}
        gathered = gather_objects((rng, carry))
        if gathered is None:
            return None
        return {
            "world_size": self.context.world_size,
            "rng_ranks": [rng for rng, _ in gathered],
            "carry_ranks": [carry for _, carry in gathered],
        }

    def own(self, payload: Mapping[str, Any], key: str) -> Any:
        """This process's ``key`` ("rng" or "carry") of a checkpoint. A checkpoint of another number of processes
        gives rank 0 its (rank 0's) state and the other ranks None (they keep their fresh streams); a carried state
        in the middle of an epoch cannot be re-sharded and is refused."""
        saved_world, ranks = int(payload.get("world_size", 1)), payload.get(f"{key}_ranks")
        if saved_world == self.context.world_size:
            return payload.get(key) if ranks is None else ranks[self.context.rank]  # old checkpoints: no carry
        if key == "carry" and payload.get("carry") is not None:
            raise CheckpointError(
                f"this checkpoint was written by {saved_world} process(es) in the middle of an epoch with a carried "
                f"state (trainer.state=carry), which cannot be split over {self.context.world_size}: resume it with "
                f"{saved_world} (torchrun --nproc_per_node ...), or from a checkpoint at an epoch's end"
            )
        if key == "rng" and self.is_main:
            log.warning(
                "resuming a checkpoint of %d process(es) with %d: the data order is the same (the batch is global), "
                "but ranks > 0 draw fresh random streams (dropout differs from an uninterrupted run)",
                saved_world,
                self.context.world_size,
            )
        return payload.get(key) if self.is_main else None


class _WithState(nn.Module):
    """``model.forward_with_state`` as a module's forward, so that DDP can wrap a carried-state training step."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return self.model.forward_with_state(batch, state)
