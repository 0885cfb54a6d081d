"""Token streams: every token but the first predicted exactly once, chunks in stream order, resumable."""

import numpy as np
import pytest
import torch

from plmu.data.stream import IGNORE_INDEX, StreamSplit, StreamSplits
from plmu.errors import DataError


def _split(n: int = 103, chunk: int = 5, vocab: int = 256) -> StreamSplit:
    return StreamSplit(np.arange(n) % vocab, chunk, vocab)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 102, 200])
def test_every_pair_once_in_stream_order(batch_size):
    split = _split()
    inputs = torch.cat([b["inputs"] for b in split.batches(batch_size)], dim=1)
    target = torch.cat([b["target"] for b in split.batches(batch_size)], dim=1)
    real = target != IGNORE_INDEX
    assert int(real.sum()) == len(split) == 102
    # Read stream by stream, the real pairs are the corpus's (t, t + 1) pairs in order.
    assert inputs[real].tolist() == list(range(102)) and target[real].tolist() == list(range(1, 103))
    assert not real[:, :-1].logical_not().logical_and(real[:, 1:]).any()  # padding only at a stream's end
    assert split.num_batches(batch_size) == len(list(split.batches(batch_size)))


def test_chunks_have_the_chunk_length_and_start_batch_skips():
    split = _split(chunk=7)
    chunks = list(split.batches(4))
    assert [c["inputs"].shape for c in chunks] == [(4, 7)] * 3 + [(4, 5)]  # 26 steps per stream
    later = list(split.batches(4, start_batch=2))
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(chunks[2:], later, strict=True))
    assert len(list(split.batches(4, limit=2))) == 2


def test_shuffle_is_ignored_so_a_carried_state_stays_right():
    split = _split()
    plain = [c["inputs"] for c in split.batches(3)]
    shuffled = [c["inputs"] for c in split.batches(3, shuffle=True, seed=5)]
    assert all(torch.equal(a, b) for a, b in zip(plain, shuffled, strict=True))


def test_tokens_are_stored_compactly_and_checked():
    assert StreamSplit(np.arange(27), 4, 27).tokens.dtype == np.uint8
    with pytest.raises(DataError, match=r"\[0, 27\)"):
        StreamSplit(np.array([0, 27]), 4, 27)
    with pytest.raises(ValueError, match="1-D"):
        StreamSplit(np.zeros((2, 2), dtype=np.int64), 4, 27)
    with pytest.raises(ValueError, match="chunk_length"):
        StreamSplit(np.arange(5), 0, 27)


def test_a_split_of_one_token_is_refused():
    good, empty = _split(), StreamSplit(np.array([3]), 4, 256)
    with pytest.raises(DataError, match="the val split has fewer than 2 tokens"):
        StreamSplits(good, empty, good)
