import os

import pytest
import torch

# Tests never reach the network and never need a wandb account.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def assert_close_to(actual: torch.Tensor, reference: torch.Tensor, atol: float = 0.0, rtol: float = 0.0) -> None:
    """|actual − reference| ≤ atol + rtol·max|reference| everywhere (a scale-relative bound for float32)."""
    error = (actual.double() - reference.double()).abs().max().item()
    bound = atol + rtol * reference.double().abs().max().item()
    assert error <= bound, f"max error {error:.3e} > {bound:.3e}"
