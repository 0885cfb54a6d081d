"""The GRU family (issue 17's proof of the recipe: its module, one registry line, its configs): masked like the LSTM,
streaming, and built on each of the seven tasks at the LSTM baseline's parameter count."""

import pytest
import torch
from conftest import assert_close_to, compose_config

from plmu.models.build import build_model, model_args
from plmu.models.gru import GRUEncoder

IN, HIDDEN, LAYERS, T = 3, 5, 2, 7


@pytest.mark.parametrize("left", [True, False])
def test_a_padded_batch_equals_each_example_alone_and_steps_agree(left):
    encoder = GRUEncoder(IN, HIDDEN, LAYERS).double()
    lengths = [7, 4, 1, 0]
    x = 100 * torch.randn(len(lengths), T, IN, dtype=torch.float64)
    mask = torch.zeros(len(lengths), T, dtype=torch.bool)
    for row, n in enumerate(lengths):
        mask[row, slice(T - n, T) if left else slice(0, n)] = True
    state = encoder.initial_state(4).normal_()
    out, h = encoder(x, state, mask=mask)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    for row, n in enumerate(lengths):
        if n == 0:
            assert torch.equal(h[:, row], state[:, row])  # nothing real: the state passes through
            continue
        ref, ref_h = encoder(x[row : row + 1][mask[row : row + 1]][None], state[:, row : row + 1])
        assert_close_to(out[row][mask[row]], ref[0], atol=1e-12)
        assert_close_to(h[:, row], ref_h[:, 0], atol=1e-12)
    stepped, carried = [], state
    for t in range(T):
        y, carried = encoder.step(x[:, t], carried, mask_t=mask[:, t])
        stepped.append(y)
    assert_close_to(torch.stack(stepped, 1), out, atol=1e-12)
    assert_close_to(carried, h, atol=1e-12)
    last = GRUEncoder(IN, HIDDEN, LAYERS, return_sequences=False).double()
    last.load_state_dict(encoder.state_dict())
    expected = torch.stack([out[r][mask[r]][-1] for r in range(3)])
    assert_close_to(last(x, state, return_state=False, mask=mask)[:3], expected, atol=1e-12)
    assert_close_to(last(x, state, mask=mask)[0][:3], expected, atol=1e-12)  # the packed path's final state


TASKS = {  # task: what the data would tell (vocabulary, classes), and the LSTM baseline's parameter count
    "psmnist": ({}, 166_036),
    "mackey_glass": ({}, 18_426),
    "imdb": ({"vocab_size": 16000, "num_classes": 2}, None),
    "qqp": ({"vocab_size": 16000, "num_classes": 2}, None),
    "snli": ({"vocab_size": 16000, "num_classes": 3}, None),
    "text8": ({"vocab_size": 27, "num_classes": 27}, None),
    "iwslt15_en_vi": ({"vocab_size": 17000, "num_classes": 7700}, None),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_model_gru_builds_on_every_task_at_the_lstms_count(task):
    info, lstm_count = TASKS[task]
    counts, models = {}, {}
    for family in ("gru", "lstm"):
        cfg = compose_config([f"task={task}", f"model={family}"])
        models[family] = build_model(cfg, model_args(cfg, info))
        counts[family] = sum(p.numel() for p in models[family].parameters())
    assert any(isinstance(module, GRUEncoder) for module in models["gru"].modules())
    assert abs(counts["gru"] - counts["lstm"]) / counts["lstm"] < 0.003, counts
    if lstm_count is not None:
        assert counts["lstm"] == lstm_count
