"""plmu.data.prefetch: batches made ahead on a thread are the same batches, errors arrive, an early exit stops it."""

import threading
import time

import pytest
import torch

from plmu.data.prefetch import prefetch
from plmu.data.psmnist import AugmentedSplit


def test_the_same_items_in_the_same_order_at_every_depth():
    for depth in (0, 1, 2, 5):
        with prefetch(range(20), depth) as items:
            assert list(items) == list(range(20))


def test_augmented_batches_made_ahead_equal_those_made_in_turn():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 784, 1, generator=generator), torch.randint(0, 10, (64,), generator=generator)
    split = AugmentedSplit(x, y, augment={"rotate": 10.0, "scale": 0.1, "translate": 2.0})
    in_turn = list(split.batches(16, shuffle=True, seed=3))
    torch.manual_seed(0)  # the global generator is not the batches': using it meanwhile changes nothing
    with prefetch(split.batches(16, shuffle=True, seed=3), 2) as ahead:
        made = []
        for batch in ahead:
            torch.rand(1000)
            made.append(batch)
    assert all(
        torch.equal(a["inputs"], b["inputs"]) and torch.equal(a["target"], b["target"])
        for a, b in zip(made, in_turn, strict=True)
    )


def test_an_error_while_making_a_batch_is_raised_at_that_batch():
    def items():
        yield 1
        yield 2
        raise ValueError("batch 3 is broken")

    with prefetch(items(), 2) as ahead:
        assert next(ahead) == 1 and next(ahead) == 2
        with pytest.raises(ValueError, match="batch 3 is broken"):
            next(ahead)
        with pytest.raises(ValueError, match="batch 3 is broken"):  # and again: not a silent end
            next(ahead)


def test_leaving_the_loop_early_stops_the_thread():
    made = []

    def items():
        for i in range(10_000):
            made.append(i)
            yield i

    before = threading.active_count()
    with prefetch(items(), 2) as ahead:
        for item in ahead:
            if item == 3:
                break
    time.sleep(0.05)
    assert threading.active_count() == before  # joined
    assert len(made) <= 3 + 1 + 2 + 1  # what was taken, plus the queue's depth and the one being made


def test_the_thread_keeps_its_own_thread_count():
    threads = torch.get_num_threads()
    seen = []

    def items():
        seen.append(torch.get_num_threads())
        yield 0

    with prefetch(items(), 1) as ahead:
        list(ahead)
    assert seen == [1] and torch.get_num_threads() == threads
