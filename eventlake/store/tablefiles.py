"""A table's files and its Delta log, read straight from storage (below delta-rs).

Why apart from delta-rs: when a table will not open, delta-rs says only that its log is
broken; these readers name the damaged commit file (`find_log_damage`, which the storage
seam calls), tell a commit that landed from one that did not (`read_commit`), and list every
data path the log ever referenced (`check_log`), which `doctor` needs to find orphans and
`restore` to check a version's files are still there. Findings are `Problem`s, the unit of
`doctor`'s report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from eventlake.store.storage import Storage

__all__ = [
    "FIXABLE",
    "LOG_DIR",
    "Kind",
    "Problem",
    "check_log",
    "find_log_damage",
    "join_path",
    "list_files",
    "list_folders",
    "missing_files",
    "read_commit",
    "relative_path",
]

LOG_DIR = "_delta_log"

# "erase": an erase of a partition that started and did not finish (eventlake.ops.erase).
Kind = Literal["orphan", "temp", "missing", "size", "unreadable", "rows", "log", "seq",
               "erase"]
FIXABLE: frozenset[str] = frozenset({"orphan", "temp"})


@dataclass(frozen=True)
class Problem:
    """One finding: the table, what is wrong, the file (full path or URI) and details."""

    table: str
    kind: Kind
    path: str
    detail: str
    size: int | None = None

    @property
    def fixable(self) -> bool:
        """Whether `doctor(fix=True)` may delete the file (orphans and temp commit files)."""
        return self.kind in FIXABLE

    def __str__(self) -> str:
        return f"{self.table}: {self.kind}: {self.path}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "kind": self.kind, "path": self.path,
                "detail": self.detail, "size": self.size, "fixable": self.fixable}


# -- files ----------------------------------------------------------------------


def join_path(base: str, relative: str) -> str:
    return f"{base}/{relative}" if base else relative


def list_files(fs: pafs.FileSystem, base: str) -> list[pafs.FileInfo]:
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(base or "", recursive=True,
                                                   allow_not_found=True))
    except FileNotFoundError:
        return []
    return [i for i in infos if i.type == pafs.FileType.File]


def relative_path(base: str, path: str) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1:]
    return path.lstrip("/")


# -- the Delta log ---------------------------------------------------------------------------


def _log_version(name: str) -> int | None:
    stem = name.split(".", 1)[0]
    return int(stem) if len(stem) == 20 and stem.isdigit() else None


def check_log(storage: Storage, name: str) -> tuple[list[Problem], set[str]]:
    """Problems of `<table>/_delta_log`, and every data path its commits ever named.

    Reads every JSON commit and the checkpoints. The paths (storage-decoded, relative to the
    table) are those of add and remove actions: all files the table ever referenced.
    """
    import pyarrow.parquet as pq

    fs, base = storage.file_system(name)
    log_base = join_path(base, LOG_DIR)
    problems: list[Problem] = []
    referenced: set[str] = set()
    commits: dict[int, str] = {}
    now = time.time()
    for info in list_files(fs, log_base):
        relative = relative_path(log_base, info.path)
        file_name = relative.rsplit("/", 1)[-1]
        shown = storage.shown(name, f"{LOG_DIR}/{relative}")
        # delta-rs writes a commit as `<version>.json#<n>` and links it into place.
        if "#" in file_name or file_name.startswith("_commit_") or file_name.endswith(".tmp"):
            age = now - info.mtime.timestamp() if info.mtime else 0.0
            problems.append(Problem(name, "temp", shown,
                                    f"half-written commit file ({age:.0f} s old)", info.size))
            continue
        version = _log_version(file_name)
        if version is None:
            continue
        if file_name.endswith(".json"):
            commits[version] = info.path
            number = 0
            try:
                with fs.open_input_stream(info.path) as handle:
                    text = handle.read().decode("utf-8")
                # Not splitlines(): a partition value may hold U+2028 and friends.
                for line in text.split("\n"):
                    number += 1
                    if not line.strip():
                        continue
                    action = json.loads(line)
                    for kind in ("add", "remove"):
                        entry = action.get(kind)
                        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                            referenced.add(unquote(entry["path"]))
            except (ValueError, UnicodeDecodeError, AttributeError) as exc:
                problems.append(Problem(name, "log", shown,
                                        f"commit {version} is not valid JSON lines "
                                        f"(line {number}: {exc})",
                                        info.size))
        elif ".checkpoint" in file_name and file_name.endswith(".parquet"):
            try:
                with fs.open_input_file(info.path) as handle:
                    table = pq.read_table(handle, columns=["add", "remove"])
                for kind in ("add", "remove"):
                    for entry in table.column(kind).to_pylist():
                        if entry and entry.get("path"):
                            referenced.add(unquote(entry["path"]))
            except Exception as exc:
                problems.append(Problem(name, "log", shown,
                                        f"checkpoint {version} is unreadable: {exc}", info.size))
    if commits:
        versions = sorted(commits)
        missing = sorted(set(range(versions[0], versions[-1] + 1)) - set(versions))
        for version in missing[:10]:
            shown = storage.shown(name, f"{LOG_DIR}/{version:020d}.json")
            problems.append(Problem(
                name, "log", shown,
                f"commit {version} is missing between {versions[0]} and {versions[-1]}"))
    return problems, referenced


def find_log_damage(storage: Storage, name: str) -> Problem | None:
    """The first damaged commit file of a table's log, if any (used when a table won't open)."""
    try:
        problems, _ = check_log(storage, name)
    except Exception:
        return None
    return next((p for p in problems if p.kind == "log"), None)


def read_commit(storage: Storage, name: str, version: int) -> list[dict[str, Any]] | None:
    """The actions of commit `version` of a table's Delta log, or None when its file is not
    there (not written yet, or deleted by Delta's log retention)."""
    import pyarrow.fs as pafs

    fs, base = storage.file_system(name)
    path = join_path(base, f"{LOG_DIR}/{version:020d}.json")
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as handle:
        text = handle.read().decode("utf-8")
    # Not splitlines(): a partition value may hold U+2028 and friends.
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def list_folders(storage: Storage, name: str) -> list[str]:
    """Names of the folders directly under `<root>/<name>` (sorted; none if it is missing)."""
    import pyarrow.fs as pafs

    fs, base = storage.file_system(name)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base or "", recursive=False,
                                                   allow_not_found=True))
    except FileNotFoundError:
        return []
    return sorted(relative_path(base, i.path).rstrip("/") for i in infos
                  if i.type == pafs.FileType.Directory)


def missing_files(storage: Storage, name: str, paths: Iterable[str]) -> list[str]:
    """The add-action `paths` of a table that are not on storage (as shown by `doctor`)."""
    import pyarrow.fs as pafs

    fs, base = storage.file_system(name)
    missing = []
    for logged in paths:
        relative = logged if "://" in logged else unquote(logged)
        if fs.get_file_info(join_path(base, relative)).type != pafs.FileType.File:
            missing.append(storage.shown(name, relative))
    return missing
