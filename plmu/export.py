"""A trained model's one-step function, exported for streaming deployment without plmu.

An LMU (and an LSTM) runs at inference as an RNN: one O(1) step per input, with a fixed-size state. This module
turns a model's ``step`` into a standalone program

    (x_t, state) → (output_t, new_state)
    x_t       (batch, input_size) float, or (batch,) int64 token ids for a model with a TokenEmbedding
    state     a tuple of tensors, the model's ``initial_state`` flattened (e.g. one (batch, memory_d·order) per LMU
              layer; an LSTM's h and c as (layers, batch, hidden): its batch is at dim ``state_batch_dim``)
    output_t  the head on this step: (batch, out)

saved either with ``torch.export`` (a ``.pt2`` file: ``torch.export.load(path).module()``) or as TorchScript
(``torch.jit.load(path)``). Both load with torch alone; the batch size is free (traced at 2, checked from 1 up).
The start state is zeros of the shapes in the file's metadata (``plmu_step.json``, stored inside the file), which
also says the input's shape and dtype: :func:`load_step` reads it and checks every call against it.

A model whose state grows with time (a transformer's key/value cache) has no fixed-shape step and is refused, as is
a model without ``step``/``initial_state`` or one left in training mode (its dropout would be frozen into the
program).
"""

from __future__ import annotations

import io
import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from plmu.errors import PlmuError
from plmu.models.state import state_batch_dim
from plmu.train.checkpoint import write_bytes_atomic

FORMATS = ("export", "torchscript")
SUFFIX = {"export": ".pt2", "torchscript": ".torchscript.pt"}
METADATA_FILE = "plmu_step.json"
TRACE_BATCH = 2  # a batch of 1 would be specialised by torch.export; 2 keeps the batch dimension symbolic
MAX_BATCH = 1 << 16


class ExportError(PlmuError, ValueError):
    """A model that cannot be exported as a step function, or a call that does not fit the exported one."""


class StepModule(nn.Module):
    """``model.step`` with its state as a flat tuple of tensors: forward(x_t, state) → (output_t, new_state).

    Plain tuples in and out, so the saved program needs none of plmu's state types (lists, named tuples) to load.
    """

    def __init__(self, model: nn.Module, state_spec: Any) -> None:
        super().__init__()
        self.model = model
        self.state_spec = state_spec

    def forward(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        output, new_state = self.model.step(x_t, tree_unflatten(list(state), self.state_spec))
        return output, tuple(tree_flatten(new_state)[0])


@dataclass
class StepSignature:
    """What the step takes and gives; ``None`` in a shape is the batch."""

    input_shape: list[int | None]
    input_dtype: str
    state_shapes: list[list[int | None]]
    state_dtypes: list[str]
    state_batch_dim: int
    output_shape: list[int | None]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _name(module: nn.Module) -> str:
    return type(module).__name__


def example_input(model: nn.Module, batch: int) -> Tensor:
    """A zero x_t the model's ``step`` takes: (batch,) ids behind a token embedding, else (batch, input_size)."""
    adapter = getattr(model, "adapter", None)
    if adapter is not None and hasattr(adapter, "vocab_size"):
        return torch.zeros(batch, dtype=torch.long)
    size = getattr(adapter if adapter is not None else model, "input_size", None)
    if not isinstance(size, int):
        raise ExportError(
            f"cannot tell the input size of {_name(model)} (no adapter with input_size or vocab_size): pass "
            f"example_input=a (batch, features) tensor"
        )
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.zeros(batch, size, dtype=dtype)


def _with_batch(shape: torch.Size, batch_dim: int) -> list[int | None]:
    return [None if i == batch_dim else int(n) for i, n in enumerate(shape)]


def check_steppable(model: nn.Module, x_t: Tensor) -> tuple[list[Tensor], Any, StepSignature]:
    """The model's flattened start state (batch of ``x_t``), its structure and signature; :class:`ExportError`
    for a model without a fixed-shape step."""
    if not callable(getattr(model, "step", None)) or not callable(getattr(model, "initial_state", None)):
        raise ExportError(
            f"{_name(model)} has no step/initial_state: only models that run as an RNN can be exported "
            f"(plmu's SequenceModel with an LMU or LSTM backbone)"
        )
    if model.training:
        raise ExportError(f"{_name(model)} is in training mode (dropout would be frozen in): call model.eval() first")
    batch = x_t.shape[0]
    try:
        leaves, spec = tree_flatten(model.initial_state(batch))
    except ValueError as error:  # e.g. a non-causal transformer, which has no streaming state
        raise ExportError(f"{_name(model)} cannot run as an RNN: {error}") from None
    if not leaves or not all(isinstance(leaf, Tensor) for leaf in leaves):
        raise ExportError(f"{_name(model)}.initial_state gives no tensors to carry: nothing to export as a state")
    if any(bool(leaf.any()) for leaf in leaves):
        raise ExportError(f"{_name(model)}.initial_state is not zeros: the exported file's start state would be wrong")
    batch_dim = state_batch_dim(model)
    try:
        with torch.no_grad():
            output, new_state = model.step(x_t, tree_unflatten(list(leaves), spec))
    except (NotImplementedError, ValueError) as error:  # e.g. a pair model, which classifies two whole sequences
        raise ExportError(f"{_name(model)} cannot step: {error}") from None
    new_leaves, new_spec = tree_flatten(new_state)
    grown = [i for i, (a, b) in enumerate(zip(leaves, new_leaves, strict=False)) if a.shape != b.shape]
    if new_spec != spec or grown:
        raise ExportError(
            f"{_name(model)}'s state changes shape from step to step (a transformer's key/value cache grows): "
            f"no fixed-shape step to export; export an LMU or LSTM model"
        )
    signature = StepSignature(
        input_shape=_with_batch(x_t.shape, 0),
        input_dtype=str(x_t.dtype).removeprefix("torch."),
        state_shapes=[_with_batch(leaf.shape, batch_dim) for leaf in leaves],
        state_dtypes=[str(leaf.dtype).removeprefix("torch.") for leaf in leaves],
        state_batch_dim=batch_dim,
        output_shape=_with_batch(output.shape, 0),
    )
    return leaves, spec, signature


def export_step(model: nn.Module, format: str = "export", example: Tensor | None = None) -> tuple[Any, StepSignature]:
    """``model.step`` as a program (an ``ExportedProgram``, or a ``torch.jit.ScriptModule``) and its signature.

    ``example``: an x_t (batch, ...) to trace with (default: zeros from :func:`example_input`); the batch stays free.
    """
    if format not in FORMATS:
        raise ExportError(f"format must be one of {list(FORMATS)}, got {format!r}")
    x_t = example_input(model, TRACE_BATCH) if example is None else example
    leaves, spec, signature = check_steppable(model, x_t)
    module = StepModule(model, spec).eval()
    state = tuple(leaves)
    with torch.no_grad():
        if format == "torchscript":
            with warnings.catch_warnings():  # tracer notes about python values; the result is checked after saving
                warnings.simplefilter("ignore")
                return torch.jit.trace(module, (x_t, state), check_trace=False), signature
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        dims = ({0: batch}, tuple({signature.state_batch_dim: batch} for _ in leaves))
        with warnings.catch_warnings():  # nn.LSTM re-assigns its flat weight list in forward; the values are kept
            warnings.filterwarnings("ignore", message=".*were assigned during export.*")
            return torch.export.export(module, (x_t, state), dynamic_shapes=dims), signature


def save_step(program: Any, signature: StepSignature, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``program`` with its metadata (the signature, ``info``) inside the file; returns the path."""
    path = Path(path)
    metadata = {"signature": signature.to_json(), "torch_version": torch.__version__, **(info or {})}
    extra = {METADATA_FILE: json.dumps(metadata, indent=1)}
    # Serialised in memory, then written atomically: a full disk is one clear error (torch's own writer aborted the
    # process) and the previous export at ``path`` stays whole until the new one is complete.
    buffer = io.BytesIO()
    if isinstance(program, torch.export.ExportedProgram):
        torch.export.save(program, buffer, extra_files=extra)
    else:
        with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; it is the format asked for
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(program, buffer, _extra_files=extra)
    write_bytes_atomic(path, buffer.getvalue(), "the export", "another --output")
    return path


class LoadedStep:
    """An exported step loaded back: call it as ``output, state = step(x_t, state)``; shapes are checked."""

    def __init__(self, fn: Callable[..., Any], metadata: dict[str, Any], path: Path) -> None:
        self.fn, self.metadata, self.path = fn, metadata, path
        self.signature = StepSignature(**metadata["signature"])

    def initial_state(self, batch: int = 1) -> tuple[Tensor, ...]:
        """Zeros of the state's shapes for ``batch`` examples."""
        return tuple(
            torch.zeros([batch if n is None else n for n in shape], dtype=getattr(torch, dtype))
            for shape, dtype in zip(self.signature.state_shapes, self.signature.state_dtypes, strict=True)
        )

    def _expect(self, what: str, tensor: Any, shape: list[int | None], dtype: str, batch: int | None) -> None:
        want = "(" + ", ".join("batch" if n is None else str(n) for n in shape) + f") {dtype}"
        got = (
            f"{tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"
            if isinstance(tensor, Tensor)
            else (type(tensor).__name__)
        )
        fits = isinstance(tensor, Tensor) and tensor.dim() == len(shape) and str(tensor.dtype) == f"torch.{dtype}"
        fits = fits and all(n is None or n == m for n, m in zip(shape, tensor.shape, strict=True))
        if fits and batch is not None:
            fits = tensor.shape[shape.index(None)] == batch
            want += f" with batch {batch} (as x_t)"
        if not fits:
            raise ExportError(f"{self.path.name}: {what} must be {want}, got {got}")

    def __call__(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        sig = self.signature
        self._expect("x_t", x_t, sig.input_shape, sig.input_dtype, None)
        if not isinstance(state, (tuple, list)) or len(state) != len(sig.state_shapes):
            raise ExportError(
                f"{self.path.name}: state must be a tuple of {len(sig.state_shapes)} tensors (initial_state(batch) "
                f"gives it), got {type(state).__name__} of {len(state) if isinstance(state, (tuple, list)) else 1}"
            )
        for i, (leaf, shape, dtype) in enumerate(zip(state, sig.state_shapes, sig.state_dtypes, strict=True)):
            self._expect(f"state[{i}]", leaf, shape, dtype, x_t.shape[0])
        output, new_state = self.fn(x_t, tuple(state))
        return output, tuple(new_state)


def read_metadata(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(format, metadata) of a saved step file; :class:`ExportError` for a file this module did not write."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no exported step at {path}: give the file plmu-export wrote")
    extra: dict[str, Any] = {METADATA_FILE: ""}
    errors = []
    readers = [("export", torch.export.load), ("torchscript", torch.jit.load)]
    if _archive_records(path) and not any(name.endswith("archive_format") for name in _archive_records(path)):
        readers.reverse()  # a TorchScript zip: torch.export.load would log its failure (20 lines) before the fallback
    for format, read in readers:
        try:
            if format == "export":
                program = read(path, extra_files=extra)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    program = read(str(path), _extra_files=extra)
        except Exception as error:  # not this format: try the other one
            errors.append(f"{format}: {type(error).__name__}")
            continue
        if not extra[METADATA_FILE]:
            raise ExportError(f"{path} has no {METADATA_FILE}: it was not written by plmu-export")
        metadata = json.loads(extra[METADATA_FILE])
        metadata["_program"] = program
        return format, metadata
    raise ExportError(f"{path} is neither a torch.export .pt2 nor a TorchScript file ({'; '.join(errors)})")


def _archive_records(path: Path) -> list[str]:
    """The record names of a zip archive (both formats are zips), or [] for anything else."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def load_step(path: str | Path) -> LoadedStep:
    """The step function saved at ``path`` (either format), with its inputs checked against its metadata."""
    format, metadata = read_metadata(path)
    program = metadata.pop("_program")
    fn = program.module() if format == "export" else program
    return LoadedStep(fn, metadata, Path(path))


def max_step_difference(model: nn.Module, step: Callable[..., Any], x: Tensor) -> float:
    """Largest |output| and state difference between ``model.step`` and ``step`` fed x (time, batch, ...) from
    the zero state: the exported program must be the model's step to float rounding."""
    leaves, spec = tree_flatten(model.initial_state(x.shape[1]))
    ours, theirs, worst = tree_unflatten(list(leaves), spec), tuple(leaves), 0.0
    with torch.no_grad():
        for x_t in x:
            out_a, ours = model.step(x_t, ours)
            out_b, theirs = step(x_t, theirs)
            worst = max(worst, (out_a - out_b).abs().max().item())
            for a, b in zip(tree_flatten(ours)[0], theirs, strict=True):
                worst = max(worst, (a - b).abs().max().item())
    return worst


def random_inputs(model: nn.Module, steps: int, batch: int, seed: int = 0) -> Tensor:
    """x (steps, batch, ...) for checks and timing: random ids, or standard normal features."""
    example = example_input(model, batch)
    generator = torch.Generator().manual_seed(seed)
    if example.dtype == torch.long:
        vocab = model.adapter.vocab_size
        return torch.randint(0, vocab, (steps, *example.shape), generator=generator)
    return torch.randn((steps, *example.shape), generator=generator, dtype=example.dtype)


def step_latency(step: Callable[..., Any], x: Tensor, state: Any, warmup: int = 100) -> dict[str, float]:
    """Per-step wall time of ``step`` over x (time, batch, ...), each step timed alone, after ``warmup`` untimed
    steps: median, 10th and 90th percentile in microseconds."""
    times = []
    with torch.inference_mode():
        for t, x_t in enumerate(x):
            start = time.perf_counter()
            _, state = step(x_t, state)
            if t >= warmup:
                times.append(time.perf_counter() - start)
    if len(times) < 2:
        raise ExportError(f"timing needs more steps than the {warmup} warm-up steps, got {len(x)}")
    cuts = statistics.quantiles(times, n=10)
    return {
        "median_us": statistics.median(times) * 1e6,
        "p10_us": cuts[0] * 1e6,
        "p90_us": cuts[-1] * 1e6,
        "steps": len(times),
    }
