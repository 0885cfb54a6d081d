"""A transformer baseline backbone: ``nn.TransformerEncoder`` (pre-norm) with sinusoidal positions, streamable.

    x (batch, time, d_model) + positions → num_layers × [x + attn(LN(x)); x + FFN(LN(x))] → LN → (batch, time, d_model)

Positions are sinusoidal (Vaswani et al. 2017), computed from each step's position on the fly. Chosen over learned
positions because they have no parameters (matching another backbone's parameter count is then about the layers
alone, whatever the sequence length: a learned table for psMNIST's 784 steps would be 784·d_model weights of its
own), and because any length works (no max_len to pick, train on short and run on long).

A step's position counts the real steps before it, so with left padding the first real token is at position 0, as
in the unpadded example, and the outputs of a padded batch equal those of each example alone.

Masks. ``mask`` (batch, time) bool, True at real steps. A padded step is never attended to, but every step, real or
padded, attends to itself. Without that, a query that sees no real step (a leading pad under a causal mask, or a
fully padded row) has a softmax over nothing but −inf: NaN, and the NaN then reaches the real steps through the next
layer (0 · NaN = NaN in the attention matmul). ``src_key_padding_mask`` cannot say "except itself", so the padding
and causal masks are merged into one (batch·heads, time, time) attention mask. Outputs at padded steps are zero.

Streaming (``causal=True``): ``step`` runs one step against a key/value cache, exactly the causal ``forward``.
The state holds, per layer, the keys and values of every past step (batch, heads, t, head_dim) and which were real.
A step costs O(layers · (d_model² + t · d_model)) time and the cache O(layers · t · d_model) memory, against
O(layers · (T · d_model² + T² · d_model)) for a whole forward of T steps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plmu.checks import ArgumentError, flag, optional_positive_int, positive_int, probability
from plmu.dropout import Dropout
from plmu.memory import check_mask


class TransformerState(NamedTuple):
    """The key/value cache of a causal :class:`TransformerBackbone`; every tensor has the batch at dim 0."""

    keys: list[Tensor]  # per layer: (batch, heads, t, head_dim)
    values: list[Tensor]  # per layer: (batch, heads, t, head_dim)
    valid: Tensor  # (batch, t) bool: which cached steps were real (padded ones are never attended to)


def sinusoidal_encoding(positions: Tensor, dim: int, dtype: torch.dtype) -> Tensor:
    """positions (...) integer → (..., dim): sin and cos of position · 10000^(−2i/dim), interleaved."""
    frequencies = torch.exp(torch.arange(0, dim, 2, device=positions.device, dtype=dtype) * (-math.log(10000.0) / dim))
    angles = positions.to(dtype)[..., None] * frequencies  # (..., ceil(dim / 2))
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[..., :dim]


def attention_allowed(key_valid: Tensor, queries: int, causal: bool) -> Tensor:
    """(batch, queries, keys) bool, True where a query may attend to a key; the queries are the last ``queries`` keys.

    A key is allowed when it is real (and, if causal, not in the future), and a query always sees itself: no softmax
    is ever over nothing (see the module docstring).
    """
    num_keys = key_valid.shape[1]
    key_pos = torch.arange(num_keys, device=key_valid.device)
    query_pos = key_pos[num_keys - queries :, None]  # (queries, 1)
    allowed = key_valid[:, None, :]  # (batch, 1, keys)
    if causal:
        allowed = allowed & (key_pos <= query_pos)
    return allowed | (key_pos == query_pos)


class TransformerBackbone(nn.Module):
    """A pre-norm transformer encoder: x (batch, time, d_model) → (batch, time, d_model).

    Args:
        d_model: feature size of the input and output (an input adapter brings the inputs to it).
        num_layers, num_heads: layers and attention heads (num_heads must divide d_model).
        dim_feedforward: the FFN's hidden width; 4 · d_model when None.
        dropout: on the input, inside attention and the FFN.
        causal: step t attends only to steps ≤ t (needed for language models and for ``step``).
    """

    state_batch_dim = 0  # see plmu.models.state
    # A key/value cache grows with the stream: a chunk of a stream is its own context (trainer.state=reset)
    carries_state = False

    def __init__(
        self,
        d_model: int,
        num_layers: int,
        num_heads: int,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        positive_int("d_model", d_model, "the model's width")
        positive_int("num_layers", num_layers)
        positive_int("num_heads", num_heads)
        if d_model % num_heads:
            raise ArgumentError("num_heads", f"divide d_model={d_model}, got {num_heads}")
        optional_positive_int("dim_feedforward", dim_feedforward, "or null for 4 · d_model")
        probability("dropout", dropout)
        flag("causal", causal)
        dim_feedforward = 4 * d_model if dim_feedforward is None else dim_feedforward
        layer = nn.TransformerEncoderLayer(
            d_model, num_heads, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # The final LayerNorm: pre-norm layers leave their output unnormalised. No nested tensors: they need
        # post-norm layers, and would only warn.
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.dropout = Dropout(dropout)
        self.d_model, self.num_heads, self.causal = d_model, num_heads, causal

    def forward(
        self,
        x: Tensor,
        state: TransformerState | None = None,
        return_state: bool | None = None,
        mask: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, TransformerState]:
        """x (batch, time, d_model), mask (batch, time) bool or None → (batch, time, d_model), zero at padded steps.

        With a state (or ``return_state=True``), the steps continue the cached ones and the new cache is returned too
        (causal only): a sequence fed in chunks gives the outputs of the whole.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (batch, time, d_model={self.d_model}), got shape {tuple(x.shape)}")
        batch, time, _ = x.shape
        if mask is not None:
            check_mask(mask, batch, time)
        return_state = state is not None if return_state is None else return_state
        if state is not None or return_state:
            out, state = self._forward_cached(x, self.initial_state(batch) if state is None else state, mask)
            return (out, state) if return_state else out

        if mask is None:
            positions = torch.arange(time, device=x.device)  # (time,), the same for every row
            # bool, True = may not attend (nn.MultiheadAttention's convention; the opposite of attention_allowed)
            future = torch.ones(time, time, dtype=torch.bool, device=x.device).triu(diagonal=1)
            attn_mask = future if self.causal else None
        else:
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, time): real steps before this one
            blocked = ~attention_allowed(mask, time, self.causal)
            attn_mask = blocked.repeat_interleave(self.num_heads, dim=0)  # (batch·heads, time, time)
        h = self.dropout(x + sinusoidal_encoding(positions, self.d_model, x.dtype))
        out = self.encoder(h, mask=attn_mask, is_causal=self.causal and mask is None)
        return out if mask is None else out.masked_fill(~mask[..., None], 0.0)

    def initial_state(self, batch: int) -> TransformerState:
        """An empty cache: keys and values (batch, heads, 0, head_dim) per layer, valid (batch, 0)."""
        self._check_causal()
        weight = self.encoder.layers[0].self_attn.in_proj_weight
        empty = weight.new_zeros(batch, self.num_heads, 0, self.d_model // self.num_heads)
        layers = range(len(self.encoder.layers))
        valid = torch.zeros(batch, 0, dtype=torch.bool, device=weight.device)
        return TransformerState([empty.clone() for _ in layers], [empty.clone() for _ in layers], valid)

    def step(
        self, x_t: Tensor, state: TransformerState, mask_t: Tensor | None = None
    ) -> tuple[Tensor, TransformerState]:
        """One step: x_t (batch, d_model), mask_t (batch,) bool or None → (out (batch, d_model), new state).

        A padded step (mask_t False) outputs zeros and is cached as padding, so it never affects later steps.
        """
        out, state = self.forward(x_t[:, None], state, True, None if mask_t is None else mask_t[:, None])
        return out[:, 0], state

    def _check_causal(self) -> None:
        if not self.causal:
            raise ValueError("a state (streaming, step) needs causal=True: a non-causal step would see the future")

    def _forward_cached(
        self, x: Tensor, state: TransformerState, mask: Tensor | None
    ) -> tuple[Tensor, TransformerState]:
        """The layers run by hand on new steps x (batch, time, d_model), attending to the cache as well."""
        self._check_causal()
        batch, time, _ = x.shape
        new_valid = torch.ones(batch, time, dtype=torch.bool, device=x.device) if mask is None else mask
        positions = state.valid.sum(dim=1, keepdim=True) + new_valid.cumsum(dim=1) - 1
        h = self.dropout(x + sinusoidal_encoding(positions.clamp(min=0), self.d_model, x.dtype))
        valid = torch.cat([state.valid, new_valid], dim=1)
        allowed = attention_allowed(valid, time, causal=True)[:, None]  # (batch, 1, time, keys): all heads alike
        keys, values = [], []
        for layer, past_k, past_v in zip(self.encoder.layers, state.keys, state.values, strict=True):
            h, k, v = _cached_layer(layer, h, past_k, past_v, allowed)
            keys.append(k)
            values.append(v)
        out = self.encoder.norm(h).masked_fill(~new_valid[..., None], 0.0)
        return out, TransformerState(keys, values, valid)


def _cached_layer(
    layer: nn.TransformerEncoderLayer, h: Tensor, past_k: Tensor, past_v: Tensor, allowed: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """What ``layer`` (norm_first) computes for new steps h (batch, time, d_model), given the past keys and values.

    Uses the layer's own weights: x + attn(norm1(x)), then x + linear2(dropout(act(linear1(norm2(x))))).
    Returns (h, keys, values), the keys and values now including the new steps (batch, heads, t + time, head_dim).
    """
    attn = layer.self_attn
    batch, time, d_model = h.shape
    heads = attn.num_heads
    # in_proj_weight stacks W_q, W_k, W_v (3·d_model, d_model); each splits into heads of d_model / heads features.
    qkv = F.linear(layer.norm1(h), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(batch, time, 3, heads, d_model // heads).permute(2, 0, 3, 1, 4)  # each (batch, heads, time, ·)
    k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    dropout_p = attn.dropout if layer.training else 0.0
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)  # (batch, heads, time, ·)
    h = h + layer.dropout1(attn.out_proj(a.transpose(1, 2).reshape(batch, time, d_model)))
    h = h + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(h))))))
    return h, k, v
