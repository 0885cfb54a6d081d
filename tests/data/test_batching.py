import numpy as np
import pytest
import torch

from plmu.data.batching import DictSplit, Ragged, TextSplits, length_buckets, mask_key, pad_collate
from plmu.errors import ConfigError, DataError


def imdb_like_lengths(n: int = 5000, seed: int = 0) -> np.ndarray:
    """Token counts shaped like IMDB reviews: log-normal, median ~180, a long tail, capped at 512."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(180), 0.7, n).astype(int), 5, 512)


def padding_waste(batches: list[list[int]], lengths: np.ndarray) -> float:
    """The fraction of a padded batch's cells that are padding, over all batches."""
    padded = sum(len(batch) * lengths[batch].max() for batch in batches)
    return 1.0 - lengths.sum() / padded


def listed(batches: list[np.ndarray]) -> list[list[int]]:
    return [batch.tolist() for batch in batches]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize(("n", "batch_size", "multiplier"), [(1, 4, 2), (10, 3, 1), (1000, 32, 5), (997, 32, 50)])
def test_every_index_exactly_once(shuffle, n, batch_size, multiplier):
    lengths = np.random.default_rng(1).integers(1, 100, n)
    batches = listed(length_buckets(lengths, batch_size, seed=3, shuffle=shuffle, bucket_size_multiplier=multiplier))
    assert len(batches) == -(-n // batch_size)
    assert sorted(i for batch in batches for i in batch) == list(range(n))
    assert sum(len(batch) < batch_size for batch in batches) <= 1  # only the epoch's last batch may be short


def test_same_seed_same_order_different_seed_different():
    lengths = imdb_like_lengths(2000)
    first = listed(length_buckets(lengths, 16, seed=7))
    assert first == listed(length_buckets(lengths, 16, seed=7))
    assert first != listed(length_buckets(lengths, 16, seed=8))
    # Without shuffling the order ignores the seed (evaluation is reproducible whatever the run's seed).
    assert listed(length_buckets(lengths, 16, 1, shuffle=False)) == listed(
        length_buckets(lengths, 16, 2, shuffle=False)
    )


def test_batches_are_length_homogeneous():
    lengths = imdb_like_lengths(5000)
    bucketed = listed(length_buckets(lengths, 32, seed=0))
    order = np.random.default_rng(0).permutation(len(lengths))
    random = [order[i : i + 32].tolist() for i in range(0, len(order), 32)]
    waste, random_waste = padding_waste(bucketed, lengths), padding_waste(random, lengths)
    # Measured: 2.7 % of the bucketed cells are padding (chunks of 50 batches) against 57.7 % for random batches.
    assert waste < 0.04
    assert random_waste > 0.5
    assert waste < random_waste / 15


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"batch_size": True},
        {"seed": -1},
        {"bucket_size_multiplier": 0},
    ],
)
def test_buckets_reject_bad_arguments(kwargs):
    arguments = {"lengths": [1, 2, 3], "batch_size": 2, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        length_buckets(**arguments)


def test_buckets_reject_bad_lengths_and_flags():
    with pytest.raises(ValueError, match=r"1-D"):
        length_buckets([[1, 2]], 2)
    with pytest.raises(ValueError, match=r"true or false"):
        length_buckets([1, 2], 2, shuffle="yes")


def test_empty_lengths_give_no_batches():
    assert length_buckets([], 4) == []


EXAMPLES = [
    {"inputs": [5, 6, 7], "target": 1},
    {"inputs": np.array([8], dtype=np.int32), "target": 0},
    {"inputs": torch.tensor([9, 10, 11, 12, 13]), "target": 1},
]


def test_left_padding_puts_tokens_at_the_end():
    batch = pad_collate(EXAMPLES, pad_id=0, side="left")
    assert set(batch) == {"inputs", "mask", "target"}
    assert batch["inputs"].dtype == torch.long and batch["mask"].dtype == torch.bool
    assert batch["inputs"].tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 0, 8], [9, 10, 11, 12, 13]]
    assert batch["mask"].tolist() == [[False, False, True, True, True], [False] * 4 + [True], [True] * 5]
    assert batch["target"].tolist() == [1, 0, 1] and batch["target"].dtype == torch.long


def test_right_padding_puts_tokens_at_the_start():
    batch = pad_collate(EXAMPLES, pad_id=-1, side="right")
    assert batch["inputs"].tolist() == [[5, 6, 7, -1, -1], [8, -1, -1, -1, -1], [9, 10, 11, 12, 13]]
    assert batch["mask"].sum(1).tolist() == [3, 1, 5]
    assert batch["mask"][:, 0].all()


@pytest.mark.parametrize(("multiple", "width"), [(1, 5), (2, 6), (5, 5), (8, 8), (64, 64)])
def test_padded_width_is_rounded_up_to_the_multiple(multiple, width):
    for side in ("left", "right"):
        batch = pad_collate(EXAMPLES, side=side, multiple=multiple)
        assert batch["inputs"].shape == batch["mask"].shape == (3, width)
        assert batch["mask"].sum().item() == 9  # padding never counts as a token
        ids = batch["inputs"][batch["mask"]].tolist()
        assert ids == [5, 6, 7, 8, 9, 10, 11, 12, 13]


def test_pairs_are_padded_each_to_its_own_width():
    examples = [
        {"inputs_a": [1, 2, 3], "inputs_b": [4], "target": 2},
        {"inputs_a": [5], "inputs_b": [6, 7], "target": 0},
    ]
    batch = pad_collate(examples, side="left")
    assert set(batch) == {"inputs_a", "mask_a", "inputs_b", "mask_b", "target"}
    assert batch["inputs_a"].tolist() == [[1, 2, 3], [0, 0, 5]]
    assert batch["inputs_b"].tolist() == [[0, 4], [6, 7]]
    assert batch["mask_b"].tolist() == [[False, True], [True, True]]
    assert mask_key("inputs_b") == "mask_b" and mask_key("inputs") == "mask"


def test_examples_without_targets_give_no_target():
    batch = pad_collate([{"inputs": [1, 2]}, {"inputs": [3]}])
    assert set(batch) == {"inputs", "mask"}


@pytest.mark.parametrize(
    ("examples", "kwargs", "match"),
    [
        ([], {}, "empty batch"),
        (EXAMPLES, {"side": "middle"}, "side must be"),
        (EXAMPLES, {"multiple": 0}, "multiple"),
        (EXAMPLES, {"pad_id": 0.5}, "pad_id"),
        ([{"inputs": []}], {}, "0 tokens"),
        ([{"inputs": [[1, 2]]}], {}, "1-D"),
        ([{"inputs": [1.5]}], {}, "token ids"),
        ([{"text": [1]}], {}, "no 'inputs"),
        ([{"inputs_a": [1], "inputs_b": [2]}, {"inputs_a": [1]}], {}, "example 1 has no 'inputs_b'"),
        ([{"inputs": [1], "target": 0}, {"inputs": [2]}], {}, "some examples have"),
    ],
)
def test_pad_collate_errors_are_clear(examples, kwargs, match):
    with pytest.raises((ValueError, ConfigError), match=match):
        pad_collate(examples, **kwargs)


def make_split(n: int = 50, pair: bool = False, multiple: int = 4) -> DictSplit:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 100, rng.integers(1, 30)).tolist() for _ in range(n)]
    columns = {"inputs_a": Ragged.from_lists(sequences), "inputs_b": Ragged.from_lists(sequences[::-1])} if pair else {}
    columns = columns or {"inputs": Ragged.from_lists(sequences)}
    return DictSplit(columns, np.arange(n), pad_id=0, side="left", multiple=multiple)


@pytest.mark.parametrize("pair", [False, True])
def test_dict_split_batches_cover_every_example_once(pair):
    split = make_split(pair=pair)
    keys = {"inputs_a", "mask_a", "inputs_b", "mask_b", "target"} if pair else {"inputs", "mask", "target"}
    for shuffle in (False, True):
        batches = list(split.batches(8, shuffle=shuffle, seed=1))
        assert len(batches) == split.num_batches(8) == 7
        assert all(set(batch) == keys for batch in batches)
        assert all(batch[key].shape[1] % 4 == 0 for batch in batches for key in keys if key != "target")
        targets = torch.cat([batch["target"] for batch in batches])
        assert sorted(targets.tolist()) == list(range(50))  # target i is example i: each appears once
    first = next(split.batches(8, shuffle=False))
    row = first["target"][0].item()
    key = "inputs_a" if pair else "inputs"
    example = split.columns[key][row]
    assert first[key][0, first[mask_key(key)][0]].tolist() == example.tolist()


def test_dict_split_limit_start_and_determinism():
    split = make_split()
    assert split.num_batches(8, limit=3) == 3 and len(list(split.batches(8, limit=3))) == 3
    a = [batch["target"].tolist() for batch in split.batches(8, shuffle=True, seed=4)]
    b = [batch["target"].tolist() for batch in split.batches(8, shuffle=True, seed=4, start_batch=2)]
    assert a[2:] == b
    # limit caps the epoch's batch numbers, wherever it starts: a resumed epoch ends where the whole one would
    c = [batch["target"].tolist() for batch in split.batches(8, shuffle=True, seed=4, limit=5, start_batch=2)]
    assert c == a[2:5]
    assert list(split.batches(8, limit=2, start_batch=3)) == []
    assert a != [batch["target"].tolist() for batch in split.batches(8, shuffle=True, seed=5)]


def test_dict_split_checks_lengths_and_labels():
    with pytest.raises(ValueError, match=r"differ in length"):
        DictSplit({"inputs": Ragged.from_lists([[1], [2]])}, np.array([0]))
    split = make_split(n=5)
    split.check_labels(5)
    with pytest.raises(DataError, match=r"outside \[0, 3\).*task.output_size"):
        split.check_labels(3, split="train", key="task.output_size")


def test_text_splits_refuse_an_empty_split():
    split = make_split(n=3)
    empty = DictSplit({"inputs": Ragged.from_lists([])}, np.zeros(0, dtype=np.int64))
    with pytest.raises(DataError, match=r"the val split is empty"):
        TextSplits(split, empty, split)
    TextSplits(split, split, split).check_labels(3)
