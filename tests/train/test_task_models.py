"""The sizes in conf/sizes/: baselines at the parallel LMU's parameter count, where the paper gives none."""

import pytest
from conftest import compose_config

from plmu.models.build import build_model, model_args

VOCAB = 8000


def _count(task: str, model: str) -> int:
    """Parameters without the token embedding (its size is the data's vocabulary, the same for every family)."""
    cfg = compose_config([f"task={task}", f"model={model}"])
    built = build_model(cfg, model_args(cfg, {"vocab_size": VOCAB, "num_classes": cfg.task.output_size}))
    embedding = sum(p.numel() for name, p in built.named_parameters() if name.startswith("adapter.embedding."))
    return built.num_parameters - embedding


@pytest.mark.parametrize(
    ("task", "families"),
    [
        ("imdb", ("lstm", "transformer")),
        ("qqp", ("lstm", "transformer")),
        ("snli", ("lstm", "transformer")),
        ("psmnist", ("transformer",)),  # the LSTM and original LMU keep the paper's sizes
        ("mackey_glass", ("transformer",)),
    ],
)
def test_baselines_match_the_parallel_lmus_parameter_count(task, families):
    lmu = _count(task, "plmu")
    for family in families:
        assert abs(_count(task, family) - lmu) <= 0.01 * lmu, (task, family, _count(task, family), lmu)
