"""Write a local file whole or not at all: to a temporary name beside it, then renamed over it.

Readers of the target see the old file or the new one, never part of either: a writer that
fails, is interrupted (Ctrl-C included) or crashes leaves the old file as it was, and its
temporary file is removed (after a crash, one hidden `.<name>.<random>.partial` may stay: the
names start with '.', which listings such as the inbox's skip). The temporary file is in the
target's own folder because a rename is atomic only within one file system.

Before the rename the data is flushed to disk (`fsync`), and the folder after it, so a power
loss cannot leave a renamed but empty file: writes that someone relies on after a crash (a
quarantine file written before its batch lands) are durable once `atomic_*` returns.

The Delta log's commit (`deltalog.LocalLog.commit`) also writes a temporary file, but
publishes it with `os.link` (put-if-absent: fail when the version exists, fall back when the
file system has no hard links), which is not this helper's replace-over semantics.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Literal, overload

__all__ = ["atomic_path", "atomic_write"]

StrPath = str | os.PathLike[str]


def _temporary(target: Path) -> Path:
    """Create (exclusively) an empty temporary file next to `target` and return its path."""
    for _ in range(100):
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
        try:
            # 0o666 as `open()` uses, so the umask decides the mode as for any new file
            # (tempfile.mkstemp would make it 0o600: a result others cannot read).
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            # Name the file the caller asked for, not the temporary one.
            raise type(exc)(exc.errno, exc.strerror, str(target)) from None
        os.close(fd)
        return candidate
    raise FileExistsError(f"no free temporary name next to {target}")


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: StrPath, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path for a writer that opens files itself (pyarrow's ParquetWriter);
    when the block ends without an error it replaces `target`.

    The temporary file exists (empty) when the block starts: the writer overwrites it.
    On any exception, `KeyboardInterrupt` included, it is removed and `target` is untouched.
    """
    final = Path(target)
    temporary = _temporary(final)
    try:
        yield temporary
        if durable:
            _sync_file(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _sync_folder(final.parent)


@overload
def atomic_write(target: StrPath, mode: Literal["w"] = "w", *, encoding: str = "utf-8",
                 newline: str | None = None, durable: bool = True
                 ) -> AbstractContextManager[IO[str]]: ...


@overload
def atomic_write(target: StrPath, mode: Literal["wb"], *, encoding: str = "utf-8",
                 newline: str | None = None, durable: bool = True
                 ) -> AbstractContextManager[IO[bytes]]: ...


def atomic_write(target: StrPath, mode: Literal["w", "wb"] = "w", *, encoding: str = "utf-8",
                 newline: str | None = None, durable: bool = True
                 ) -> AbstractContextManager[IO[str]] | AbstractContextManager[IO[bytes]]:
    """Yield a handle (text for mode "w", binary for "wb") whose content replaces `target`
    when the block ends without an error; see the module doc."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    return _handle(Path(target), mode, encoding=encoding, newline=newline, durable=durable)


@contextmanager
def _handle(target: Path, mode: str, *, encoding: str, newline: str | None,
            durable: bool) -> Iterator[IO[Any]]:
    with atomic_path(target, durable=durable) as temporary:
        if mode == "wb":
            with open(temporary, "wb") as raw:
                yield raw
        else:
            with open(temporary, "w", encoding=encoding, newline=newline) as text:
                yield text
