"""Rewrite the machine paths in records written before plmu recorded paths relative to the run folder.

    python scripts/portable_records.py experiments/            # rewrite in place; prints what changed
    python scripts/portable_records.py experiments/ --check    # exit 1 if any record still holds a machine path

Records (results.json, eval_*.json, translate_*.json, data_info.json) of older plmu versions held absolute paths of
the machine that ran them (/tmp/..., ~/.cache/...). Each is rewritten as plmu now writes it
(plmu.train.provenance.portable): relative to the run folder *where it ran* (its recorded ``run_dir``, or the
folder a recorded checkpoint lies in). A path inside that folder (a checkpoint, a report) stays valid wherever the
folder is moved; a path outside it (a data folder, a cache) is kept only as where it lay relative to the run, and the
record says so in ``record_note``. The run folder itself (``run_dir``) is dropped: the record lives in it. The exact
command and its overrides are kept as typed. A results.json without a ``dataset`` (older versions) gets the one its
config.yaml names. A record already free of machine paths is left untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any

from plmu.train.provenance import is_machine_path, machine_paths

RECORDS = ("*results.json", "data_info.json", "eval_*.json", "translate_*.json")  # *: a results.json kept renamed
NOTE = (
    "machine paths rewritten by scripts/portable_records.py relative to the run folder where it ran ({where}); the "
    "folder was moved afterwards, so paths outside it (data, caches) no longer resolve"
)


def where_it_ran(record: dict[str, Any], folder: Path) -> PurePosixPath | None:
    """The run folder's path on the machine that wrote ``record`` (or a sibling record of the same folder)."""
    for candidate in [record, *(_load(p) for p in folder.glob("*.json") if p.name != "data_info.json")]:
        if isinstance(candidate, dict) and is_machine_path(candidate.get("run_dir")):
            return PurePosixPath(candidate["run_dir"])
        checkpoint = candidate.get("checkpoint") if isinstance(candidate, dict) else None
        if is_machine_path(checkpoint) and PurePosixPath(checkpoint).parent.name == "checkpoints":
            return PurePosixPath(checkpoint).parent.parent
    return None


def dataset_of(folder: Path, results: dict[str, Any]) -> str:
    """The data set a run used, from its config.yaml: task.data.dataset where the task has one, else the task."""
    import yaml

    config = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
    data = (config.get("task") or {}).get("data") or {}
    return str(data.get("dataset") or results.get("task") or (config.get("task") or {}).get("name"))


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _relative(path: str, origin: PurePosixPath) -> str:
    """``path`` relative to ``origin``, both as they were on the machine that ran it (POSIX, no file system)."""
    target, base = PurePosixPath(path.replace("~", "/HOME", 1) if path.startswith("~") else path), origin
    common = 0
    for a, b in zip(target.parts, base.parts, strict=False):
        if a != b:
            break
        common += 1
    up = [".."] * (len(base.parts) - common)
    return str(PurePosixPath(*up, *target.parts[common:])) if up or target.parts[common:] else "."


def rewrite(record: Any, origin: PurePosixPath, key: str = "") -> Any:
    if isinstance(record, dict):
        return {
            k: v if k in ("command", "overrides") else rewrite(v, origin, k)
            for k, v in record.items()
            if k != "run_dir"
        }
    if isinstance(record, list):
        return [rewrite(v, origin, key) for v in record]
    if is_machine_path(record):
        if key == "dataset":  # old text records named local files by their path
            return f"local files ({PurePosixPath(record).name})"
        return _relative(record, origin)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--check", action="store_true", help="only report records that hold machine paths")
    args = parser.parse_args(argv)
    left = 0
    paths = [path for pattern in RECORDS for path in sorted(args.root.rglob(pattern))]
    records = {path: _load(path) for path in paths}
    # every folder's origin before any record is rewritten (a rewritten results.json no longer names it)
    origins = {folder: where_it_ran({}, folder) for folder in {path.parent for path in paths}}
    for path, record in records.items():
        if path.name == "results.json" and isinstance(record, dict) and "dataset" not in record:
            record = {**record, "dataset": dataset_of(path.parent, record)}  # older records named none
            if not args.check:
                path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
                print(f"{path}: added dataset {record['dataset']!r} (from config.yaml)")
        if not isinstance(record, dict) or not (found := machine_paths(record)):
            continue
        origin = origins[path.parent]
        if args.check or origin is None:
            print(f"{path}: machine paths in {', '.join(found)}" + ("" if args.check else " (where it ran: unknown)"))
            left += 1
            continue
        new = {**rewrite(record, origin), "record_note": NOTE.format(where=origin)}
        path.write_text(json.dumps(new, indent=2, allow_nan=False) + "\n")
        print(f"{path}: rewrote {', '.join(found)}")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
