import pytest
import torch

from plmu.data.splits import DataSplits, TensorSplit, check_int
from plmu.errors import ConfigError, DataError


def labelled(y: list[int]) -> TensorSplit:
    return TensorSplit(torch.zeros(len(y), 3, 1), torch.tensor(y))


def splits(train: TensorSplit, val: TensorSplit | None = None, test: TensorSplit | None = None) -> DataSplits:
    """Three splits, the ones not given holding one label 0."""
    return DataSplits(train=train, val=val or labelled([0]), test=test or labelled([0]))


def test_labels_in_range_pass():
    splits(labelled([0, 9, 3]), labelled([1]), labelled([9])).check_labels(10)


@pytest.mark.parametrize(
    ("split", "labels", "message"),
    [
        ("train", [0, 10, 12], r"the train split has 2 label\(s\) outside \[0, 10\) .*e\.g\. 12 .*at least 13"),
        ("val", [3, -1], r"the val split has 1 label\(s\) outside \[0, 10\) .*e\.g\. -1 .*must be non-negative"),
        ("test", [10], r"the test split has 1 label\(s\) outside \[0, 10\) for num_classes=10, e\.g\. 10"),
    ],
)
def test_labels_out_of_range_name_the_split_the_label_and_the_classes(split, labels, message):
    parts = {"train": labelled([0]), "val": labelled([0]), "test": labelled([0]), split: labelled(labels)}
    data = DataSplits(**parts)
    with pytest.raises(DataError, match=message):
        data.check_labels(10)


def test_the_label_check_names_the_config_key():
    with pytest.raises(DataError, match=r"for task.output_size=5, e\.g\. 7 .*set task.output_size to at least 8"):
        splits(labelled([7])).check_labels(5, key="task.output_size")


def test_regression_targets_are_not_labels():
    data = splits(TensorSplit(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1)))
    with pytest.raises(DataError, match=r"train split's targets are not class labels: .* float32 of shape \(2, 3, 1\)"):
        data.check_labels(10)


@pytest.mark.parametrize("num_classes", [0, -2, "10", True, 2.0])
def test_num_classes_must_be_a_positive_int(num_classes):
    with pytest.raises(ConfigError, match=r"task.output_size must be a positive integer"):
        splits(labelled([0])).check_labels(num_classes, key="task.output_size")


@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_an_empty_split_is_an_error_naming_it(name):
    parts = {"train": labelled([0]), "val": labelled([0]), "test": labelled([0]), name: labelled([])}
    with pytest.raises(DataError, match=rf"the {name} split is empty \(0 examples\)"):
        DataSplits(**parts)


def test_sequences_without_time_steps_are_an_error():
    empty = TensorSplit(torch.zeros(2, 0, 1), torch.zeros(2, 0, 1))
    with pytest.raises(DataError, match=r"the val split's inputs are empty: x has shape \(2, 0, 1\)"):
        DataSplits(train=labelled([0]), val=empty, test=labelled([0]))


@pytest.mark.parametrize(
    ("value", "minimum", "below", "message"),
    [
        (0, 1, None, r"task.data.steps must be a positive integer \(steps\), got 0"),
        ("5", 1, None, r"task.data.steps must be a positive integer \(steps\), got '5'"),
        (True, 0, None, r"must be an integer >= 0 \(steps\), got True"),
        (4, 0, 4, r"must be an integer from 0 to 3 \(steps\), got 4"),
    ],
)
def test_check_int_names_the_key_and_the_value(value, minimum, below, message):
    with pytest.raises(ConfigError, match=message):
        check_int("task.data.steps", value, minimum, "steps", below=below)
    assert check_int("task.data.steps", 3, 1, "steps") == 3


@pytest.mark.parametrize("shuffle", [False, True])
def test_start_batch_skips_the_first_batches_of_the_same_order(shuffle):
    split = TensorSplit(torch.arange(10.0).view(10, 1, 1), torch.arange(10))
    whole = [batch["target"].tolist() for batch in split.batches(3, shuffle=shuffle, seed=7)]
    assert len(whole) == split.num_batches(3) == 4
    resumed = [batch["target"].tolist() for batch in split.batches(3, shuffle=shuffle, seed=7, start_batch=2)]
    assert resumed == whole[2:]
    # limit caps the epoch's batch numbers (as when it was started at 0), not the batches this call yields
    capped = [batch["target"].tolist() for batch in split.batches(3, shuffle=shuffle, seed=7, limit=3, start_batch=1)]
    assert capped == whole[1:3]
    assert list(split.batches(3, shuffle=shuffle, seed=7, start_batch=4)) == []
