"""Greedy and beam-search decoding of a :class:`~plmu.models.seq2seq.Seq2Seq` model, run as an RNN.

Both encode the source once, then call ``model.decode_step`` one token at a time from ``<s>``; ``<pad>`` and ``<s>``
are never produced. A hypothesis ends at ``</s>`` (not returned) or after ``max_length`` tokens; ``max_length`` None
is 2 · (the batch's longest source, </s> included) + 10.

Beam search (Sutskever et al. 2014's shrinking beam): every example starts with ``beam_size`` = K slots. At each
step the extensions of its live hypotheses are ranked by summed log-probability and the best w are kept, w = K − (the
hypotheses it has finished); a kept one that ends in ``</s>`` is finished, with the score log P(y) / lp(y),
lp(y) = ((5 + |y|) / 6)^α (GNMT's length penalty, Wu et al. 2016; |y| counts the </s>; α = ``length_penalty``, 0 for
none), and gives up its slot. An example is done when K hypotheses are finished, or at ``max_length`` (its live ones
are then finished as they are); the best finished one is returned. The decoder state is reordered with
``plmu.models.state.select_state`` (parents of the survivors). With ``beam_size=1`` this is exactly greedy decoding
(``tests/models/test_decode.py``).

Why not fairseq's rule (always K live hypotheses; an example stops once K have finished): a confident model's weak
live hypotheses keep ending among the top candidates, fill the K finished slots before the best one ends, and stop
the search early with a worse translation (on the synthetic task: log P −5.1 returned where greedy found −0.11).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from plmu.checks import ArgumentError, positive_int
from plmu.models.state import select_state


def _max_steps(source_mask: Tensor, max_length: int | None) -> int:
    if max_length is not None:
        return positive_int("max_length", max_length)
    return 2 * int(source_mask.sum(dim=1).max()) + 10


def _log_probs(logits: Tensor, banned: Iterable[int]) -> Tensor:
    """Next-token log-probabilities in float64 (sums over many steps stay exact), banned ids at −inf."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    log_probs[:, list(banned)] = float("-inf")
    return log_probs


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(y) = ((5 + |y|) / 6)^α."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def greedy(
    model: Any,
    batch: Mapping[str, Tensor],
    bos_id: int,
    eos_id: int,
    max_length: int | None = None,
    pad_id: int = 0,
) -> list[list[int]]:
    """The most likely next token at every step, for each source of ``batch`` (``source``, ``source_mask``)."""
    memory = model.encode(batch)
    steps, rows = _max_steps(memory.mask, max_length), memory.mask.shape[0]
    state = model.initial_state(memory)
    token = torch.full((rows,), bos_id, dtype=torch.long, device=memory.mask.device)
    done = torch.zeros(rows, dtype=torch.bool, device=token.device)
    outputs = []
    for _ in range(steps):
        logits, state = model.decode_step(token, state, memory)
        token = _log_probs(logits, (pad_id, bos_id)).argmax(dim=-1)
        outputs.append(token)
        done |= token == eos_id
        if bool(done.all()):
            break
    hypotheses = []
    for row in torch.stack(outputs, dim=1).tolist():
        hypotheses.append(row[: row.index(eos_id)] if eos_id in row else row)
    return hypotheses


@torch.no_grad()
def beam_search(
    model: Any,
    batch: Mapping[str, Tensor],
    bos_id: int,
    eos_id: int,
    beam_size: int = 5,
    length_penalty_alpha: float = 0.6,
    max_length: int | None = None,
    pad_id: int = 0,
) -> list[list[int]]:
    """The best hypothesis of a beam search of ``beam_size`` (module docstring) for each source of ``batch``."""
    k = positive_int("beam_size", beam_size)
    if not isinstance(length_penalty_alpha, int | float) or length_penalty_alpha < 0:
        raise ArgumentError("length_penalty", f"be a number >= 0, got {length_penalty_alpha!r}")
    memory = model.encode(batch)
    steps, rows = _max_steps(memory.mask, max_length), memory.mask.shape[0]
    device = memory.mask.device
    memory = select_state(memory, torch.arange(rows, device=device).repeat_interleave(k))
    batch_dim = model.state_batch_dim
    state = model.initial_state(memory)
    token = torch.full((rows * k,), bos_id, dtype=torch.long, device=device)
    scores = torch.full((rows, k), float("-inf"), dtype=torch.float64, device=device)
    scores[:, 0] = 0.0  # one live hypothesis at first (the others would repeat it)
    history: list[list[int]] = [[] for _ in range(rows * k)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(rows)]
    for step in range(steps):
        logits, state = model.decode_step(token, state, memory)
        log_probs = _log_probs(logits, (pad_id, bos_id))
        vocab = log_probs.shape[-1]
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(rows, k * vocab)
        top_scores, top_index = candidates.topk(min(k, k * vocab), dim=1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        parents, tokens, new_scores = [], [], []
        for row in range(rows):
            live: list[tuple[int, int, float]] = []  # (parent, token, score)
            for score, index in zip(top_scores[row][: k - len(finished[row])], top_index[row], strict=False):
                if score == float("-inf"):
                    break
                parent, word = row * k + index // vocab, index % vocab
                if word == eos_id:  # finished: its slot is given up
                    hypothesis = history[parent]
                    normalised = score / length_penalty(len(hypothesis) + 1, length_penalty_alpha)
                    finished[row].append((normalised, hypothesis))
                else:
                    live.append((parent, word, score))
            filler = (row * k, eos_id, float("-inf"))  # empty slots keep the shape and are never extended
            for parent, word, score in live + [filler] * (k - len(live)):
                parents.append(parent)
                tokens.append(word)
                new_scores.append(score)
        if all(score == float("-inf") for score in new_scores):
            break  # every example is done
        index = torch.tensor(parents, device=device)
        state = select_state(state, index, batch_dim)
        history = [history[p] + [w] for p, w in zip(parents, tokens, strict=True)]
        token = torch.tensor(tokens, device=device)
        scores = torch.tensor(new_scores, dtype=torch.float64, device=device).reshape(rows, k)
        if step == steps - 1:  # out of steps: the live hypotheses end here, as they are
            for slot, score in enumerate(new_scores):
                if score != float("-inf"):
                    hypothesis = history[slot]
                    normalised = score / length_penalty(len(hypothesis), length_penalty_alpha)
                    finished[slot // k].append((normalised, hypothesis))
    return [max(options, key=lambda option: option[0])[1] if options else [] for options in finished]


def decode(
    model: Any,
    batch: Mapping[str, Tensor],
    bos_id: int,
    eos_id: int,
    beam_size: int = 1,
    length_penalty_alpha: float = 0.6,
    max_length: int | None = None,
    pad_id: int = 0,
) -> list[list[int]]:
    """Greedy for ``beam_size`` 1, else beam search: token ids per source, without ``</s>``."""
    if positive_int("beam_size", beam_size) == 1:
        return greedy(model, batch, bos_id, eos_id, max_length, pad_id)
    return beam_search(model, batch, bos_id, eos_id, beam_size, length_penalty_alpha, max_length, pad_id)
