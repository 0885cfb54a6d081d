"""Sequence models: input adapter → backbone → head, trained in parallel and runnable as an RNN.

    batch["inputs"] (batch, T, features) or token ids (batch, T), batch["mask"] (batch, T) bool or absent
        → adapter  (IdentityAdapter, LinearAdapter, TokenEmbedding)           → (batch, T, dim)
        → backbone (ParallelLMUStack, OriginalLMUStack, LSTMEncoder, TransformerBackbone)
                                                                              → (batch, T, hidden) or (batch, hidden)
        → head     (LastStepHead, MeanPoolHead, MaxPoolHead, PerStepHead)     → (batch, out) or (batch, T, out)

``PairModel`` encodes two sequences (``inputs_a``, ``inputs_b``) with one shared adapter and backbone, pools each, and
classifies the pair with a ``PairHead``. psMNIST reads the last step (the parallel LMU then needs m_T alone, one
matmul), Mackey-Glass predicts at every step, a text classifier pools over real tokens.

Every backbone streams: ``initial_state(batch)`` and ``step(x_t, state, mask_t=None)``; ``forward_recurrent`` runs the
same weights one step at a time, as a deployed streaming model would, and gives ``forward``'s outputs.
The builder of the real-valued tasks (``sequence_model``, the ``_target_`` of conf/task/{psmnist,mackey_glass}.yaml)
is at the bottom.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from plmu.checks import ArgumentError, flag, one_of, probability
from plmu.dropout import Dropout
from plmu.errors import ConfigError
from plmu.models.adapters import IdentityAdapter, LinearAdapter
from plmu.models.backbones import forwards
from plmu.models.heads import POOLINGS, LastStepHead, MaxPoolHead, MeanPoolHead, PairHead, PerStepHead, pool
from plmu.models.sizing import count_parameters

# Parameter names of earlier versions (a plain encoder + linear head; a text classifier's embedding): renamed as a
# SequenceModel loads a state dict (its load hook), so old checkpoints load and a killed run started before resumes.
RENAMED_PARAMETERS = (("encoder.", "backbone."), ("embedding.", "adapter."))


def renamed_parameters(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``state_dict`` with the earlier names (below ``prefix``) in today's."""
    renamed = {}
    for key, value in state_dict.items():
        for old, new in RENAMED_PARAMETERS:
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old) :]
                break
        renamed[key] = value
    return renamed


def _as_batch(batch: Mapping[str, Tensor] | Tensor) -> Mapping[str, Tensor]:
    """A task's batch is a dict (``inputs``, ``mask``, ``target``, ...); a bare tensor is the inputs."""
    return batch if isinstance(batch, Mapping) else {"inputs": batch}


def _masked(mask: Tensor | None, key: str = "mask") -> dict[str, Tensor]:
    # The keyword is passed only with a mask: backbones without mask support (the original LMU) run unchanged.
    return {} if mask is None else {key: mask}


class SequenceModel(nn.Module):
    """adapter → backbone → head over one sequence per example (see the module docstring for shapes)."""

    def __init__(self, adapter: nn.Module, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.adapter, self.backbone, self.head = adapter, backbone, head
        self._register_load_state_dict_pre_hook(_rename_old_keys)

    def encode(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        """inputs (batch, T, ...) → the backbone's features (batch, T, hidden), or (batch, hidden) if it returns its
        last real step only."""
        return self.backbone(self.adapter(inputs), **_masked(mask))

    def encode_recurrent(self, inputs: Tensor, mask: Tensor | None = None, state: Any = None) -> tuple[Tensor, Any]:
        """As :meth:`encode` (every step's features, (batch, T, hidden)), one step at a time through ``step``,
        from ``state`` (None: the initial state); padded steps hold the state. Returns (features, final state)."""
        if getattr(self.backbone, "causal", True) is False:
            raise ConfigError(
                f"{type(self.backbone).__name__} (causal: false) cannot run as an RNN: evaluate it with --mode parallel"
            )
        x = self.adapter(inputs)  # adapters act on each step alone, so all steps at once is the same
        state = self.backbone.initial_state(x.shape[0]) if state is None else state
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.backbone.step(x[:, t], state, **_masked(None if mask is None else mask[:, t], "mask_t"))
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    def forward(self, batch: Mapping[str, Tensor] | Tensor) -> Tensor:
        """batch["inputs"] (or a tensor) → (batch, out), or (batch, T, out) with a per-step head."""
        batch = _as_batch(batch)
        mask = batch.get("mask")
        return self.head(self.encode(batch["inputs"], mask), mask)

    def forward_recurrent(self, batch: Mapping[str, Tensor] | Tensor) -> Tensor:
        """The same outputs as ``forward``, computed one step at a time."""
        return self.forward_recurrent_with_state(batch)[0]

    def forward_recurrent_with_state(
        self, batch: Mapping[str, Tensor] | Tensor, state: Any = None
    ) -> tuple[Tensor, Any]:
        """:meth:`forward_with_state`'s outputs and state, computed one step at a time (a stream's chunk as an RNN)."""
        batch = _as_batch(batch)
        mask = batch.get("mask")
        h, state = self.encode_recurrent(batch["inputs"], mask, state)
        return self.head(h, mask), state

    def forward_with_state(self, batch: Mapping[str, Tensor] | Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One chunk of a stream, continuing ``state`` (None: the initial state) → (outputs, the state after it).

        Chunks fed one after another give the outputs of the whole sequence (``trainer.state=carry``). Refused for
        a backbone with ``carries_state = False`` (the transformer: its key/value cache would grow with the whole
        stream; it sees one chunk at a time instead).
        """
        if (why := self.carry_error()) is not None:
            raise ConfigError(why)
        batch = _as_batch(batch)
        mask = batch.get("mask")
        h, state = self.backbone(self.adapter(batch["inputs"]), state, return_state=True, **_masked(mask))
        return self.head(h, mask), state

    def carry_error(self) -> str | None:
        """Why this model cannot carry its state from chunk to chunk (``trainer.state=carry``), or None if it can."""
        if not getattr(self.backbone, "carries_state", True):  # a backbone says so (the transformer's cache)
            return (
                f"{type(self.backbone).__name__} cannot carry its state from chunk to chunk (its key/value cache "
                "would grow with the stream): use trainer.state=reset, so that each chunk is its context"
            )
        return None

    def initial_state(self, batch: int) -> Any:
        return self.backbone.initial_state(batch)

    def step(self, x_t: Tensor, state: Any, mask_t: Tensor | None = None) -> tuple[Tensor, Any]:
        """One step as an RNN: x_t (batch, features) or ids (batch,) → (the head on this step (batch, out), state)."""
        h, state = self.backbone.step(self.adapter(x_t[:, None])[:, 0], state, **_masked(mask_t, "mask_t"))
        return self.head(h), state

    @property
    def state_batch_dim(self) -> int:
        """Where the batch is in this model's state (see plmu.models.state)."""
        return getattr(self.backbone, "state_batch_dim", 0)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)


class PairModel(SequenceModel):
    """Two sequences per example, one shared adapter and backbone, each pooled, then a :class:`PairHead`.

    batch["inputs_a"], batch["inputs_b"] (batch, T_a), (batch, T_b), masks ``mask_a``, ``mask_b`` → (batch, classes).
    """

    def __init__(
        self, adapter: nn.Module, backbone: nn.Module, head: PairHead, pooling: str = "last", dropout: float = 0.0
    ) -> None:
        super().__init__(adapter, backbone, head)
        self.pooling = one_of("pooling", pooling, POOLINGS)
        self.dropout = Dropout(probability("dropout", dropout))

    def _pair(self, batch: Mapping[str, Tensor], encode: Any) -> Tensor:
        a, b = (
            self.dropout(
                pool(encode(batch[f"inputs_{s}"], batch.get(f"mask_{s}")), batch.get(f"mask_{s}"), self.pooling)
            )
            for s in "ab"
        )
        return self.head(a, b)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self._pair(batch, self.encode)

    def forward_recurrent(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self._pair(batch, lambda inputs, mask: self.encode_recurrent(inputs, mask)[0])

    def carry_error(self) -> str | None:
        return "a pair model classifies two whole sequences and carries no state: use trainer.state=reset"

    def forward_with_state(self, batch: Mapping[str, Tensor], state: Any = None) -> tuple[Tensor, Any]:
        raise ConfigError(self.carry_error())

    def step(self, x_t: Tensor, state: Any, mask_t: Tensor | None = None) -> tuple[Tensor, Any]:
        raise NotImplementedError("a pair model classifies two whole sequences: stream each with encode_recurrent")


def _rename_old_keys(state_dict: dict, prefix: str, *_: Any) -> None:
    renamed = renamed_parameters(state_dict, prefix)  # in place: load_state_dict reads the dict it was given
    state_dict.clear()
    state_dict.update(renamed)


def head_for(per_step: bool, hidden_size: int, output_size: int, pooling: str = "last", dropout: float = 0.0):
    """The head a task needs: a readout at every step (``per_step``), or of the pooled sequence."""
    if flag("per_step", per_step):
        return PerStepHead(hidden_size, output_size, dropout)
    head_class = {"last": LastStepHead, "mean": MeanPoolHead, "max": MaxPoolHead}[one_of("pooling", pooling, POOLINGS)]
    return head_class(hidden_size, output_size, dropout)


@forwards("backbone")
def sequence_model(
    input_size: int,
    output_size: int,
    per_step: bool,
    hidden_size: int,
    num_layers: int = 1,
    backbone: str = "plmu",
    pooling: str = "last",
    dropout: float = 0.0,
    **backbone_options: Any,
) -> SequenceModel:
    """A registered family (:mod:`plmu.models.backbones`: ``backbone``, options not named here go to it) on
    real-valued sequences, and the task's head: a readout at every step (``per_step``), or of the sequence pooled
    (``pooling``; ``dropout`` on what the head reads). The input goes in as it is, unless the family works at its
    own width (``same_width``: a linear map to ``hidden_size`` first). A family with a ``causal`` option (attention)
    is causal exactly when the task predicts every step, unless told. Reading the last step of a family that can
    return it alone builds it so (the parallel LMU then computes m_T alone: one matmul)."""
    from plmu.models.backbones import backbone as registered

    entry = registered(backbone)
    per_step = flag("per_step", per_step)
    if entry.bidirectional:
        causal = backbone_options.get("causal")
        causal = per_step if causal is None else flag("causal", causal)
        if per_step and not causal:
            raise ArgumentError("causal", "be true for a per-step task (each step's prediction would see the future)")
        backbone_options["causal"] = causal
    last_alone = not per_step and one_of("pooling", pooling, POOLINGS) == "last" and entry.last_alone
    width = hidden_size if entry.same_width else input_size
    module = entry.builder()(width, hidden_size, num_layers, return_sequences=not last_alone, **backbone_options)
    adapter = LinearAdapter(input_size, hidden_size) if entry.same_width else IdentityAdapter(input_size)
    return SequenceModel(adapter, module, head_for(per_step, hidden_size, output_size, pooling, dropout))
