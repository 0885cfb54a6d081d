"""Greedy and beam search: beam 1 is greedy exactly, a wider beam finds at least as likely a translation."""

import pytest
import torch
from models.test_seq2seq import BACKBONES, batch, tiny

from plmu.models.decode import beam_search, decode, greedy, length_penalty

BOS, EOS = 2, 3


def log_probability(model, data, row: int, tokens: list[int]) -> float:
    """log P(tokens </s> | source) by teacher forcing."""
    single = {"source": data["source"][row : row + 1], "source_mask": data["source_mask"][row : row + 1]}
    single["inputs"] = torch.tensor([[BOS, *tokens]])
    logits = model(single)[0].double().log_softmax(-1)
    return float(sum(logits[t, token] for t, token in enumerate([*tokens, EOS])))


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_beam_of_one_is_greedy_exactly(backbone):
    torch.manual_seed(1)
    model = tiny(backbone).eval()
    data = batch()
    expected = greedy(model, data, BOS, EOS, max_length=12)
    assert beam_search(model, data, BOS, EOS, beam_size=1, max_length=12) == expected
    assert decode(model, data, BOS, EOS, beam_size=1, max_length=12) == expected
    assert all(len(h) <= 12 and EOS not in h and 0 not in h and BOS not in h for h in expected)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_a_wider_beam_finds_at_least_as_likely_a_translation(backbone):
    torch.manual_seed(2)
    model = tiny(backbone).eval()
    with torch.no_grad():  # sharpen the random model so that translations end
        model.output.bias[EOS] += 2.0
    data = batch()
    greedy_out = greedy(model, data, BOS, EOS, max_length=10)
    beam_out = beam_search(model, data, BOS, EOS, beam_size=4, length_penalty_alpha=0.0, max_length=10)
    with torch.no_grad():
        for row, (g, b) in enumerate(zip(greedy_out, beam_out, strict=True)):
            if len(g) < 10:  # finished hypotheses are compared (an unfinished greedy one has no </s> to score)
                assert log_probability(model, data, row, b) >= log_probability(model, data, row, g) - 1e-9


def test_the_length_penalty_and_arguments():
    assert length_penalty(1, 0.0) == 1.0 and length_penalty(7, 1.0) == 2.0
    model, data = tiny("plmu").eval(), batch(2)
    with pytest.raises(ValueError, match="beam_size must be a positive int"):
        beam_search(model, data, BOS, EOS, beam_size=0)
    with pytest.raises(ValueError, match="length_penalty must be a number >= 0"):
        beam_search(model, data, BOS, EOS, length_penalty_alpha=-1)
    out = beam_search(model, data, BOS, EOS, beam_size=3)  # the default limit: 2 · longest source + 10
    assert len(out) == 2 and all(len(h) <= 2 * 5 + 10 for h in out)


class Scripted:
    """A confident model whose best translation is "a a a a", while a hypothesis that takes "b" ends at once:
    weak hypotheses keep ending early, which must not stop the search before the best one ends."""

    state_batch_dim = 0
    A, B = 4, 5

    def encode(self, batch):
        from plmu.models.seq2seq import Memory

        mask = batch["source_mask"]
        return Memory(mask.float()[..., None], mask.float()[..., None], mask)

    def initial_state(self, memory):
        return torch.zeros(memory.mask.shape[0], 2)  # (last token, how many a's)

    def decode_step(self, token, state, memory):
        count = state[:, 1] + (token == self.A)
        logits = torch.full((len(token), 6), -9.0)
        more_a = (token != self.B) & (count < 4)
        logits[:, self.A] = torch.where(more_a, 0.0, -9.0)
        logits[:, self.B] = torch.where(token == BOS, -5.0, -9.0)
        logits[:, EOS] = torch.where(more_a, -7.0, 0.0)
        return logits, torch.stack([token.float(), count], dim=1)


@pytest.mark.parametrize("beam_size", [2, 3, 5])
def test_weak_hypotheses_ending_early_do_not_stop_the_search(beam_size):
    data = {"source": torch.ones(2, 3, dtype=torch.long), "source_mask": torch.ones(2, 3, dtype=torch.bool)}
    best = [Scripted.A] * 4
    assert greedy(Scripted(), data, BOS, EOS) == [best, best]
    assert beam_search(Scripted(), data, BOS, EOS, beam_size, length_penalty_alpha=0.0) == [best, best]
