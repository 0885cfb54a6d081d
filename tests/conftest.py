import os

import pytest
import torch

# Tests never reach the network and never need a wandb account.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


# `make test-quick` leaves these out (`-m "not slow"`): end-to-end runs, subprocesses of the command-line tools, the
# benchmarks, the packaging checks, the checks over every task × family and every committed run, and a few tests of
# several seconds each (torch.compile, a long series): about 80% of the suite's time. `make test` (CI) runs them all.
SLOW = (
    "tests/bench/",
    "tests/cli/",
    "tests/test_packaging.py",
    "tests/test_hostile_records.py",
    "tests/test_readme.py",
    "tests/train/test_distributed.py",
    "tests/train/test_init_from.py",
    "tests/train/test_run.py",
    "tests/train/test_run_folder.py",
    "tests/train/test_run_steps.py",
    "tests/train/test_task_models.py",
    "tests/train/test_schema.py::test_every_task_and_model_passes",
    "tests/train/test_schema.py::test_every_experiment_passes",
    "tests/train/test_schema.py::test_the_debug_preset_passes",
    "tests/models/test_gru.py::test_model_gru_builds_on_every_task_at_the_lstms_count",
    "tests/models/test_backbones.py::test_every_committed_run_still_builds",
    "tests/data/test_mackey_glass.py::test_check_value_predict_y_equals_x_is_162_400_percent",
    "tests/data/test_imdb_lm.py::test_pretrain_then_fine_tune_through_plmu_train",
    "tests/test_layers.py::test_torch_compile_matches_eager",
    "tests/test_original.py::test_torch_compile_matches_eager",
    "tests/train/test_settings.py::test_help_lists_every_setting",
    "tests/train/test_peak_memory.py::test_every_shipped_run_but_one_fits_a_16_gib_machine",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: left out by `make test-quick` (see tests/conftest.py's SLOW)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def assert_close_to(actual: torch.Tensor, reference: torch.Tensor, atol: float = 0.0, rtol: float = 0.0) -> None:
    """|actual − reference| ≤ atol + rtol·max|reference| everywhere (a scale-relative bound for float32)."""
    error = (actual.double() - reference.double()).abs().max().item()
    bound = atol + rtol * reference.double().abs().max().item()
    assert error <= bound, f"max error {error:.3e} > {bound:.3e}"


def write_idx_mnist(
    root, n_train: int = 120, n_test: int = 40, folder: str = "MNIST", seed: int = 0, gzipped: bool = False
):
    """Tiny MNIST-format files under root/<folder>/raw: IDX, uncompressed as torchvision leaves them, or only the
    ``.gz`` files as they are published (``gzipped``)."""
    import gzip
    import struct
    from pathlib import Path

    import numpy as np

    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.randint(0, 10, n).astype(np.uint8)
        images = rng.randint(0, 50, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):  # a learnable signal: a bright bar whose row is the label
            images[i, 2 + 2 * label, 4:24] = 255
        files = {
            f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
            f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes(),
        }
        for name, content in files.items():
            if gzipped:
                (raw / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
            else:
                (raw / name).write_bytes(content)
    return raw


# Mackey-Glass at toy size: 8 series of 200 steps, 2 train + 2 validation + 4 test; seconds to train.
TINY_MACKEY_GLASS = [
    "task=mackey_glass",
    "task.data.n_series=8",
    "task.data.steps=200",
    "task.data.n_train=2",
    "task.data.n_val=2",
    "trainer.batch_size=2",
    "model.hidden_size=8",
    "model.num_layers=2",
    "logger=none",
    "trainer.progress=false",
]


def nan_loss_on_call(monkeypatch, when: int) -> None:
    """Make the regression loss NaN on its ``when``-th call (a diverging run, on demand)."""
    from plmu.train.objectives import Regression

    calls, real_loss = {"n": 0}, Regression.loss

    def loss(self, outputs, batch):
        calls["n"] += 1
        value = real_loss(self, outputs, batch)
        return value * float("nan") if calls["n"] == when else value

    monkeypatch.setattr(Regression, "loss", loss)


def config_names(group: str) -> list[str]:
    """The options of a config group in the installed package (plmu.conf), e.g. config_names("task")."""
    from importlib import resources

    folder = resources.files("plmu.conf") / group
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def sized_tasks(family: str) -> list[str]:
    """The tasks ``family``'s sizes table gives sizes for (conf/sizes/<family>.yaml's keys)."""
    from importlib import resources

    import yaml

    table = yaml.safe_load((resources.files("plmu.conf") / "sizes" / f"{family}.yaml").read_text()) or {}
    return [task for task in table if task in config_names("task")]


def task_model_pairs() -> list[tuple[str, str]]:
    """Every (task, model family) the configs give sizes for: the tasks of each conf/sizes/<family>.yaml."""
    return [(task, family) for family in config_names("sizes") for task in sized_tasks(family)]


def compose_config(overrides: list[str]):
    """The config plmu-train would run with these overrides (Hydra compose, from the installed package)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="plmu.conf", version_base="1.3"):
        return compose("config", overrides=overrides)


def assert_parsing_imports_no_torch(module: str) -> None:
    """``plmu.cli.<module>.parse_args(['run'])`` (what ``--help`` and a bad flag reach) in a fresh interpreter
    leaves torch unimported; skipped where ``import plmu`` itself imports it."""
    import subprocess
    import sys

    probe = "import plmu, sys; print('torch' in sys.modules)"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "True":
        pytest.skip("`import plmu` itself imports torch")
    code = f"import sys; from plmu.cli import {module} as m; m.parse_args(['run']); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
