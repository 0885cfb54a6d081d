"""plmu-bench --mackey-glass: the task's models, their step times, the profile and the GEMM floor (tiny: seconds)."""

import torch

from plmu.bench import mackey_glass


def test_models_are_the_tasks_configs():
    assert mackey_glass.build("plmu").num_parameters == 17_358  # conf/task_model/mackey_glass_plmu.yaml
    lstm = mackey_glass.build("lstm")
    assert sum(m.num_layers for m in lstm.modules() if isinstance(m, torch.nn.LSTM)) == 4


def test_lstm_flops_are_counted_by_formula():
    model = mackey_glass.build("lstm")
    step = mackey_glass.training_step(model, 2, 10, torch.device("cpu"))
    # 4 layers of 25 units (input 1, then 25): 3 × 2·B·T·4H·(I + H), besides the head's few FLOPs
    expected = sum(3 * 2 * 2 * 10 * 4 * 25 * (i + 25) for i in (1, 25, 25, 25))
    assert expected <= mackey_glass.step_flops(step, model, 2, 10) < expected * 1.05


def test_quick_profile_report():
    text = mackey_glass.report(torch.device("cpu"), quick=True, profile=True)
    assert "| parallel LMU (plmu) | 17,358 |" in text and "| LSTM (lstm) |" in text and "| GRU (gru) |" in text
    assert "GEMM rate measured in this run" in text and "floor at the thin rate" in text
    assert "Where one plmu step's time goes" in text and "Where one lstm step's time goes" in text
