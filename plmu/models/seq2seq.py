"""Translation: an encoder over the source, a causal decoder over the target prefix, and attention between them.

    source ids (B, S) → TokenEmbedding → encoder backbone (masked)                         → memory ē (B, S, H)
    target prefix (B, T) = <s> y_1 … y_{T−1} → TokenEmbedding → causal decoder backbone     → h (B, T, H)
    attention of every h_t over ē (Luong's "general" score h_tᵀ W_a ē_s / √H, source padding masked)
                                                                                            → context c (B, T, H)
    h̃_t = tanh(W_c [c_t; h_t]) → dropout → Linear                                          → logits (B, T, V_target)

The backbone is the parallel LMU stack (``backbone=plmu``), the LSTM or a transformer (bidirectional encoder, causal
decoder), with the same embeddings, attention and readout around it, so that only the sequence model differs.

Training is teacher-forced and fully parallel: the decoder reads the whole reference prefix at once (the parallel
LMU as one causal convolution), and attention is one batched matmul over all steps. Luong et al. (2015) also fed
h̃_{t−1} back into the decoder's input ("input feeding"); that would put the attention inside the recurrence and
make training sequential, so it is left out: the decoder's recurrence sees only the target tokens, and everything it
learns about the source comes through attention.

Decoding runs the decoder as an RNN: :meth:`Seq2Seq.encode` once per source, then :meth:`Seq2Seq.decode_step` per
token, from :meth:`Seq2Seq.initial_state`. A step of the parallel LMU is O(1) in the target length
(``ParallelLMU.step``); the attention over the source costs O(S · H) per token. The transformer's decoder steps with
its key/value cache (``TransformerBackbone.step``, O(t · H) per token; no recomputation of the prefix).
``forward_recurrent`` is the teacher-forced step loop and gives ``forward``'s logits (float32 rounding): what
``plmu-eval`` checks. Logits at padded target steps are zero in both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from plmu.checks import ArgumentError, optional_positive_int, positive_int, probability
from plmu.dropout import Dropout
from plmu.models.adapters import TokenEmbedding
from plmu.models.backbones import backbone as registered
from plmu.models.backbones import build_backbone, forwards
from plmu.models.sizing import count_parameters


class Memory(NamedTuple):
    """The encoded source the decoder attends to; every tensor has the batch at dim 0, so
    ``plmu.models.state.select_state`` repeats and reorders it for beam search."""

    values: Tensor  # (B, S, H) encoder outputs ē_s
    keys: Tensor  # (B, S, H) W_a ē_s, computed once per source
    mask: Tensor  # (B, S) bool, True at real source tokens


class LuongAttention(nn.Module):
    """Luong's "general" attention: score(h_t, ē_s) = h_tᵀ W_a ē_s, scaled by 1/√H (keeps the softmax out of
    saturation at initialisation); context c_t = Σ_s softmax_s(score) ē_s over the real source tokens only."""

    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(
            positive_int("memory_size", memory_size), positive_int("query_size", query_size), bias=False
        )
        self.scale = 1.0 / math.sqrt(query_size)

    def memory(self, values: Tensor, mask: Tensor) -> Memory:
        """Encoder outputs (B, S, H) and their mask → the :class:`Memory` (keys precomputed)."""
        return Memory(values, self.key(values), mask)

    def forward(self, queries: Tensor, memory: Memory) -> tuple[Tensor, Tensor]:
        """queries (B, T, H) → (context (B, T, H), weights (B, T, S)). Every source has a real token (its </s>)."""
        scores = torch.matmul(queries, memory.keys.transpose(1, 2)) * self.scale
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        return torch.matmul(weights, memory.values), weights


def _recurrent(backbone: nn.Module) -> bool:
    """Whether a backbone can run step by step over its input (a bidirectional transformer cannot)."""
    return getattr(backbone, "causal", True) is not False


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention (see the module docstring for shapes).

    Args:
        source_embedding, target_embedding: token ids → (B, ·, embed_dim); id 0 is padding.
        encoder: a backbone (B, S, embed_dim) → (B, S, hidden) taking ``mask=``.
        decoder: a causal backbone (B, T, embed_dim) → (B, T, hidden) with ``initial_state``/``step``.
        hidden_size: the backbones' output size H.
        dropout: on the embeddings and on h̃ before the readout.
    """

    def __init__(
        self,
        source_embedding: TokenEmbedding,
        encoder: nn.Module,
        target_embedding: TokenEmbedding,
        decoder: nn.Module,
        hidden_size: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not _recurrent(decoder):
            raise ValueError("the decoder must be causal: each target step may not see the ones after it")
        self.source_embedding, self.encoder = source_embedding, encoder
        self.target_embedding, self.decoder = target_embedding, decoder
        self.attention = LuongAttention(hidden_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)  # W_c
        self.output = nn.Linear(hidden_size, target_embedding.vocab_size)
        self.dropout = Dropout(probability("dropout", dropout))

    # -------------------------------------------------------------------------------------------- the pieces
    def encode(self, source: Tensor | Mapping[str, Tensor], source_mask: Tensor | None = None, recurrent: bool = False):
        """Source ids (B, S) and mask (or a batch dict) → :class:`Memory`. ``recurrent``: the encoder one step at a
        time (``step``), where it can (not a bidirectional transformer); the same memory up to rounding."""
        if isinstance(source, Mapping):
            source, source_mask = source["source"], source["source_mask"]
        if source_mask is None:
            source_mask = source != self.source_embedding.padding_idx
        x = self.dropout(self.source_embedding(source))
        if recurrent and _recurrent(self.encoder):
            state, outputs = self.encoder.initial_state(x.shape[0]), []
            for t in range(x.shape[1]):
                out, state = self.encoder.step(x[:, t], state, mask_t=source_mask[:, t])
                outputs.append(out)
            values = torch.stack(outputs, dim=1)
        else:
            values = self.encoder(x, mask=source_mask)
        return self.attention.memory(values, source_mask)

    def readout(self, h: Tensor, memory: Memory) -> Tensor:
        """Decoder features h (B, T, H) → logits (B, T, V): attention, h̃ = tanh(W_c [c; h]), linear readout."""
        context, _ = self.attention(h, memory)
        combined = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
        return self.output(self.dropout(combined))

    # -------------------------------------------------------------------------------------------- training
    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Teacher forcing, all steps at once: batch ``source``, ``source_mask``, ``inputs`` (<s> + target),
        ``mask`` → logits (B, T, V_target), zero at padded target steps."""
        memory = self.encode(batch)
        mask = batch.get("mask")
        kwargs = {} if mask is None else {"mask": mask}
        h = self.decoder(self.dropout(self.target_embedding(batch["inputs"])), **kwargs)
        return _zero_padding(self.readout(h, memory), mask)

    def forward_recurrent(self, batch: Mapping[str, Tensor]) -> Tensor:
        """``forward``'s logits, computed as deployed: the encoder and the decoder one step at a time."""
        memory = self.encode(batch, recurrent=True)
        state, logits = self.initial_state(memory), []
        for t in range(batch["inputs"].shape[1]):
            step_logits, state = self.decode_step(batch["inputs"][:, t], state, memory)
            logits.append(step_logits)
        return _zero_padding(torch.stack(logits, dim=1), batch.get("mask"))

    # -------------------------------------------------------------------------------------------- decoding
    def initial_state(self, memory: Memory) -> Any:
        """The decoder's state before <s>, for the memory's batch."""
        return self.decoder.initial_state(memory.mask.shape[0])

    def decode_step(self, token: Tensor, state: Any, memory: Memory) -> tuple[Tensor, Any]:
        """One target token (B,) long → (logits of the next token (B, V_target), the new decoder state)."""
        x = self.dropout(self.target_embedding(token[:, None]))[:, 0]
        h, state = self.decoder.step(x, state)
        return self.readout(h[:, None], memory)[:, 0], state

    @property
    def state_batch_dim(self) -> int:
        """Where the batch is in the decoder's state (plmu.models.state; the LSTM's is 1)."""
        return getattr(self.decoder, "state_batch_dim", 0)

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)


def _zero_padding(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits at padded steps set to 0: they mean nothing (the loss skips them), and so they are equal in
    ``forward`` and ``forward_recurrent``."""
    return logits if mask is None else logits.masked_fill(~mask[..., None], 0.0)


@forwards("backbone")
def translation_model(
    vocab_size: int,
    num_classes: int,
    backbone: str = "plmu",
    embed_dim: int = 256,
    hidden_size: int = 256,
    num_layers: int = 2,
    decoder_layers: int | None = None,
    dropout: float = 0.0,
    causal: None = None,
    pooling: None = None,
    **backbone_options: Any,
) -> Seq2Seq:
    """The translation model (``task=iwslt15_en_vi``; sizes: ``conf/sizes/<family>.yaml``).

    ``vocab_size`` is the source vocabulary and ``num_classes`` the target vocabulary (the classes of every output
    token): ``plmu-train`` passes both from the data (``info["vocab_size"]``, ``info["num_classes"]``).
    ``num_layers`` layers encode, ``decoder_layers`` (default: as many) decode. Options not named here go to both
    backbones (the LMU's ``order``, ``theta``, ``memory_d``, ...; the transformer's ``num_heads``,
    ``dim_feedforward``). ``causal`` and ``pooling`` must stay null: the encoder reads the whole source (the
    transformer's both ways), the decoder is causal, and every step is predicted.
    """
    entry = registered(backbone, masked=True)
    if causal is not None:
        raise ArgumentError(
            "causal",
            f"be null for a translation model (the encoder reads the whole source, the decoder is causal), "
            f"got {causal!r}",
        )
    if pooling is not None:
        raise ArgumentError(
            "pooling", f"be null for a translation model (every target step is predicted), got {pooling!r}"
        )
    decoder_layers = num_layers if decoder_layers is None else optional_positive_int("decoder_layers", decoder_layers)
    probability("dropout", dropout)
    if entry.bidirectional:  # a transformer: the encoder reads both ways, the decoder is causal
        encoder = build_backbone(backbone, embed_dim, hidden_size, num_layers, causal=False, dropout=dropout,
                                 **backbone_options)  # fmt: skip
        decoder = build_backbone(backbone, embed_dim, hidden_size, decoder_layers, causal=True, dropout=dropout,
                                 **backbone_options)  # fmt: skip
    else:
        encoder = build_backbone(backbone, embed_dim, hidden_size, num_layers, **backbone_options)
        decoder = build_backbone(backbone, embed_dim, hidden_size, decoder_layers, **backbone_options)
    source_embedding = TokenEmbedding(vocab_size, embed_dim, padding_idx=0)
    target_embedding = TokenEmbedding(num_classes, embed_dim, padding_idx=0)
    return Seq2Seq(source_embedding, encoder, target_embedding, decoder, hidden_size, dropout)
