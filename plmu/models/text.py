"""Text classifiers: token embedding → backbone → pooling → head; sentence pairs share one encoder.

    inputs (batch, time) ids, mask (batch, time) → TokenEmbedding → backbone → (batch, time, hidden)
        → last real step or masked mean → (batch, hidden) → Linear → (batch, classes)
    pairs: a, b encoded by the same embedding and backbone → PairHead([a, b, |a−b|, a·b]) → (batch, classes)

The backbone is any registered family that takes a padding mask (:mod:`plmu.models.backbones`, e.g.
``backbone=plmu``, the parallel LMU stack); the vocabulary size and the number of classes come from the data
(``plmu-train`` passes them in). ``forward_recurrent`` runs the same weights one token at a time (``step`` with the
padding mask), as a deployed streaming model would.
The models are :class:`~plmu.models.sequence.SequenceModel` (one text) and :class:`~plmu.models.sequence.PairModel`.
"""

from __future__ import annotations

from typing import Any

from plmu.checks import ArgumentError, flag, one_of
from plmu.models.adapters import TokenEmbedding
from plmu.models.backbones import backbone as registered
from plmu.models.backbones import build_backbone, forwards
from plmu.models.heads import POOLINGS, PairHead, PerStepHead
from plmu.models.sequence import PairModel, SequenceModel, head_for


@forwards("backbone")
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
    embed_dropout: float = 0.0,
    **backbone_options: Any,
) -> SequenceModel:
    """The text tasks' model (``conf/task/base/text_classification.yaml``; sizes: ``conf/sizes/<family>.yaml``):
    options not named here go to the backbone (e.g. the LMU's ``order`` and ``theta``, the transformer's
    ``num_heads``). ``dropout`` is the head's (on the pooled features), ``embed_dropout`` the embedding's."""
    one_of("pooling", pooling, POOLINGS)
    last_only = pooling == "last" and registered(backbone, masked=True).last_alone
    encoder = build_backbone(backbone, embed_dim, hidden_size, num_layers, last_only, **backbone_options)
    # after the backbone: the initialisation of v0.1
    adapter = TokenEmbedding(vocab_size, embed_dim, padding_idx=0, dropout=embed_dropout)
    if flag("pair", pair):
        head = PairHead(hidden_size, num_classes, mlp_hidden or hidden_size, dropout=dropout)
        return PairModel(adapter, encoder, head, pooling, dropout)
    return SequenceModel(adapter, encoder, head_for(False, hidden_size, num_classes, pooling, dropout))


@forwards("backbone")
def language_model(
    vocab_size: int,
    backbone: str = "plmu",
    embed_dim: int = 128,
    hidden_size: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,
    pooling: None = None,
    **backbone_options: Any,
) -> SequenceModel:
    """A next-token model (``task=text8``): ids (batch, time) → logits (batch, time, vocab_size).

    TokenEmbedding → a causal backbone over every step → Linear to the vocabulary. Trained on chunks of streams
    with the state carried (parallel LMU, LSTM) or one chunk as the context (transformer); generates as an RNN
    (``step``), O(1) per token for the LMU and the LSTM. ``pooling`` must stay null: every step is predicted.
    """
    if pooling is not None:
        raise ArgumentError("pooling", f"be null for a language model (it predicts every step), got {pooling!r}")
    if registered(backbone, masked=True).bidirectional:  # a transformer: causal, and the model's dropout
        if backbone_options.setdefault("causal", True) is not True:
            raise ArgumentError("causal", "be true for a language model (each prediction would see the future)")
        backbone_options.setdefault("dropout", dropout)
    encoder = build_backbone(backbone, embed_dim, hidden_size, num_layers, **backbone_options)
    adapter = TokenEmbedding(vocab_size, embed_dim, padding_idx=None)  # every id is a real symbol
    return SequenceModel(adapter, encoder, PerStepHead(hidden_size, vocab_size, dropout))
