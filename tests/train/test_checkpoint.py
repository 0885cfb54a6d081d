import errno
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from plmu.errors import CheckpointError, RunFolderError
from plmu.train import checkpoint


def test_save_is_atomic_and_loads_back(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(3)}, "epoch": 1}, path)
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_truncated_and_foreign_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    checkpoint.save_atomic({"epoch": 1}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match=rf"checkpoint {truncated} is unreadable \(corrupt or truncated"):
        checkpoint.load(truncated)  # a zip cut short: a checkpoint, damaged
    with pytest.raises(CheckpointError, match=rf"{garbage} is not a checkpoint \(not a PyTorch file\)"):
        checkpoint.load(garbage)  # not even a PyTorch file: not called corrupt, nor to be deleted (issue 27)
    damaged = tmp_path / "run" / "checkpoints" / "last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"is unreadable .* Delete it, or point trainer.resume"):
        checkpoint.load(damaged)  # a run's own file, whatever its bytes: damaged
    with pytest.raises(CheckpointError, match="is not a plmu checkpoint"):
        checkpoint.load(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.pt")


def test_mismatched_model_names_the_difference(tmp_path):
    state = torch.nn.Linear(3, 4).state_dict()
    with pytest.raises(CheckpointError, match=r"made for a different model.*size mismatch"):
        checkpoint.load_model_state(torch.nn.Linear(3, 5), state, tmp_path / "x.pt")


def test_rng_state_round_trip_through_a_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    checkpoint.save_atomic({"rng": checkpoint.rng_state()}, tmp_path / "r.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "r.pt")["rng"])
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


# ----------------------------------------------------------------------------------------- failures and modes
def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_checkpoints_get_the_mode_a_plain_file_gets(tmp_path):
    """mkstemp's 0600 must not survive: checkpoints are as readable as the rest of the run folder."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    checkpoint.save_atomic({"epoch": 1}, tmp_path / "last.pt")
    assert _mode(tmp_path / "last.pt") == _mode(plain) == checkpoint.FILE_MODE


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free disk space or choose another run folder"),
        (errno.EROFS, "make the folder writable or choose another run folder"),
        (errno.EACCES, "make the folder writable or choose another run folder"),
    ],
)
def test_a_disk_that_refuses_the_write_gives_one_line_naming_the_checkpoint(tmp_path, monkeypatch, code, fix):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"epoch": 1}, path)

    def refuse(payload, f):
        f.write(b"partial bytes")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", refuse)
    with pytest.raises(RunFolderError) as caught:
        checkpoint.save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    message = str(caught.value)
    assert message.startswith(f"could not write checkpoint {path}: {os.strerror(code)}")
    assert fix in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback
    assert checkpoint.load(path)["epoch"] == 1  # the previous checkpoint is kept
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # and the temp file is gone


def test_a_temp_file_that_cannot_be_created_gives_the_same_error(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only)
    with pytest.raises(RunFolderError, match=r"could not write checkpoint .*last\.pt: Read-only file system \(EROFS\)"):
        checkpoint.save_atomic({"epoch": 1}, tmp_path / "last.pt")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_under_torch_save_is_reported_as_such(tmp_path, monkeypatch):
    """Through a buffered file torch reports ENOSPC as 'RuntimeError: unexpected pos'; the cause must come through."""
    placeholder = tmp_path / ".last.pt.abcd1234.tmp"

    def full_disk(**kwargs):
        placeholder.touch()
        return os.open("/dev/full", os.O_WRONLY), str(placeholder)

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", full_disk)
    with pytest.raises(RunFolderError, match=r"No space left on device \(ENOSPC\); free disk space"):
        checkpoint.save_atomic({"model": {"w": torch.ones(100_000)}}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_remove_orphans_deletes_only_temp_files_of_killed_writes(tmp_path):
    keep = ["last.pt", ".hidden", "notes.tmp", ".notes.tmp", "x.abcd1234.tmp", ".last.pt.abcd-123.tmp~"]
    for name in keep:
        (tmp_path / name).write_text("x")
    (tmp_path / ".sub.abcd1234.tmp").mkdir()  # a folder, whatever its name: not ours
    keep.append(".sub.abcd1234.tmp")
    orphans = [tmp_path / ".last.pt.k2j_9x0q.tmp", tmp_path / ".last.pt.abc123.tmp", tmp_path / ".results.json.tmp"]
    for path in orphans:
        path.write_text("torn")
    # the names a real write uses, so the pattern cannot drift from mkstemp's
    fd, real = tempfile.mkstemp(dir=tmp_path, prefix=".best.pt.", suffix=".tmp")
    os.close(fd)
    orphans.append(Path(real))

    assert sorted(checkpoint.remove_orphans(tmp_path)) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    assert checkpoint.remove_orphans(tmp_path / "missing") == []


INTERRUPTED_WRITE = """
import signal, sys, torch
from pathlib import Path
from plmu.train import checkpoint

real_save = torch.save

def save_then_interrupted(obj, sink):
    real_save(obj, sink)
    signal.raise_signal(signal.SIGINT)  # arrives mid-write: Python runs the handler at the next bytecode
    sink.write(b"")

checkpoint.torch.save = save_then_interrupted
target = Path(sys.argv[1]) / "last.pt"
try:
    checkpoint.save_atomic({"model": {"w": torch.ones(2)}}, target)
except KeyboardInterrupt:
    whole = torch.load(target, weights_only=False)["model"]["w"].tolist() == [1.0, 1.0]
    print("KeyboardInterrupt after the write" if whole else "KeyboardInterrupt, the file torn")
    restored = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    print(sorted(p.name for p in target.parent.iterdir()), restored)
else:
    print("no interrupt")
"""


def test_an_interrupt_during_a_checkpoint_write_waits_for_the_write(tmp_path):
    """Issue 16 (found while testing it): SIGTERM inside torch.save turned the interrupt into torch's RuntimeError
    ("unexpected pos"), a traceback and exit 1 instead of the resumable Ctrl-C path; now the write completes first.

    In a fresh process: a pytest worker's signal state after hundreds of other tests (threads of torch, of
    batches made ahead, of launchers) made the in-process version fail now and then without a KeyboardInterrupt."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WRITE, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["KeyboardInterrupt after the write", "['last.pt'] True"]


@pytest.mark.parametrize(
    ("old", "today"),
    [  # one case per earlier format (issue 17: one checkpoint-upgrade function; tensor names: test_sequence.py)
        ({"train_state": {"epoch": 3, "bad_epochs": 1}}, {"train_state": {"epoch": 3, "bad_validations": 1}}),
        (
            {"config": {"trainer": {"max_epochs": 5}}},
            {
                "config": {
                    "trainer": {
                        "scheduler_interval": "epoch",
                        "accumulate_grad_batches": 1,
                        "state": "reset",
                        "max_epochs": 5,
                    }
                }
            },
        ),
        (  # the synthetic translation task moved to its own module
            {
                "config": {
                    "task": {"name": "iwslt15_en_vi", "data": {"_target_": "plmu.data.translation.synthetic_en_vi"}}
                }
            },
            {
                "config": {
                    "task": {
                        "name": "iwslt15_en_vi",
                        "data": {"_target_": "plmu.data.synthetic_translation.synthetic_en_vi"},
                    }
                }
            },
        ),
        (  # the per-family builders became sequence_model with the family as its backbone (issue 28)
            {"config": {"model": {"_target_": "plmu.models.lstm_model", "hidden_size": 4}}},
            {"config": {"model": {"_target_": "plmu.models.sequence_model", "backbone": "lstm", "hidden_size": 4}}},
        ),
    ],
)
def test_each_earlier_format_is_upgraded_on_load(old, today, tmp_path):
    path = tmp_path / "old.pt"
    checkpoint.save_atomic(old, path)
    loaded = checkpoint.load(path)
    assert {key: value for key, value in loaded.items() if key != "format"} == today
    assert checkpoint.upgrade(checkpoint.upgrade(old)) == checkpoint.upgrade(old)  # today's layout is left as it is
    assert checkpoint.upgrade({"config": {"trainer": {"state": "carry"}}})["config"]["trainer"]["state"] == "carry"


def test_a_run_of_the_per_family_builders_resumes(tmp_path):
    """A run whose records name plmu_model (before issue 28), with keys that today's configs state differently
    (its dropout 0.0 was implied, today's task config writes it): upgraded, compared with the builder's defaults filled
    in, it resumes and goes on as the same model."""
    import yaml
    from conftest import TINY_MACKEY_GLASS, compose_config

    from plmu.train.run import train

    run = tmp_path / "run"
    overrides = [*TINY_MACKEY_GLASS, f"data_dir={tmp_path / 'data'}"]
    first = train(compose_config([*overrides, "trainer.max_epochs=1"]), run)
    earlier = {"_target_": "plmu.models.plmu_model"}  # what the model config looked like then: no backbone, no dropout
    for path in (run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt"):
        payload = torch.load(path, weights_only=False)
        model = payload["config"]["model"]
        rest = {k: v for k, v in model.items() if k not in ("_target_", "backbone", "dropout")}
        payload["config"]["model"] = {**earlier, **rest}
        checkpoint.save_atomic(payload, path)
    record = yaml.safe_load((run / "config.yaml").read_text())
    record["model"] = {**earlier, **{k: v for k, v in record["model"].items() if k not in ("_target_", "backbone")}}
    (run / "config.yaml").write_text(yaml.safe_dump(record))
    resumed = train(compose_config([*overrides, "trainer.max_epochs=2"]), run)
    assert resumed["epochs"] == 2 and resumed["parameters"] == first["parameters"]
