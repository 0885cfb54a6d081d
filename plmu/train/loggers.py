"""Where metrics go: always ``metrics.jsonl`` in the run directory, plus wandb (offline by default) or nothing.

``conf/logger/*.yaml`` picks one with ``_target_``; wandb runs through its own API, so ``wandb sync`` uploads an
offline run later and ``logger.mode=online`` streams it. Also the run folder's other records (results.json,
config.yaml): strict JSON and YAML, written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

from plmu.errors import ConfigError, RunFolderError
from plmu.train.checkpoint import write_bytes_atomic, write_failure
from plmu.train.settings import WandbSettings, checked, defaults

log = logging.getLogger(__name__)

NO_API_KEY = (
    "logger.mode=online needs a wandb API key: run `wandb login` or set WANDB_API_KEY, "
    "or use logger.mode=offline (the default) / logger=none"
)


def finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float (also in dicts, lists, tuples) replaced by None.

    ``json.dumps`` would write them as ``NaN``/``Infinity``, which strict JSON readers (jq, JavaScript, pandas'
    ``read_json`` in places) reject; null says "no value" in every reader.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy scalars, 0-d tensors
        return finite_json(value.item())
    return value


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """``path`` ← ``obj`` as strict JSON (non-finite floats → null), indented, atomically, with the umask's mode.

    :class:`RunFolderError` (one line, naming the file) if it cannot be written.
    """
    text = json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode())


def write_text_atomic(path: str | Path, text: str) -> None:
    """``path`` ← ``text`` (UTF-8; e.g. a YAML config), atomically, with the umask's mode."""
    write_bytes_atomic(path, text.encode())


def _parse(line: bytes) -> dict[str, Any] | None:
    """The record on one line, or None if it is not a JSON object (torn, or not ours)."""
    try:
        record = json.loads(line)  # also reads the NaN/Infinity that older versions wrote
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for a multi-byte character cut in half
        return None
    return record if isinstance(record, dict) else None


def _last_line_start(f: BinaryIO, size: int) -> int:
    """The offset just past the file's last newline (0 if it has none), reading backwards in chunks."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        f.seek(start)
        found = f.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


class JsonlLog:
    """One JSON object per line: {"time", "step", "epoch", ...metrics}; appended, so a resumed run continues it.

    Appends are not atomic: a process killed or a disk filling up mid-append leaves a torn last line (no newline).
    Readers drop such a tail with a warning; a bad line anywhere else means something else wrote into the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise write_failure(self.path.parent, error) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (strict JSON: NaN and ±inf become null); RunFolderError if the disk refuses."""
        line = json.dumps(finite_json({"time": round(time.time(), 3), **record}), allow_nan=False) + "\n"
        try:
            with self.path.open("a+b") as f:  # a+: appends always go to the end, and the tail can be read
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":  # an earlier append was cut: never glue a record onto it
                        self._repair_tail(f, size)
                f.write(line.encode())
                f.flush()  # a full disk fails here, inside the try, not later at close
        except OSError as error:
            raise write_failure(self.path, error) from None

    def _repair_tail(self, f: BinaryIO, size: int) -> None:
        """End the file after its last complete record: cut a torn tail, or add the newline a complete one lacks."""
        start = _last_line_start(f, size)
        f.seek(start)
        if _parse(f.read(size - start)) is not None:
            f.write(b"\n")  # the record is whole, only its newline was lost
        else:
            # Cut rather than end it with a newline: a newline would turn the fragment into a corrupt middle line.
            log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted write", self.path, size - start)
            f.truncate(start)

    def _lines(self) -> tuple[list[tuple[int, bytes, dict[str, Any]]], bool]:
        """(line number, text, record) of every record, and whether a torn last line was skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], False
        except OSError as error:
            raise RunFolderError(f"could not read {self.path}: {error.strerror or error}") from None
        *lines, tail = data.split(b"\n")  # tail: what follows the last newline (empty unless a write was cut)
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = _parse(line)
            if record is None:
                raise RunFolderError(
                    f"{self.path} line {number} is not a JSON record (something other than plmu wrote into it): "
                    f"delete that line, or delete the file to continue without the earlier metrics"
                )
            rows.append((number, line, record))
        torn = False
        if tail.strip():
            record = _parse(tail)
            if record is None:
                log.warning(
                    "%s: skipped a torn last line (%d bytes) left by an interrupted write", self.path, len(tail)
                )
                torn = True
            else:
                rows.append((len(lines) + 1, tail, record))  # a whole record that only lost its newline
        return rows, torn

    def read(self) -> list[dict[str, Any]]:
        """Every record (none if the file does not exist); a torn last line is skipped with a warning."""
        return [record for _, _, record in self._lines()[0]]

    def truncate_after(self, step: int) -> None:
        """Drop the lines logged after ``step`` (a resumed run re-runs them), and a torn last line.

        The file is rewritten atomically, and only when something changes.
        """
        rows, torn = self._lines()
        keep = []
        for number, line, record in rows:
            if not isinstance(record.get("step"), int):
                raise RunFolderError(
                    f"{self.path} line {number} has no integer 'step' (something other than plmu wrote into it): "
                    f"delete that line, or delete the file to continue without the earlier metrics"
                )
            if record["step"] <= step:
                keep.append(line)
        if torn or len(keep) < len(rows):
            write_bytes_atomic(self.path, b"".join(line + b"\n" for line in keep))

    def clear(self) -> None:
        """Remove the file (a run that starts over must not continue an earlier attempt's records)."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as error:
            raise RunFolderError(
                f"could not remove {self.path}: {error.strerror or error}; delete it by hand or choose another "
                f"run folder (hydra.run.dir=...)"
            ) from None


class NullLogger:
    """``logger=none``: only metrics.jsonl."""

    def preflight(self) -> None:
        """Check, before any data is loaded, that :meth:`start` can succeed (nothing to check here)."""

    def start(self, run_dir: Path, config: dict[str, Any], run_name: str, group: str | None = None) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger(NullLogger):
    """Weights & Biases. ``mode``: offline (default; no account needed), online, or disabled. ``quiet``: wandb's
    own console lines (about 30 a run) off; plmu's log says where the run is."""

    def __init__(self, **settings: Any) -> None:
        """``settings``: the keys of :class:`plmu.train.settings.WandbSettings` (project, mode, entity, group, tags,
        quiet), each checked against its rule."""
        from omegaconf import OmegaConf

        plain = {key: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for key, v in settings.items()}
        try:  # Hydra hands lists over as ListConfig: the rules check plain values
            values = checked(WandbSettings(**plain), "logger.")
        except TypeError as error:  # a key WandbSettings does not declare
            raise ConfigError(f"logger: {error} (the keys: {', '.join(defaults(WandbSettings))})") from None
        self.project, self.mode, self.entity, self.group = values.project, values.mode, values.entity, values.group
        self.tags, self.quiet = list(values.tags or []), values.quiet
        self.run = None

    def preflight(self) -> None:
        """Online mode: a wandb API key must be configured; checked without network access and without a prompt."""
        if self.mode == "online" and not _wandb_has_credentials():
            raise ConfigError(NO_API_KEY)

    def start(self, run_dir: Path, config: dict[str, Any], run_name: str, group: str | None = None) -> None:
        """Start (or, for the same run folder, resume) the wandb run.

        ``group`` (e.g. a Hydra sweep's folder name) gathers the runs of one sweep; ``logger.group`` wins over it.
        """
        import wandb
        from wandb.errors import CommError, UsageError

        try:
            self.run = wandb.init(
                project=self.project,
                entity=self.entity,
                group=self.group or group,
                tags=self.tags,
                mode=self.mode,
                dir=str(run_dir),
                name=run_name,
                config=config,
                resume="allow",
                id=_stable_id(run_dir),  # a resumed run continues the same wandb run
                settings=wandb.Settings(silent=self.quiet),
            )
            if self.quiet and self.run is not None:
                where = Path(self.run.dir).parent  # <run folder>/wandb/<mode>-run-<time>-<id>
                sync = f" (upload: wandb sync {where})" if self.mode == "offline" else ""
                log.info("wandb: %s run in %s%s", self.mode, where, sync)
        except (UsageError, CommError) as error:  # no API key, a rejected key, the server unreachable
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            raise ConfigError(f"wandb could not start a run with logger.mode={self.mode} ({reason}). {_FIX}") from None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


_FIX = "Run `wandb login` or set WANDB_API_KEY, or use logger.mode=offline (the default) / logger=none"
_DEFAULT_HOST = "https://api.wandb.ai"


def _wandb_has_credentials() -> bool:
    """Whether wandb would find credentials (WANDB_API_KEY, an identity token, ~/.netrc, an in-process login).

    Asks wandb's own resolver (0.31: ``wbauth.authenticate_session`` with ``prompt=False``, which reads the
    environment and the netrc file only); if a later wandb moved it, falls back to the environment and netrc.
    """
    try:
        from wandb.errors import AuthenticationError
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:
        return _env_or_netrc_credentials()
    try:
        settings = wandb_setup.singleton().settings  # reads settings files and the environment; starts nothing
        try:
            host = wbauth.HostUrl(settings.base_url, app_url=settings.app_url)
        except ValueError as error:
            raise ConfigError(
                f"logger.mode=online: wandb's server address is invalid ({error}); fix WANDB_BASE_URL"
            ) from None
        auth = wbauth.authenticate_session(host=host, source="plmu", prompt=False, update_session=False)
    except AuthenticationError as error:  # a key in the wrong format, or WANDB_API_KEY and a token file both set
        raise ConfigError(f"logger.mode=online: the wandb credentials are invalid ({error}). {_FIX}") from None
    except (AttributeError, TypeError):  # wandb's internals changed shape
        return _env_or_netrc_credentials()
    return auth is not None


def _env_or_netrc_credentials() -> bool:
    import netrc
    from urllib.parse import urlsplit

    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or _DEFAULT_HOST).netloc
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def _stable_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
