"""The one error hierarchy of eventlake.

Every error raised on purpose by the library derives from `EventlakeError`, and every one is
defined here (modules that raise them import them from here); subclasses also inherit the
matching builtin so callers that catch `ValueError` or `KeyError` keep working. Each error
says whether retrying the same call can succeed (`transient`), which is what flows use to
decide on retries: bad input is terminal, a lost commit race is transient. The one warning
eventlake issues, `StorageWarning`, is here too.
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = [
    "ChangedFileError",
    "ChangesUnavailableError",
    "ColumnMismatchError",
    "CommandError",
    "CommitConflictError",
    "ConfigError",
    "CorruptLakeError",
    "EventlakeError",
    "ForkedProcessError",
    "InboxNotFoundError",
    "InvalidArgumentError",
    "InvalidEventError",
    "LakeNotFoundError",
    "MarkedError",
    "MaterializeError",
    "PartitionFailedError",
    "RebuildSupersededError",
    "ReducerError",
    "RelayoutError",
    "RestoreError",
    "SqlViewError",
    "StaleLogError",
    "StorageError",
    "StorageFullError",
    "StorageOptionError",
    "StoragePanicError",
    "StorageUnavailableError",
    "StorageWarning",
    "UnknownActionError",
    "UnknownPartitionError",
    "UnknownViewError",
    "UnstagedChunkError",
    "ViewChangedError",
    "ViewDefinitionError",
]


class EventlakeError(Exception):
    """Root of every error eventlake raises on purpose."""

    transient: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (process pools, Dask workers). Pickling calls
        # `type(*args)` by default, which fails for the keyword-only context most errors take
        # (and would mistake a message for a view name): rebuild from args and attributes.
        state = dict(vars(self))
        if isinstance(self, OSError):
            # These live in OSError's own slots, not in __dict__; one set to None would still
            # count as set, and `str()` would show "[Errno None] None: None".
            slots = {"errno": self.errno, "strerror": self.strerror, "filename": self.filename}
            state.update((name, value) for name, value in slots.items() if value is not None)
        return _unpickle, (type(self), self.args, state)


def _unpickle(cls: type[EventlakeError], args: tuple[Any, ...],
              state: dict[str, Any]) -> EventlakeError:
    error = cls.__new__(cls, *args)
    error.args = args
    for name, value in state.items():
        setattr(error, name, value)
    return error


class InvalidEventError(EventlakeError, ValueError):
    """An event (or an action payload) is malformed.

    Carries `index` (position of the record in its batch, when known), `field`, `value` and
    `expected`, and says all of them in the message.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        field: str | None = None,
        value: Any = None,
        expected: str | None = None,
        source: str | None = None,
    ) -> None:
        self.reason = message
        self.index = index
        self.field = field
        self.value = value
        self.expected = expected
        self.source = source
        parts = []
        if source is not None:
            parts.append(source)
        if index is not None:
            parts.append(f"record {index}")
        if field is not None:
            parts.append(f"field {field!r}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        if value is not None:
            text += f" (got {_preview(value)})"
        if expected is not None:
            text += f"; expected {expected}"
        super().__init__(text)

    def within(self, field: str, *, index: int | None = None) -> InvalidEventError:
        """The same error for a value found under `field` (of record `index`).

        An action names fields of its payload (`target`); the batch names them from the
        record (`payload.target`).
        """
        inner = field if self.field in (None, field) else f"{field}.{self.field}"
        return InvalidEventError(self.reason, index=self.index if index is None else index,
                                 field=inner, value=self.value, expected=self.expected,
                                 source=self.source)


class InvalidArgumentError(EventlakeError, ValueError):
    """An argument of a library call (not an event field: see `InvalidEventError`) is out of
    its range; carries `argument`, `value` and `expected`, and says all of them."""

    def __init__(self, argument: str, value: object, expected: str) -> None:
        self.argument = argument
        self.value = value
        self.expected = expected
        super().__init__(f"{argument} must be {expected}, got {_preview(value)}")


class ConfigError(EventlakeError, ValueError):
    """A setting (a flag, an environment variable, `[tool.eventlake]` in pyproject.toml, a
    views module it names) cannot be used as given; the message names it and its source."""


class StorageOptionError(ConfigError):
    """Storage options that cannot be used as given (the message never shows a value)."""


class InboxNotFoundError(EventlakeError, FileNotFoundError):
    """The inbox folder to ingest from does not exist, or is not a folder."""

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0])


class ChangedFileError(EventlakeError, ValueError):
    """A file is ingested under a name that already landed with other content.

    Carries `file` (the path), `producer` and `previous` (the batch number the name landed
    as, when known). Terminal: re-running does not change the file.
    """

    def __init__(self, message: str, *, file: str, producer: str,
                 previous: str | None = None) -> None:
        self.file = file
        self.producer = producer
        self.previous = previous
        super().__init__(message)


class UnknownActionError(EventlakeError, ValueError):
    """`apply_action` was given a type that is not a state action."""

    def __init__(self, action_type: object, known: tuple[str, ...]) -> None:
        self.action_type = action_type
        self.known = known
        super().__init__(
            f"unknown action type {_preview(action_type)}; known actions: {', '.join(known)}"
        )


class UnknownViewError(EventlakeError, KeyError):
    """A view name that is not registered on the lake."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"no view named {name!r}; registered views: {', '.join(known) or '-'}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownPartitionError(EventlakeError, KeyError):
    """`erase` was given a partition the event log holds no event of (names are matched
    exactly: another partition whose name only looks alike is never touched); `erased` is
    true when an earlier erase took it out."""

    def __init__(self, partition: str, *, erased: bool = False) -> None:
        self.partition = partition
        self.erased = erased
        detail = (" (an earlier erase removed it: `eventlake doctor` lists the erased seq "
                  "ranges)" if erased else "")
        super().__init__(f"no partition {_preview(partition)} in the event log{detail}; "
                         "expected the exact name of a partition with events")

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ViewDefinitionError(EventlakeError, ValueError):
    """A view definition (name, version, group keys, aggregates) is not usable."""


class ViewChangedError(ViewDefinitionError):
    """A view's definition changed since its rows were built, but its version did not.

    Using those rows would mix two definitions. `acceptable` is False when the change needs
    a rebuild anyway (a column changed type); `detail` says what changed when known.
    """

    def __init__(self, view: str, version: int, *, detail: str = "",
                 acceptable: bool = True) -> None:
        self.view = view
        self.version = version
        self.acceptable = acceptable
        what = f" ({detail})" if detail else ""
        advice = ("bump its version to rebuild, or pass --accept-changed-definition "
                  "(accept_changed_definition=True in Python) if its rows stay right"
                  if acceptable else "bump its version to rebuild")
        super().__init__(
            f"view {view!r} changed since it was built at version {version}{what}: {advice}")


class SqlViewError(ViewDefinitionError):
    """A SQL view's SELECT failed when run over the events (DuckDB's message, such as a cast
    that a payload value does not fit). Nothing of that refresh is committed."""

    def __init__(self, view: str, error: str) -> None:
        self.view = view
        self.error = error
        super().__init__(f"SQL view {view!r} failed: {error}")


class ReducerError(EventlakeError):
    """A view's reducer raised on an event; names view, partition, seq and event type.

    `error` is the reducer's exception as text (`"ZeroDivisionError: ..."`); `cause` may be
    that text when the failure was read back from a view row.
    """

    def __init__(
        self, *, view: str, partition: str, seq: int, event_type: str,
        cause: BaseException | str, hint: str = "",
    ) -> None:
        self.view = view
        self.partition = partition
        self.seq = seq
        self.event_type = event_type
        self.error = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(
            f"view {view!r} failed on partition {partition!r} at seq {seq} "
            f"(event type {event_type!r}): {self.error}{hint}"
        )


class PartitionFailedError(ReducerError):
    """A partition of a view is failed at an event: its view row stopped there (see
    `Lake.failed_partitions`), or a read folding newer events met the failing one.

    Reading it past that event is refused; the other partitions are not affected.
    """

    def __init__(
        self, *, view: str, partition: str, seq: int, event_type: str,
        cause: BaseException | str,
    ) -> None:
        super().__init__(
            view=view, partition=partition, seq=seq, event_type=event_type, cause=cause,
            hint=("; fix the cause, then `eventlake materialize --retry-failed` folds it "
                  "again (a changed definition needs a version bump or "
                  "--accept-changed-definition)"))


class ColumnMismatchError(ReducerError, ValueError):
    """A typed reducer view's state does not fit its declared `columns` (with the default
    `on_mismatch="error"`): the refresh stopped at that event and committed nothing of it.

    Names the view, partition, seq and type of the event whose returned state did not fit
    (`seq` 0 and type "(initial state)" for `initial_state()`), the `column`, the `value`
    (its repr, shortened) and the `expected` type; `problem` says what is wrong.
    """

    def __init__(self, *, view: str, partition: str, seq: int, event_type: str, column: str,
                 value: object, expected: str, problem: str) -> None:
        self.view = view
        self.partition = partition
        self.seq = seq
        self.event_type = event_type
        self.column = column
        self.value = _preview(value)
        self.expected = expected
        self.problem = problem
        self.error = f"column {column!r}: {problem}"
        where = ("its initial_state()" if event_type == "(initial state)"
                 else f"seq {seq} (event type {event_type!r})")
        EventlakeError.__init__(
            self,
            f"view {view!r} partition {partition!r} at {where}: column {column!r} "
            f"{problem} (value {self.value}, expected {expected}); nothing of this refresh "
            "was committed. Fix the reducer, or change `columns` (with a version bump), or "
            "declare on_mismatch='null' to store null and count it")


class CommitConflictError(EventlakeError, RuntimeError):
    """Another writer kept winning the commit race; retrying later can succeed."""

    transient = True


class StaleLogError(CommitConflictError):
    """`append(..., expected_last_seq=n)` found the log at another seq; nothing was written.

    Carries `expected` and `actual` (the log's last seq). Transient: re-read and try again.
    """

    def __init__(self, *, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"the event log is at seq {actual}, not at the expected seq {expected}: "
                         "another writer appended first; re-read the log and try again")


class MarkedError(CommitConflictError):
    """`append(..., expect_marks=...)` found marks (`marks`, their app ids) holding other
    versions than expected: another writer set them first; nothing was written. Re-read what
    they record and decide again."""

    def __init__(self, marks: list[str]) -> None:
        self.marks = marks
        shown = ", ".join(marks[:3]) + (f" and {len(marks) - 3} more" if len(marks) > 3 else "")
        super().__init__(f"another writer set {shown} first; nothing was written")


class RebuildSupersededError(CommitConflictError):
    """Another materializer took over the rebuild of a view (`view`) while this one ran;
    this one stopped. Transient: run materialize again."""

    def __init__(self, view: str) -> None:
        self.view = view
        super().__init__(f"rebuild of view {view!r} was taken over by another materializer; "
                         "run materialize again")


class UnstagedChunkError(CommitConflictError):
    """A chunk of `file` (number `chunk`) had landed when the ingest read the file, so it
    was not staged, and its batch key is not in the log now (a restore revoked it
    meanwhile). The chunks before it landed; transient: ingest the file again, which
    resumes at this chunk."""

    def __init__(self, file: str, chunk: int) -> None:
        self.file, self.chunk = file, chunk
        super().__init__(f"{file}: chunk {chunk} had landed when the file was read and is not "
                         "in the log now (a restore meanwhile?); ingest the file again")


class MaterializeError(EventlakeError):
    """Some views failed to refresh; `failures` maps view name to its error, `results` holds
    the `MaterializeResult` of each view that did refresh, by view name."""

    # `results` is typed loosely: this module imports nothing of eventlake, and
    # `MaterializeResult` lives with the engine that makes it.
    def __init__(self, failures: dict[str, EventlakeError], results: dict[str, Any]) -> None:
        self.failures = failures
        self.results = results
        first = next(iter(failures.values()))
        more = f" (and {len(failures) - 1} more views)" if len(failures) > 1 else ""
        super().__init__(f"{first}{more}")


class LakeNotFoundError(EventlakeError, FileNotFoundError):
    """The lake root holds no event log and the call does not create one."""


class CorruptLakeError(EventlakeError, RuntimeError):
    """A file the Delta log references is missing or unreadable; names the file."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class ChangesUnavailableError(EventlakeError, LookupError):
    """A view's change feed was asked for versions whose commit or data files are gone (Delta
    log retention, vacuum): the history before them can no longer be replayed."""


class RestoreError(EventlakeError, ValueError):
    """The event log cannot be restored to the asked version; the log was not changed.

    Carries `version` (the target asked for, when known) and `current` (the log's version).
    """

    def __init__(self, message: str, *, version: int | None = None,
                 current: int | None = None) -> None:
        self.version = version
        self.current = current
        super().__init__(message)


class StorageError(EventlakeError, OSError):
    """The storage under a lake failed a read or a write (not the data: see
    `CorruptLakeError`).

    Carries `path` (the table concerned), `endpoint` (the object store's address, never a
    credential; None for a local lake) and `committed`: False when the failed operation is
    known to have committed nothing, None when it was a read.
    """

    def __init__(self, message: str, *, path: str, endpoint: str | None = None,
                 committed: bool | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.endpoint = endpoint
        self.committed = committed

    def __str__(self) -> str:  # OSError would format its args as a tuple
        return str(self.args[0])

    def nothing_committed(self) -> StorageError:
        """The same error, raised by a write that is known to have committed nothing."""
        return type(self)(f"{self.args[0]}; nothing was committed", path=self.path,
                          endpoint=self.endpoint, committed=False)


class StorageFullError(StorageError):
    """No space left on the device (or in the disk quota) that holds a local lake.

    Terminal: trying again fails the same way until someone frees space.
    """

    def __init__(self, message: str, *, path: str, endpoint: str | None = None,
                 committed: bool | None = None) -> None:
        super().__init__(message, path=path, endpoint=endpoint, committed=committed)
        self.errno = errno.ENOSPC


class StorageUnavailableError(StorageError, ConnectionError):
    """The object store holding the lake did not answer (down, unreachable, timed out).

    Transient: it may answer again later.
    """

    transient = True


class StoragePanicError(EventlakeError, RuntimeError):
    """deltalake's Rust code panicked (its `PanicException` derives from `BaseException`, so
    `except Exception` would miss it); the message is the panic's, on one line."""


class ForkedProcessError(EventlakeError, RuntimeError):
    """A lake used in a process forked after its parent had opened a lake.

    deltalake's runtime belongs to the process that started it and cannot work in a forked
    child; start child processes with the `spawn` or `forkserver` method instead. Carries
    `pid` (this process) and `parent` (the process that opened the lake).
    """

    def __init__(self, *, pid: int, parent: int) -> None:
        self.pid = pid
        self.parent = parent
        super().__init__(
            f"this process ({pid}) was forked from process {parent} after that process had "
            "opened a lake, and deltalake cannot work in a forked child: start child "
            "processes with the 'spawn' or 'forkserver' start method "
            "(multiprocessing.get_context('spawn'), or "
            "ProcessPoolExecutor(mp_context=multiprocessing.get_context('spawn')))")


def _preview(value: object, limit: int = 80) -> str:
    if isinstance(value, str | bytes) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # no need to repr a megabyte to show 80 characters
    try:
        text = repr(value)
    except (RecursionError, ValueError) as exc:
        # Nested too deeply to repr, or an int with more digits than Python will print.
        return f"<{type(value).__name__} that cannot be shown: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RelayoutError(EventlakeError, RuntimeError):
    """A relayout did not commit (another writer committed to the log first, or it read
    another number of events than the log holds); nothing changed. Transient: run it again."""

    transient = True


class CommandError(EventlakeError):
    """A CLI command cannot run as asked (for example an input file does not exist)."""


class StorageWarning(UserWarning):
    """A write whose commit landed, but a step after the commit failed (for example the
    checkpoint delta-rs writes after every 50th commit, on a disk that just filled up); or a
    read that stayed exact around damaged storage (a partition's state folded from the event
    log alone because its view's log is damaged)."""
