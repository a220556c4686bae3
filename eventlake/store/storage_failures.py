"""Failures of the storage under a lake, told apart from everything else.

The storage seam (`eventlake.store.storage`) calls these around every table open and every write:

- **Forked processes.** deltalake starts one Rust (tokio) runtime per process on its first
  call, and that runtime cannot work in a child forked afterwards: every call there panics
  with "Forked process detected", a `BaseException` that `except Exception` misses.
  `check_process` notes the first call of this process and, in a child forked after it,
  raises `ForkedProcessError` before deltalake is called.
- **Panics.** Any other panic of deltalake becomes `StoragePanicError` with the panic's
  message on one line.
- **A full disk** (`StorageFullError`) and **an object store that does not answer**
  (`StorageUnavailableError`): recognized from the error's text, and when that is vague, by
  looking at the lake's file system (free space) or at the store (a TCP connection).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from eventlake.errors import (
    EventlakeError,
    ForkedProcessError,
    StorageFullError,
    StoragePanicError,
    StorageUnavailableError,
    StorageWarning,
)
from eventlake.store.storage_options import redact

if TYPE_CHECKING:
    from eventlake.store.storage import Storage

__all__ = [
    "StorageWarning",
    "Written",
    "check_free_space",
    "check_process",
    "is_delta_error",
    "is_panic",
    "landed",
    "one_line",
    "panic_error",
    "storage_failure",
]



@dataclass
class Written:
    """What `Storage.writing` learnt about its write (a handle the block fills in, hence
    not frozen): `landed_at` is the version the commit landed at when a step after it failed,
    None otherwise."""

    landed_at: int | None = None


# The process whose deltalake runtime the seam saw start, and (in a forked child) the parent.
_runtime_pid: int | None = None
_forked_from: int | None = None


def _after_fork_in_child() -> None:
    global _forked_from
    if _runtime_pid is not None and _forked_from is None:
        _forked_from = _runtime_pid


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_process() -> None:
    """Raise `ForkedProcessError` in a process forked after its parent opened a lake; called
    by the seam before every use of deltalake (the first call arms the check)."""
    global _runtime_pid
    if _forked_from is not None:
        raise ForkedProcessError(pid=os.getpid(), parent=_forked_from)
    if _runtime_pid is None:
        _runtime_pid = os.getpid()


def is_panic(exc: BaseException) -> bool:
    """Whether `exc` is a Rust panic surfacing through pyo3 (`pyo3_runtime.PanicException`).

    Each pyo3 extension (deltalake, polars) creates its own class of that name, so it is
    recognized by name, not by identity.
    """
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# delta-rs and object_store nest causes on lines starting with an arrow.
_CAUSE_MARK = re.compile(r"^[\s\u21b3]+")
_NO_SPACE = re.compile(r"no space left on device|os error 28\b|disk quota exceeded|"
                       r"os error 122\b", re.IGNORECASE)
_NO_ANSWER = re.compile(
    r"connection refused|tcp connect error|error sending request|dns error|"
    r"failed to lookup address|timed out|connection reset|connection closed|broken pipe|"
    r"incomplete message|os error (?:101|104|110|111|113)\b|"
    r"\b50[0234] (?:internal server error|bad gateway|service unavailable|gateway timeout)",
    re.IGNORECASE)
_FORK_PANIC = re.compile(r"forked process detected.*?created by (\d+)",
                         re.IGNORECASE | re.DOTALL)
# Below this much free space a failed write on a local lake is put down to the full disk even
# when delta-rs's message does not say so ("Failed to parse parquet", a panic).
_LOW_SPACE = 1024 * 1024
_PROBE_TIMEOUT = 2.0


def one_line(text: str) -> str:
    """`text` without ANSI colour codes and cause arrows, its lines joined by "; "."""
    lines = [_CAUSE_MARK.sub("", line).strip() for line in _ANSI.sub("", text).splitlines()]
    return "; ".join(line for line in lines if line)


def _first_line(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__


def is_delta_error(exc: BaseException) -> bool:
    """Whether `exc` is one of deltalake's own errors (`DeltaError` and its subclasses)."""
    # Looked up, not imported: the CLI calls this without loading deltalake, and an error of
    # deltalake can only exist once deltalake is loaded.
    module = sys.modules.get("deltalake.exceptions")
    return module is not None and isinstance(exc, module.DeltaError)


def _from_storage_library(exc: BaseException) -> bool:
    """An error of the I/O stack (deltalake, object_store, pyarrow, the OS), not of eventlake
    or of the caller's data."""
    return isinstance(exc, OSError) or is_delta_error(exc) or is_panic(exc)


def storage_failure(storage: Storage, exc: BaseException, *, path: str, action: str,
                    note: str | None = None) -> EventlakeError | None:
    """The eventlake error for `exc`, raised while `action` ("reading"/"writing") the table at
    `path`, when the storage caused it; None for any other error.

    A full disk (said by the error, or seen on the lake's file system when the error is
    vague) gives `StorageFullError`; an object store that does not answer (said by the
    error, or seen by a connection attempt) `StorageUnavailableError`; a deltalake panic
    `ForkedProcessError` or `StoragePanicError`. `note` ends a write's message.
    """
    if not isinstance(exc, Exception) and not is_panic(exc):
        return None  # KeyboardInterrupt, SystemExit
    text = _ANSI.sub("", str(exc))
    if is_panic(exc) and _FORK_PANIC.search(text):
        return panic_error(exc)
    suffix = f"; {note}" if note else ""
    committed = False if note else None
    if storage.is_local:
        shown = path.removeprefix("file://")
        errno_full = isinstance(exc, OSError) and exc.errno in (28, 122)  # ENOSPC, EDQUOT
        if errno_full or _NO_SPACE.search(text) or (
                action == "writing" and _from_storage_library(exc)
                and (_space(shown) or (_LOW_SPACE, 0))[0] < _LOW_SPACE):
            return StorageFullError(f"no space left on device {action} {shown}{suffix}",
                                    path=shown, committed=committed)
    else:
        endpoint = storage.endpoint
        # The innermost cause is the most telling ("Connection refused", not "HTTP error").
        causes = list(_NO_ANSWER.finditer(text))
        cause = causes[-1] if causes else None
        if cause is not None or (_from_storage_library(exc) and not _answers(endpoint)):
            why = _cause_line(text, cause) if cause is not None else "no connection"
            return StorageUnavailableError(
                redact(f"the object store at {endpoint} did not answer ({why}; {action} "
                       f"{path}){suffix}"),
                path=path, endpoint=endpoint, committed=committed)
    if is_panic(exc):
        return panic_error(exc, where=f"{action} {path}", note=note)
    return None


def panic_error(exc: BaseException, *, where: str = "", note: str | None = None
                ) -> ForkedProcessError | StoragePanicError:
    """The eventlake error for a Rust panic `exc`: `ForkedProcessError` for deltalake's
    "Forked process detected", else `StoragePanicError` with the panic's message."""
    text = _ANSI.sub("", str(exc))
    forked = _FORK_PANIC.search(text)
    if forked:
        return ForkedProcessError(pid=os.getpid(), parent=int(forked.group(1)))
    place = f" {where}" if where else ""
    suffix = f"; {note}" if note else ""
    return StoragePanicError(redact(f"a Rust library (deltalake) panicked{place}: "
                                    f"{one_line(text) or 'no message'}{suffix}"))


def _cause_line(text: str, match: re.Match[str]) -> str:
    """The line of `text` holding `match`, cleaned, at most 100 characters."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = one_line(text[start:end if end >= 0 else len(text)])
    return line if len(line) <= 100 else line[:97] + "..."


def _space(path: str) -> tuple[int, int] | None:
    """Free bytes on the file system holding `path` (or its nearest existing folder), as
    far as this process may use them (root may also use the blocks reserved for it), and
    that file system's block size; None where it cannot be told."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        if not hasattr(os, "statvfs"):
            return shutil.disk_usage(probe).free, 4096
        stats = os.statvfs(probe)
    except OSError:
        return None
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return (stats.f_bfree if root else stats.f_bavail) * stats.f_frsize, stats.f_frsize


def check_free_space(path: str, *, note: str) -> None:
    """Refuse a write up front on a file system that cannot hold even two blocks (a data
    file and a commit file): nothing is written, so no half-written file is left behind and
    delta-rs's writer threads do not panic on the full disk."""
    space = _space(path)
    if space is not None and space[0] < 2 * space[1]:
        raise StorageFullError(f"no space left on device writing {path}; {note}",
                               path=path, committed=False)


def _answers(endpoint: str) -> bool:
    """Whether a TCP connection to the object store's host opens within a short timeout."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if not parts.hostname:
        return True  # nothing to probe: do not blame the store
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return True
    try:
        with socket.create_connection((parts.hostname, port), timeout=_PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def landed(storage: Storage, table: str, version: int, *, txn: tuple[str, int] | None,
            metadata: tuple[str, str] | None) -> bool:
    """Whether commit `version` of `table` is the one marked by app transaction `txn` or by
    the commit-info entry `metadata` (False when the log cannot be read)."""
    from eventlake.store.tablefiles import read_commit

    try:
        actions = read_commit(storage, table, version)
    except Exception:  # the log cannot be read (the store is down): not known to have landed
        return False
    for action in actions or []:
        entry = action.get("txn")
        if (txn is not None and isinstance(entry, dict) and entry.get("appId") == txn[0]
                and entry.get("version") == txn[1]):
            return True
        info = action.get("commitInfo")
        if (metadata is not None and isinstance(info, dict)
                and info.get(metadata[0]) == metadata[1]):
            return True
    return False
