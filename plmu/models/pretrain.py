"""The paper's IMDB model, pre-trained as a language model (supplementary figure 2 of Chilkuri & Eliasmith 2021).

    ids (batch, T) → TokenEmbedding                                           y_0 (batch, T, dim)
      block i = 1..num_blocks:  y_{i−1} → memory → Dense → Highway × 3       y_i (batch, T, dim)
      Σ_i softmax(w)_i · y_i    (a learned weighted sum of the input and every block's output)
      → Highway × 3                                                           h (batch, T, dim)
    language model: → Linear → logits over the vocabulary at every step      (batch, T, vocab_size)
    classifier:     → the last real step (or the mean) → Linear               (batch, classes)

"memory → Dense" is one :class:`~plmu.layers.ParallelLMU`: u = f1(U x + b) feeds the Legendre memory m, and its
readout o = f2(W_m m + W_x x + b) is the Dense layer (an LMU with a Dense hidden cell, as keras-lmu builds it; with
``skip=false`` the Dense sees the memory alone). A highway layer (Srivastava et al. 2015) is
y = t ⊙ relu(W_h x + b_h) + (1 − t) ⊙ x with the gate t = σ(W_t x + b_t), b_t starting at ``gate_bias`` (−1: each
layer starts close to carrying its input). Every part but the memory acts on each step alone, so the whole model is
causal and streams: the state is one memory per block, ``[m (batch, memory_d·order)] * num_blocks``.

The language model and the classifier are built by the same code, so their embedding (``adapter.*``) and backbone
(``backbone.*``) tensors have the same names and shapes: ``init_from=<the language model's run>`` loads them all
into the classifier, and only the head (``head.weight``, ``head.bias``: vocabulary vs classes) starts afresh.
``pretrain_model`` picks the one a task asks for (``per_step``: every step predicted, a language model), so one
``conf/sizes/plmu.yaml`` entry (``imdb_lm``) sizes both (``task=imdb_lm`` pre-trains, ``task=imdb`` fine-tunes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from plmu.checks import ArgumentError, flag, one_of, positive_int, probability
from plmu.dropout import Dropout
from plmu.layers import ParallelLMU, last_valid
from plmu.memory import check_mask
from plmu.models.adapters import TokenEmbedding
from plmu.models.backbones import forwards
from plmu.models.heads import POOLINGS, PerStepHead
from plmu.models.sequence import SequenceModel, head_for

__all__ = [
    "Highway",
    "PretrainBackbone",
    "PretrainBlock",
    "pretrain_classifier",
    "pretrain_language_model",
    "pretrain_model",
]


def _last_step(values: Tensor, mask: Tensor | None) -> Tensor:
    """values (batch, T, dim) → (batch, dim) at T − 1, or at each example's last real step with a mask."""
    return values[:, -1] if mask is None else last_valid(values, mask)


class Highway(nn.Module):
    """One highway layer, (..., dim) → (..., dim): y = t ⊙ relu(W_h x + b_h) + (1 − t) ⊙ x, t = σ(W_t x + b_t).

    W_h and W_t are one ``nn.Linear(dim, 2·dim)`` (one matmul); the gate's bias starts at ``gate_bias``.
    """

    def __init__(self, dim: int, gate_bias: float = -1.0) -> None:
        super().__init__()
        self.dim = positive_int("dim", dim)
        self.linear = nn.Linear(dim, 2 * dim)
        with torch.no_grad():
            self.linear.bias[dim:].fill_(float(gate_bias))

    def forward(self, x: Tensor) -> Tensor:
        """x (..., dim) → (..., dim)."""
        transform, gate = self.linear(x).chunk(2, dim=-1)
        gate = torch.sigmoid(gate)
        return gate * torch.relu(transform) + (1 - gate) * x


def _highways(dim: int, count: int, gate_bias: float) -> nn.Sequential:
    return nn.Sequential(*(Highway(dim, gate_bias) for _ in range(count)))


class PretrainBlock(nn.Module):
    """memory → Dense (one :class:`ParallelLMU`, dim → dim) → ``highway_layers`` highway layers → dropout.

    ``forward(x, state, return_state, mask=...)``: x (batch, T, dim) → (batch, T, dim), or (batch, dim) when the
    memory returns its last step only (``return_sequences=False``: m_T by one matmul); ``step`` runs one step.
    """

    def __init__(
        self,
        dim: int,
        order: int,
        theta: float,
        memory_d: int = 1,
        *,
        highway_layers: int = 3,
        gate_bias: float = -1.0,
        dropout: float = 0.0,
        return_sequences: bool = True,
        **memory_options: Any,
    ) -> None:
        super().__init__()
        if not (isinstance(highway_layers, int) and not isinstance(highway_layers, bool) and highway_layers >= 0):
            raise ArgumentError("highway_layers", f"be a non-negative int, got {highway_layers!r}")
        self.memory = ParallelLMU(
            dim, dim, order, theta, memory_d, return_sequences=return_sequences, **memory_options
        )  # checks dim, order, theta, memory_d and the options
        self.highways = _highways(dim, highway_layers, gate_bias)
        self.dropout = Dropout(probability("dropout", dropout))

    def forward(
        self, x: Tensor, state: Tensor | None = None, return_state: bool | None = None, *, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (batch, T, dim) → (batch, T, dim) or (batch, dim); with ``return_state`` also the memory's last state
        (batch, memory_d·order). ``mask`` (bool (batch, T)): padded steps feed nothing into the memory."""
        return_state = state is not None if return_state is None else return_state
        out = self.memory(x, state, return_state=return_state, **({} if mask is None else {"mask": mask}))
        if return_state:
            out, state = out
        out = self.dropout(self.highways(out))
        return (out, state) if return_state else out

    def step(self, x_t: Tensor, state: Tensor, *, mask_t: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x_t (batch, dim), state (batch, memory_d·order) → (o_t (batch, dim), new state)."""
        out, state = self.memory.step(x_t, state, mask_t=mask_t)
        return self.dropout(self.highways(out)), state


class PretrainBackbone(nn.Module):
    """``num_blocks`` :class:`PretrainBlock` s in a chain, a learned softmax-weighted sum of the input and every
    block's output, then ``top_highway_layers`` highway layers: x (batch, T, dim) → (batch, T, dim).

    With ``return_sequences=False`` only each example's last real step comes out, (batch, dim): the last block's
    memory then computes m_T alone (one matmul), the other terms of the sum are read at that step.

    Args:
        dim: the width of everything (the input, each block's output and the sum: they are added).
        num_blocks: the paper's 5.
        order, theta, memory_d: every block's Legendre memory (:class:`~plmu.memory.LegendreMemory`).
        highway_layers, top_highway_layers: highway layers in each block, and after the sum (the paper's 3 and 3).
        gate_bias: the highway gates' initial bias.
        dropout: on each block's output.
        return_sequences: every step (True) or the last real step only (False).
        **memory_options: to every ParallelLMU (f1, f2, skip, mode, discretizer, trainable_theta).
    """

    supports_mask = True
    state_batch_dim = 0  # a list per block of (batch, memory_d·order)

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        order: int,
        theta: float,
        memory_d: int = 1,
        *,
        highway_layers: int = 3,
        top_highway_layers: int = 3,
        gate_bias: float = -1.0,
        dropout: float = 0.0,
        return_sequences: bool = True,
        **memory_options: Any,
    ) -> None:
        super().__init__()
        positive_int("num_blocks", num_blocks)
        flag("return_sequences", return_sequences)
        if not (
            isinstance(top_highway_layers, int) and not isinstance(top_highway_layers, bool) and top_highway_layers >= 0
        ):
            raise ArgumentError("top_highway_layers", f"be a non-negative int, got {top_highway_layers!r}")
        self.blocks = nn.ModuleList(
            PretrainBlock(
                dim,
                order,
                theta,
                memory_d,
                highway_layers=highway_layers,
                gate_bias=gate_bias,
                dropout=dropout,
                return_sequences=return_sequences or i < num_blocks - 1,
                **memory_options,
            )
            for i in range(num_blocks)
        )
        self.mix = nn.Parameter(torch.zeros(num_blocks + 1))  # softmax(0) = equal weights to start
        self.top = _highways(dim, top_highway_layers, gate_bias)
        self.dim, self.return_sequences = dim, return_sequences

    @property
    def mix_weights(self) -> Tensor:
        """softmax(w): the weights of (the input, block 1, ..., block n) in the sum, (num_blocks + 1,)."""
        return torch.softmax(self.mix, dim=0)

    def _mixed(self, outputs: list[Tensor]) -> Tensor:
        weights = self.mix_weights.to(outputs[0].dtype)
        total = weights[0] * outputs[0]
        for weight, out in zip(weights[1:], outputs[1:], strict=True):
            total = total + weight * out
        return self.top(total)

    def forward(
        self, x: Tensor, state: list | None = None, return_state: bool | None = None, *, mask: Tensor | None = None
    ) -> Tensor | tuple[Tensor, list]:
        """x (batch, T, dim) → (batch, T, dim), or (batch, dim) with ``return_sequences=False``; with a state (a
        list per block of (batch, memory_d·order), from :meth:`initial_state`) or ``return_state`` also the state
        after the last step (each example's last real step with a mask), so chunks fed in turn equal the whole.

        ``mask`` (bool (batch, T), False at padding) goes to every memory: padded steps feed u = 0, so every real
        step's output is the unpadded example's (outputs at padded steps mean nothing).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (batch, time, dim={self.dim}), got shape {tuple(x.shape)}")
        if mask is not None:
            check_mask(mask, x.shape[0], x.shape[1])
        if state is not None and len(state) != len(self.blocks):
            raise ValueError(f"state must hold one memory per block ({len(self.blocks)}), got {len(state)}")
        return_state = state is not None if return_state is None else return_state
        masked = {} if mask is None else {"mask": mask}
        outputs, new_states, h = [x], [], x
        for i, block in enumerate(self.blocks):
            out = block(h, None if state is None else state[i], return_state=return_state, **masked)
            if return_state:
                out, block_state = out
                new_states.append(block_state)
            outputs.append(out)
            h = out
        if not self.return_sequences:  # the last block gave (batch, dim): read the others at the same step
            outputs = [_last_step(out, mask) if out.dim() == 3 else out for out in outputs]
        y = self._mixed(outputs)
        return (y, new_states) if return_state else y

    def initial_state(self, batch: int) -> list[Tensor]:
        """Zeros: one memory per block, each (batch, memory_d·order)."""
        return [block.memory.initial_state(batch) for block in self.blocks]

    def step(self, x_t: Tensor, state: list, *, mask_t: Tensor | None = None) -> tuple[Tensor, list]:
        """One step as an RNN, O(1) in the sequence length: x_t (batch, dim) → (y_t (batch, dim), new state).

        ``mask_t`` (bool (batch,), False = padding) keeps those examples' memories as they were (y_t is garbage).
        """
        outputs, new_states, h = [x_t], [], x_t
        for block, block_state in zip(self.blocks, state, strict=True):
            h, block_state = block.step(h, block_state, mask_t=mask_t)
            outputs.append(h)
            new_states.append(block_state)
        return self._mixed(outputs), new_states


def pretrain_language_model(
    vocab_size: int,
    hidden_size: int,
    num_layers: int = 5,
    order: int = 64,
    theta: float = 256,
    memory_d: int = 1,
    dropout: float = 0.0,
    embed_dropout: float = 0.0,
    **options: Any,
) -> SequenceModel:
    """The pre-training model: ids (batch, T) → logits (batch, T, vocab_size), the next token at every step.

    ``hidden_size`` is the width (embedding, blocks, sum), ``num_layers`` the number of blocks; ``options`` go to
    :class:`PretrainBackbone` (highway_layers, top_highway_layers, gate_bias, f1, f2, skip, mode, ...). The
    embedding keeps [PAD] (id 0) a zero row, as the classifier's does, so the two share it exactly.
    """
    backbone = PretrainBackbone(hidden_size, num_layers, order, theta, memory_d, dropout=dropout, **options)
    adapter = TokenEmbedding(vocab_size, hidden_size, padding_idx=0, dropout=embed_dropout)
    return SequenceModel(adapter, backbone, PerStepHead(hidden_size, vocab_size, dropout))


def pretrain_classifier(
    vocab_size: int,
    num_classes: int,
    hidden_size: int,
    num_layers: int = 5,
    order: int = 64,
    theta: float = 256,
    memory_d: int = 1,
    pooling: str = "last",
    dropout: float = 0.0,
    embed_dropout: float = 0.0,
    **options: Any,
) -> SequenceModel:
    """The same embedding and backbone as :func:`pretrain_language_model` (same tensor names and shapes), read at
    the last real token (``pooling="last"``: the last block computes m_T alone) or averaged over the real tokens
    (``"mean"``), then a linear head: ids (batch, T), mask (batch, T) → logits (batch, num_classes)."""
    one_of("pooling", pooling, POOLINGS)
    last_only = pooling == "last"
    options = {"dropout": dropout, "return_sequences": not last_only, **options}
    backbone = PretrainBackbone(hidden_size, num_layers, order, theta, memory_d, **options)
    adapter = TokenEmbedding(vocab_size, hidden_size, padding_idx=0, dropout=embed_dropout)
    return SequenceModel(adapter, backbone, head_for(False, hidden_size, num_classes, pooling, dropout))


@forwards("plmu.models.pretrain:PretrainBackbone", "plmu.layers:ParallelLMU", given=("dim", "num_blocks"))
def pretrain_model(
    vocab_size: int,
    per_step: bool,
    hidden_size: int,
    num_classes: int = 2,
    num_layers: int = 5,
    order: int = 64,
    theta: float = 256,
    memory_d: int = 1,
    pooling: str = "last",
    dropout: float = 0.0,
    residual: bool = False,
    norm: str | None = None,
    backbone: str = "plmu",
    embed_dim: int | None = None,
    embed_dropout: float = 0.0,
    pair: bool = False,
    mlp_hidden: int | None = None,
    **options: Any,
) -> SequenceModel:
    """The paper's pre-training architecture (``task=imdb_lm``'s parallel LMU, conf/sizes/plmu.yaml;
    experiment=imdb_finetune): the language model for a per-step task, the classifier otherwise (``task=imdb``),
    from the same sizes; ``pooling`` is the classifier's. It takes the text classifier's keys (the task's model
    around the backbone): ``embed_dim`` must be ``hidden_size`` (null: it is), ``pair`` false, ``embed_dropout``
    acts on the embedding, ``mlp_hidden`` (the pair MLP's) is unused. ``residual`` and ``norm`` (keys of
    ``conf/model/plmu.yaml``) must stay off: the highway layers carry each block's input, and the architecture has
    no normalisation."""
    if backbone != "plmu":
        raise ArgumentError(
            "backbone", f"be plmu for the pre-training architecture (parallel LMU blocks), got {backbone!r}"
        )
    if embed_dim is not None and embed_dim != hidden_size:
        raise ArgumentError("embed_dim", f"equal hidden_size={hidden_size} (the blocks' width), got {embed_dim}")
    if flag("pair", pair):
        raise ArgumentError("pair", "be false for the pre-training architecture (one text per example)")
    options["embed_dropout"] = probability("embed_dropout", embed_dropout)
    if flag("residual", residual):
        raise ArgumentError("residual", "be false for the pre-training architecture (its highway layers carry inputs)")
    if norm is not None:
        raise ArgumentError(
            "norm", f"be null for the pre-training architecture (it has no normalisation), got {norm!r}"
        )
    one_of("pooling", pooling, POOLINGS)
    if flag("per_step", per_step):
        return pretrain_language_model(vocab_size, hidden_size, num_layers, order, theta, memory_d, dropout, **options)
    return pretrain_classifier(
        vocab_size, num_classes, hidden_size, num_layers, order, theta, memory_d, pooling, dropout, **options
    )
