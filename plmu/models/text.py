"""Text classifiers: token embedding → backbone → pooling → head; sentence pairs share one encoder.

    inputs (batch, time) ids, mask (batch, time) → TokenEmbedding → backbone → (batch, time, hidden)
        → last real step or masked mean → (batch, hidden) → Linear → (batch, classes)
    pairs: a, b encoded by the same embedding and backbone → PairHead([a, b, |a−b|, a·b]) → (batch, classes)

The backbone is the parallel LMU stack, the LSTM or a transformer (``backbone=plmu|lstm|transformer``); the
vocabulary size and the number of classes come from the data (``plmu-train`` passes them in). ``forward_recurrent``
runs the same weights one token at a time (``step`` with the padding mask), as a deployed streaming model would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from plmu.errors import ConfigError
from plmu.layers import ParallelLMUStack
from plmu.models.adapters import TokenEmbedding
from plmu.models.encoders import LSTMEncoder
from plmu.models.heads import PairHead, last_valid, masked_mean
from plmu.models.sizing import count_parameters
from plmu.models.transformer import TransformerBackbone

BACKBONES = ("plmu", "lstm", "transformer")
POOLINGS = ("last", "mean")


def build_backbone(
    kind: str, input_size: int, hidden_size: int, num_layers: int, last_only: bool = False, **options: Any
) -> nn.Module:
    """A sequence backbone (batch, time, input_size) → (batch, time, hidden_size) with ``forward(x, mask=...)``;
    ``last_only``: (batch, hidden_size), the last real step only (the parallel LMU then computes m_T alone, one
    matmul: the paper's eq. 25, exact for left and right padding)."""
    if kind == "plmu":
        return ParallelLMUStack(input_size, hidden_size, num_layers, return_sequences=not last_only, **options)
    if kind == "lstm":
        return LSTMEncoder(input_size, hidden_size, num_layers, return_sequences=not last_only, **options)
    if kind == "transformer":
        if input_size != hidden_size:
            raise ValueError(f"a transformer keeps its width: embed_dim ({input_size}) must equal hidden_size")
        return TransformerBackbone(hidden_size, num_layers, **options)
    raise ValueError(f"backbone must be one of {list(BACKBONES)}, got {kind!r}")


class TextClassifier(nn.Module):
    """Token ids → class logits; ``pair=True`` classifies (inputs_a, inputs_b) with one shared encoder."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        backbone: nn.Module,
        embed_dim: int,
        hidden_size: int,
        pooling: str = "last",
        pair: bool = False,
        mlp_hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        self.embedding = TokenEmbedding(vocab_size, embed_dim, padding_idx=0)
        self.backbone, self.pooling, self.pair = backbone, pooling, pair
        self.dropout = nn.Dropout(dropout)
        if pair:
            self.head: nn.Module = PairHead(hidden_size, num_classes, mlp_hidden or hidden_size, dropout=dropout)
        else:
            self.head = nn.Linear(hidden_size, num_classes)

    def _pool(self, h: Tensor, mask: Tensor | None) -> Tensor:
        if h.dim() == 2:  # the backbone returned the last real step already
            return h
        return last_valid(h, mask) if self.pooling == "last" else masked_mean(h, mask)

    def encode(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        """ids (batch, time) → one vector per text (batch, hidden)."""
        return self.dropout(self._pool(self.backbone(self.embedding(ids), mask=mask), mask))

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        if self.pair:
            a = self.encode(batch["inputs_a"], batch.get("mask_a"))
            return self.head(a, self.encode(batch["inputs_b"], batch.get("mask_b")))
        return self.head(self.encode(batch["inputs"], batch.get("mask")))

    def encode_recurrent(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        """As :meth:`encode`, one token at a time through the backbone's ``step`` (padded steps hold the state)."""
        if not hasattr(self.backbone, "step") or getattr(self.backbone, "causal", True) is False:
            raise ConfigError(
                f"{type(self.backbone).__name__} (causal: false) cannot run as an RNN: evaluate it with --mode parallel"
            )
        x = self.embedding(ids)
        state, outputs = self.backbone.initial_state(ids.shape[0]), []
        for t in range(ids.shape[1]):
            mask_t = None if mask is None else mask[:, t]
            out, state = self.backbone.step(x[:, t], state, mask_t=mask_t)
            outputs.append(out)
        return self._pool(torch.stack(outputs, dim=1), mask)

    def forward_recurrent(self, batch: Mapping[str, Tensor]) -> Tensor:
        if self.pair:
            a = self.encode_recurrent(batch["inputs_a"], batch.get("mask_a"))
            return self.head(a, self.encode_recurrent(batch["inputs_b"], batch.get("mask_b")))
        return self.head(self.encode_recurrent(batch["inputs"], batch.get("mask")))

    @property
    def state_batch_dim(self) -> int:
        return getattr(self.backbone, "state_batch_dim", 0)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)


def text_classifier(
    vocab_size: int,
    num_classes: int,
    backbone: str = "plmu",
    embed_dim: int = 128,
    hidden_size: int = 128,
    num_layers: int = 1,
    pooling: str = "last",
    pair: bool = False,
    mlp_hidden: int | None = None,
    dropout: float = 0.0,
    **backbone_options: Any,
) -> TextClassifier:
    """The ``_target_`` of ``conf/model/text_*.yaml``: options not named here go to the backbone (e.g. the LMU's
    ``order`` and ``theta``, the transformer's ``num_heads``)."""
    last_only = pooling == "last" and backbone in ("plmu", "lstm")
    encoder = build_backbone(backbone, embed_dim, hidden_size, num_layers, last_only, **backbone_options)
    return TextClassifier(vocab_size, num_classes, encoder, embed_dim, hidden_size, pooling, pair, mlp_hidden, dropout)
