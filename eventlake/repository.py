"""`Repository`: the insieme repository API (init, add_event, get_state, ...) on a lake.

The repository's document state is the fold of every event in the log, in `seq` order, through
the insieme state actions; event types that are not state actions leave it unchanged, and so
does a logged action the state refuses (only a writer bypassing `add_event` can log one). It keeps
the log's events and a checkpoint every `checkpoint_interval` events in memory, as insieme does,
so `get_state(i)` replays at most one interval. Partition state never needs any of that: it is
served from the materialized document view (`Lake.state`), reading only that partition.

Unlike insieme's in-memory store the log here is shared: before every write and every read of
the current state the repository folds in events other writers appended meanwhile. Writes are
optimistic: an event is checked against the state at the log's last seq and committed only if
the log is still at that seq (`expected_last_seq`); otherwise the repository catches up and
checks again, so an action never lands against a state it was not checked on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eventlake.errors import (
    CommitConflictError,
    CorruptLakeError,
    InvalidArgumentError,
    InvalidEventError,
    StaleLogError,
)
from eventlake.model.actions import copy_json
from eventlake.model.views import DOCUMENT_VIEW, fold
from eventlake.store.storage import backoff
from eventlake.validate.events import NormalizedBatch, decode_payload, normalize_batch

if TYPE_CHECKING:
    from eventlake.lake import Lake

__all__ = ["DEFAULT_PARTITION", "Repository"]

DEFAULT_PARTITION = "_default"
_INIT = "init"
# How often add_event re-checks an event after other writers moved the log under it.
_WRITE_ATTEMPTS = 50


def _check(state: dict[str, Any], kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The document view's reducer on one new event: raises where the view would skip it."""
    result: dict[str, Any] = DOCUMENT_VIEW.reduce(state, {"type": kind, "payload": payload})
    return result


def _replay(state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The document view's fold of events already in the log.

    An event the state refuses is skipped, exactly as the view skips it (only a writer that
    bypassed `add_event` can have logged one), so both read the log alike.
    """
    result: dict[str, Any] = fold(DOCUMENT_VIEW, state, events)
    return result


def _bad_argument(name: str, value: object, expected: str) -> InvalidEventError:
    # A type error in spirit, raised as the one error bad input gets (a ValueError).
    return InvalidEventError(f"wrong type for argument {name}: {type(value).__name__}", field=name,
                             value=value, expected=expected)


class Repository:
    """The insieme repository API over `lake`, in snake_case.

    Events without a partition (missing, None or `""`) go to `default_partition`
    (`"_default"` unless given), and `get_events(partition="")` and `get_partition_state("")`
    read that same partition: what is written with `""` reads back with `""`.
    """

    def __init__(self, lake: Lake, *, checkpoint_interval: int = 50,
                 default_partition: str = DEFAULT_PARTITION) -> None:
        if checkpoint_interval < 1:
            raise InvalidArgumentError("checkpoint_interval", checkpoint_interval,
                                       "an int of at least 1")
        self.lake = lake
        self.checkpoint_interval = checkpoint_interval
        self.default_partition = default_partition
        self._events: list[dict[str, Any]] = []
        self._checkpoints: dict[int, dict[str, Any]] = {0: {}}
        self._checkpoint_indexes: list[int] = [0]
        self._state: dict[str, Any] = {}
        self._last_seq = 0
        self._loaded = False

    # -- insieme API ---------------------------------------------------------------------

    def init(self, initial_state: Mapping[str, Any] | None = None) -> None:
        """Load the log; on an empty log with `initial_state`, write one `init` event.

        The `init` event is committed only if the log is still empty at commit time, so two
        repositories initialising the same empty lake at once write one `init` between them.
        """
        self._reset()
        self._catch_up()
        if self._events or initial_state is None:
            return
        if not isinstance(initial_state, Mapping):
            raise InvalidEventError("initial state is not an object", field="initial_state",
                                    value=initial_state, expected="a dict")
        batch = self._normalize({"type": _INIT, "payload": {"value": dict(initial_state)},
                                 "partition": self.default_partition})
        try:
            self.lake.append(batch, expected_last_seq=0)
        except StaleLogError:
            pass  # someone else wrote first: the log is not empty any more
        self._catch_up()

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Append one event; a state action must apply to the current state, else
        `InvalidEventError` is raised and nothing is written."""
        if not isinstance(event, Mapping):
            raise InvalidEventError("event is not a mapping", value=event,
                                    expected="a dict with type, payload and partition")
        kind = event.get("type")
        if kind == _INIT:
            raise InvalidEventError(
                "init events can only be created through init()", field="type", value=kind,
                expected="any type but 'init'; use Repository.init(initial_state)")
        record = dict(event)
        if record.get("partition") in (None, "") and "partition_id" not in record:
            record["partition"] = self.default_partition
        batch = self._normalize(record)
        payload = decode_payload(batch.table.column("payload")[0].as_py())
        self._ensure_loaded()
        delay = 0.005
        for _ in range(_WRITE_ATTEMPTS):
            self._catch_up()
            # Refuse, before anything is written, an action that cannot apply.
            try:
                state = _check(self._state, batch.table.column("type")[0].as_py(), payload)
            except InvalidEventError as exc:
                raise exc.within("payload", index=0) from None
            try:
                result = self.lake.append(batch, expected_last_seq=self._last_seq)
            except StaleLogError:
                backoff(delay)
                delay = min(0.25, delay * 2)
                continue
            assert result.first_seq == self._last_seq + 1
            self._record({"type": kind, "payload": payload,
                          "partition": batch.table.column("partition_id")[0].as_py(),
                          "seq": result.first_seq}, state)
            return
        raise CommitConflictError(
            f"add_event: other writers kept appending for {_WRITE_ATTEMPTS} attempts; "
            "try again")

    def get_state(self, until_event_index: int | None = None) -> dict[str, Any]:
        """State after the first `until_event_index` events (clamped to 0..N), a private copy.

        Without an index (or with one beyond the events seen so far) the repository first
        folds in events other writers appended.
        """
        if until_event_index is not None and (
                isinstance(until_event_index, bool) or not isinstance(until_event_index, int)):
            raise _bad_argument("until_event_index", until_event_index, "an int or None")
        self._ensure_loaded()
        if until_event_index is None or until_event_index > len(self._events):
            self._catch_up()
        total = len(self._events)
        target = total if until_event_index is None else max(0, min(until_event_index, total))
        if target == total:
            return copy_json(self._state)
        start = self._checkpoint_indexes[bisect_right(self._checkpoint_indexes, target) - 1]
        return copy_json(_replay(self._checkpoints[start], self._events[start:target]))

    def get_events(self, partition: str | None = None) -> list[dict[str, Any]]:
        """Events in `seq` order as dicts `{type, payload, partition, seq}`.

        `partition=None` gives every event; `""` names the default partition.
        """
        frame = self.lake.events(None if partition is None else self._partition(partition)
                                 ).collect()
        return [
            {"type": kind, "payload": decode_payload(payload), "partition": part, "seq": seq}
            for kind, payload, part, seq in zip(
                frame.get_column("type").to_list(), frame.get_column("payload").to_list(),
                frame.get_column("partition_id").to_list(), frame.get_column("seq").to_list(),
                strict=True)
        ]

    def get_partition_state(self, partition: str) -> dict[str, Any]:
        """The document state of one partition, from the materialized document view.

        Reads that partition's view row and folds its events newer than the row; no other
        partition's events are read.
        """
        state = self.lake.state(self._partition(partition), view="document")
        if not isinstance(state, dict):
            # The document reducer only makes objects: another value was not written by it.
            raise CorruptLakeError(f"the document view row of partition {partition!r} holds "
                                   f"a {type(state).__name__}, not an object")
        return state

    # -- internals -----------------------------------------------------------------------

    def _partition(self, partition: object) -> str:
        """The partition a read names: `""` is the default partition, as in `add_event`."""
        if not isinstance(partition, str):
            raise _bad_argument("partition", partition, "a partition name (a string)")
        return partition or self.default_partition

    def _normalize(self, record: dict[str, Any]) -> NormalizedBatch:
        return normalize_batch([record], limits=self.lake.limits)

    def _reset(self) -> None:
        self._events = []
        self._checkpoints = {0: {}}
        self._checkpoint_indexes = [0]
        self._state = {}
        self._last_seq = 0
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.init()

    def _catch_up(self) -> None:
        """Fold in, in seq order, the events appended to the log since we last looked."""
        if self.lake.last_seq() <= self._last_seq:
            return
        frame = self.lake.events(since_seq=self._last_seq).collect()
        for kind, payload, partition, seq in zip(
            frame.get_column("type").to_list(), frame.get_column("payload").to_list(),
            frame.get_column("partition_id").to_list(), frame.get_column("seq").to_list(),
            strict=True,
        ):
            event = {"type": kind, "payload": decode_payload(payload), "partition": partition,
                     "seq": seq}
            self._record(event, _replay(self._state, [event]))

    def _record(self, event: dict[str, Any], state: dict[str, Any]) -> None:
        self._events.append(event)
        self._state = state
        self._last_seq = event["seq"]
        index = len(self._events)
        if index % self.checkpoint_interval == 0:
            self._checkpoints[index] = state
            self._checkpoint_indexes.append(index)
