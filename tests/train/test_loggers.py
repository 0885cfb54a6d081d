"""metrics.jsonl (torn lines, strict JSON, a refusing disk), atomic JSON/YAML records, and wandb's preflight."""

import errno
import json
import logging
import math
import os
from pathlib import Path

import pytest

from plmu.errors import ConfigError, RunFolderError
from plmu.train import checkpoint, loggers
from plmu.train.loggers import JsonlLog, NullLogger, WandbLogger, write_json_atomic, write_text_atomic


def strict_loads(text: str):
    """json.loads that rejects NaN/Infinity, as jq or a browser would."""

    def reject(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=reject)


def logged(path: Path, steps: range) -> JsonlLog:
    log = JsonlLog(path)
    for step in steps:
        log.write({"step": step, "epoch": 1, "train/loss": 1.0 / step})
    return log


# ------------------------------------------------------------------------------------------- metrics.jsonl
def test_truncate_after_drops_a_torn_last_line_with_a_warning(tmp_path, caplog):
    log = logged(tmp_path / "metrics.jsonl", range(1, 5))
    with log.path.open("ab") as f:
        f.write(b'{"time": 1.0, "step": 5, "train/lo')  # the disk filled up mid-append

    with caplog.at_level(logging.WARNING, logger=loggers.__name__):
        log.truncate_after(3)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    assert log.path.read_bytes().endswith(b"}\n")
    assert any(str(log.path) in message and "torn" in message for message in caplog.messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # rewritten atomically: no temp left


def test_a_torn_line_of_nul_bytes_or_a_cut_character_is_also_dropped(tmp_path):
    for i, torn in enumerate([b"\0" * 37, '{"step": 9, "note": "θ'.encode()[:-1]]):
        log = logged(tmp_path / f"{i}.jsonl", range(1, 3))
        with log.path.open("ab") as f:
            f.write(torn)
        log.truncate_after(10)
        assert [r["step"] for r in log.read()] == [1, 2]


def test_a_complete_last_record_that_only_lost_its_newline_is_kept(tmp_path):
    log = logged(tmp_path / "metrics.jsonl", range(1, 3))
    with log.path.open("ab") as f:
        f.write(b'{"step": 3}')
    log.truncate_after(5)
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    log.truncate_after(2)
    assert log.path.read_text().count("\n") == 2


def test_a_corrupt_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path):
    log = logged(tmp_path / "metrics.jsonl", range(1, 3))
    lines = log.path.read_text().splitlines()
    log.path.write_text(f"{lines[0]}\nsomething else wrote this\n{lines[1]}\n")
    before = log.path.read_bytes()
    for call in (lambda: log.truncate_after(1), log.read):
        with pytest.raises(RunFolderError, match=rf"^{log.path} line 2 is not a JSON record") as caught:
            call()
        assert "\n" not in str(caught.value)
    assert log.path.read_bytes() == before  # nothing rewritten


def test_truncate_after_leaves_an_untouched_file_alone_and_a_missing_one_missing(tmp_path):
    log = logged(tmp_path / "metrics.jsonl", range(1, 3))
    inode = log.path.stat().st_ino
    log.truncate_after(2)
    assert log.path.stat().st_ino == inode  # nothing to drop: not rewritten
    missing = JsonlLog(tmp_path / "missing.jsonl")
    missing.truncate_after(1)
    assert not missing.path.exists() and missing.read() == []


def test_non_finite_values_are_written_as_null(tmp_path):
    log = JsonlLog(tmp_path / "metrics.jsonl")
    log.write({"step": 1, "train/loss": float("nan"), "val/mse": math.inf, "lr": -math.inf, "ok": 0.5})
    record = strict_loads(log.path.read_text())
    assert record["train/loss"] is None and record["val/mse"] is None and record["lr"] is None
    assert record["ok"] == 0.5


def test_a_write_after_a_torn_line_starts_on_a_line_of_its_own(tmp_path, caplog):
    log = logged(tmp_path / "metrics.jsonl", range(1, 3))
    with log.path.open("ab") as f:
        f.write(b'{"step": 3, "tra')
    with caplog.at_level(logging.WARNING, logger=loggers.__name__):
        log.write({"step": 3, "epoch": 1})
    assert [r["step"] for r in log.read()] == [1, 2, 3]
    assert any(str(log.path) in message for message in caplog.messages)
    with log.path.open("ab") as f:
        f.write(b'{"step": 4}')  # whole, but its newline was lost
    log.write({"step": 5})
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4, 5]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_logging_gives_one_line_naming_the_file():
    with pytest.raises(RunFolderError) as caught:
        JsonlLog("/dev/full").write({"step": 1})
    assert str(caught.value) == (
        "could not write /dev/full: No space left on device (ENOSPC); free disk space or choose another run folder "
        "(hydra.run.dir=...)"
    )
    assert caught.value.__suppress_context__


def test_a_read_only_run_folder_while_logging_gives_one_line(tmp_path, monkeypatch):
    log = JsonlLog(tmp_path / "metrics.jsonl")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(log.path))

    monkeypatch.setattr(Path, "open", read_only)
    with pytest.raises(RunFolderError, match=rf"could not write {log.path}: Read-only file system \(EROFS\); make"):
        log.write({"step": 1})


def test_clear_removes_the_file(tmp_path):
    log = logged(tmp_path / "metrics.jsonl", range(1, 3))
    log.clear()
    assert not log.path.exists() and log.read() == []
    log.clear()  # nothing to remove: fine


# ------------------------------------------------------------------------------------------- JSON and YAML records
def test_write_json_atomic_writes_strict_indented_json_with_the_usual_mode(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"test": float("nan"), "curve": [1.0, math.inf, {"x": -math.inf}], "n": 3, "t": (1, 2)})
    text = path.read_text()
    assert strict_loads(text) == {"test": None, "curve": [1.0, None, {"x": None}], "n": 3, "t": [1, 2]}
    assert text.startswith('{\n  "test": null') and text.endswith("}\n")
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "results.json"]


def test_numpy_and_tensor_scalars_are_written_as_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": np.float32(0.5), "b": torch.tensor(float("nan")), "c": np.int64(3)})
    assert strict_loads(path.read_text()) == {"a": 0.5, "b": None, "c": 3}


def test_each_write_uses_its_own_temp_file_that_remove_orphans_recognises(tmp_path, monkeypatch):
    """Two processes writing the same record must not share a temp file; a killed one's is cleaned up later."""
    sources = []
    replace = os.replace

    def spy(src, dst):
        sources.append(Path(src))
        replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    write_json_atomic(tmp_path / "results.json", {"a": 1})
    write_json_atomic(tmp_path / "results.json", {"a": 2})
    assert len(set(sources)) == 2
    assert all(checkpoint._ORPHAN.fullmatch(p.name) and p.name.startswith(".results.json.") for p in sources)


def test_write_text_atomic_creates_folders_and_keeps_the_old_file_when_the_disk_is_full(tmp_path, monkeypatch):
    path = tmp_path / ".hydra" / "overrides.yaml"
    write_text_atomic(path, "- seed=1\n")
    assert path.read_text() == "- seed=1\n"

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "write", full)
    with pytest.raises(
        RunFolderError, match=rf"^could not write {path}: No space left on device \(ENOSPC\); free disk"
    ):
        write_text_atomic(path, "- seed=2\n")
    monkeypatch.undo()
    assert path.read_text() == "- seed=1\n"
    assert [p.name for p in path.parent.iterdir()] == ["overrides.yaml"]


# ------------------------------------------------------------------------------------------- wandb
@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    """No API key anywhere wandb looks, and wandb's process-wide settings and session reset for this test."""
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib.wbauth import authenticate

    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(wandb_setup, "_singleton", None)
    monkeypatch.setattr(authenticate, "_session_auth", None)
    return tmp_path


def test_online_without_an_api_key_fails_in_preflight(no_wandb_credentials):
    with pytest.raises(ConfigError) as caught:
        WandbLogger(mode="online").preflight()
    assert str(caught.value) == (
        "logger.mode=online needs a wandb API key: run `wandb login` or set WANDB_API_KEY, or use "
        "logger.mode=offline (the default) / logger=none"
    )
    assert sorted(p.name for p in no_wandb_credentials.iterdir()) == []  # nothing written, nothing prompted


def test_preflight_accepts_a_key_from_the_environment_or_netrc(no_wandb_credentials, monkeypatch):
    key = "a" * 40
    netrc = no_wandb_credentials / "netrc"
    netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
    netrc.chmod(0o600)
    WandbLogger(mode="online").preflight()
    netrc.unlink()
    monkeypatch.setenv("WANDB_API_KEY", key)
    WandbLogger(mode="online").preflight()
    assert loggers._env_or_netrc_credentials()  # the fallback for a wandb whose internals moved agrees


def test_preflight_names_a_malformed_key(no_wandb_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "short")
    with pytest.raises(ConfigError, match=r"^logger.mode=online: the wandb credentials are invalid .*wandb login"):
        WandbLogger(mode="online").preflight()


def test_preflight_checks_nothing_offline_or_without_a_tracker(no_wandb_credentials):
    WandbLogger(mode="offline").preflight()
    WandbLogger(mode="disabled").preflight()
    NullLogger().preflight()


def test_an_unknown_mode_names_logger_mode():
    with pytest.raises(ConfigError, match=r"^logger.mode must be one of offline, online, disabled, got 'onlien'"):
        WandbLogger(mode="onlien")


def test_start_groups_sweep_runs_unless_logger_group_is_set(tmp_path, monkeypatch):
    import wandb

    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs))
    WandbLogger(mode="offline").start(tmp_path, {}, run_name="lr=0.1,seed=2", group="2024-01-01_12-00-00")
    WandbLogger(mode="offline", group="mine").start(tmp_path, {}, run_name="x", group="2024-01-01_12-00-00")
    WandbLogger(mode="offline").start(tmp_path, {}, run_name="single")
    assert [(c["group"], c["name"]) for c in calls] == [
        ("2024-01-01_12-00-00", "lr=0.1,seed=2"),
        ("mine", "x"),
        (None, "single"),
    ]


@pytest.mark.parametrize("kind", ["UsageError", "CommError"])
def test_wandb_errors_in_start_become_one_config_error(tmp_path, monkeypatch, kind):
    import wandb
    from wandb import errors

    def fail(**kwargs):
        raise getattr(errors, kind)("No API key configured. Use `wandb login` to log in.\nmore detail")

    monkeypatch.setattr(wandb, "init", fail)
    with pytest.raises(ConfigError) as caught:
        WandbLogger(mode="online").start(tmp_path, {}, run_name="x")
    message = str(caught.value)
    assert message.startswith("wandb could not start a run with logger.mode=online (No API key configured.")
    assert "WANDB_API_KEY" in message and "logger.mode=offline" in message and "\n" not in message


def test_wandb_settings_are_checked_by_their_one_declaration():
    from omegaconf import OmegaConf

    from plmu.train.settings import WandbSettings, defaults

    assert WandbLogger(tags=OmegaConf.create(["a", "b"])).tags == ["a", "b"]  # as Hydra hands a list over
    with pytest.raises(ConfigError, match=r"^logger.tags must be a list of strings, got \[1\]"):
        WandbLogger(tags=[1])
    with pytest.raises(ConfigError, match=r"^logger: .*'colour'.* \(the keys: _target_, project, mode, entity"):
        WandbLogger(colour="red")
    # conf/logger/wandb.yaml states only WANDB_MODE's override: every other default is the declaration's
    shipped = OmegaConf.load(Path(__file__).parents[2] / "conf" / "logger" / "wandb.yaml")
    assert set(shipped) == {"defaults", "mode"} and defaults(WandbSettings)["mode"] == "offline"
