"""plmu.data.folders: offline by switch or by detection (issue 18: no minute of retries before the one good line)."""

import os
import socket
import sys

import pytest

from plmu.data import folders


@pytest.fixture
def online(monkeypatch):
    """The offline switches unset, the reachability cache empty, and the HF switches restored afterwards."""
    for name in ("HF_DATASETS_OFFLINE", "PLMU_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(folders, "_REACHABLE", {})
    yield
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"  # the tests' own setting (conftest)


def test_an_unreachable_host_means_offline_at_once(online, monkeypatch, caplog):
    calls = []

    def refuse(address, timeout):
        calls.append((address, timeout))
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert folders.offline("huggingface.co") and folders.offline("huggingface.co")
    assert calls == [(("huggingface.co", 443), 3.0)]  # asked once, with a short timeout
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert "huggingface.co cannot be reached (no network?): working offline" in caplog.text
    if "datasets.config" in sys.modules:  # read at import: switched in the module too
        assert sys.modules["datasets.config"].HF_DATASETS_OFFLINE is True


def test_a_reachable_host_or_no_host_stays_online(online, monkeypatch):
    class Connection:
        def close(self) -> None:
            pass

    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Connection())
    assert not folders.offline("huggingface.co") and not folders.offline()
    monkeypatch.setenv("PLMU_OFFLINE", "1")
    assert folders.offline() and folders.offline("huggingface.co")  # the switch wins without asking


def test_the_libraries_bars_follow_the_run(monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_DISABLE_PROGRESS_BARS", "0")
    folders.library_progress(False)
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1" and not datasets.is_progress_bar_enabled()
    folders.library_progress(True)
    assert datasets.is_progress_bar_enabled()
    folders.library_progress(False)
