"""`Repository`: the insieme repository API (init, add_event, get_state, ...) on a lake.

The repository's document state is the fold of every event in the log, in `seq` order, through
the insieme state actions; event types that are not state actions leave it unchanged. It keeps
the log's events and a checkpoint every `checkpoint_interval` events in memory, as insieme does,
so `get_state(i)` replays at most one interval. Partition state never needs any of that: it is
served from the materialized document view (`Lake.state`), reading only that partition.

Unlike insieme's in-memory store the log here is shared: before every write and every read of
the current state the repository folds in events other writers appended meanwhile.
"""

from __future__ import annotations

import copy
import json
from bisect import bisect_right
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from eventlake.actions import apply_action, is_state_action
from eventlake.errors import EventlakeError, InvalidEventError

if TYPE_CHECKING:
    from eventlake.lake import Lake

__all__ = ["DEFAULT_PARTITION", "Repository"]

DEFAULT_PARTITION = "_default"
_INIT = "init"


def _apply(state: dict[str, Any], kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return apply_action(state, kind, payload) if is_state_action(kind) else state


class Repository:
    """The insieme repository API over `lake`, in snake_case.

    Events without a partition go to `default_partition` (`"_default"` unless given).
    """

    def __init__(self, lake: Lake, *, checkpoint_interval: int = 50,
                 default_partition: str = DEFAULT_PARTITION) -> None:
        if checkpoint_interval < 1:
            raise ValueError("checkpoint_interval must be at least 1")
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
        """Load the log; on an empty log with `initial_state`, write one `init` event."""
        self._reset()
        self._catch_up()
        if not self._events and initial_state is not None:
            payload = {"value": copy.deepcopy(dict(initial_state))}
            result = self.lake.append(
                [{"type": _INIT, "payload": payload, "partition": self.default_partition}])
            if result.first_seq != 1:
                # Another writer got there first: the log is not empty any more; replay it.
                self._catch_up()
                return
            self._record({"type": _INIT, "payload": payload,
                          "partition": self.default_partition, "seq": result.first_seq})

    def add_event(self, event: Mapping[str, Any]) -> None:
        """Append one event; state actions are checked against the state first."""
        if not isinstance(event, Mapping):
            raise InvalidEventError("event is not a mapping", value=event,
                                    expected="a dict with type, payload and partition")
        kind = event.get("type")
        if kind == _INIT:
            raise InvalidEventError(
                "init events can only be created through init()", field="type", value=kind,
                expected="any type but 'init'; use Repository.init(initial_state)")
        self._ensure_loaded()
        self._catch_up()
        partition = event.get("partition") or self.default_partition
        payload = event.get("payload")
        record = {"type": kind, "payload": payload, "partition": partition}
        if isinstance(kind, str) and is_state_action(kind):
            if not isinstance(payload, Mapping):
                raise InvalidEventError("payload is not an object", field="payload",
                                        value=payload, expected="a JSON object")
            # Refuse, before anything is written, an action that cannot apply.
            new_state = apply_action(self._state, kind, dict(payload))
        else:
            new_state = self._state
        result = self.lake.append([record])
        assert result.first_seq is not None
        if result.first_seq != self._last_seq + 1:
            # Someone appended between our catch-up and our commit: replay in seq order.
            self._catch_up()
            return
        stored = {"type": kind, "payload": json.loads(json.dumps(payload)),
                  "partition": partition, "seq": result.first_seq}
        self._record(stored, state=new_state)

    def get_state(self, until_event_index: int | None = None) -> dict[str, Any]:
        """State after the first `until_event_index` events (clamped), a private copy."""
        self._ensure_loaded()
        if until_event_index is None:
            self._catch_up()
        total = len(self._events)
        target = total if until_event_index is None else max(0, min(until_event_index, total))
        if target == total:
            return copy.deepcopy(self._state)
        start = self._checkpoint_indexes[bisect_right(self._checkpoint_indexes, target) - 1]
        state = self._checkpoints[start]
        for event in self._events[start:target]:
            state = _apply(state, event["type"], event["payload"])
        return copy.deepcopy(state)

    def get_events(self, partition: str | None = None) -> list[dict[str, Any]]:
        """Events in `seq` order as dicts `{type, payload, partition, seq}`."""
        frame = self.lake.events(partition).collect()
        return [
            {"type": kind, "payload": json.loads(payload), "partition": part, "seq": seq}
            for kind, payload, part, seq in zip(
                frame.get_column("type").to_list(), frame.get_column("payload").to_list(),
                frame.get_column("partition_id").to_list(), frame.get_column("seq").to_list(),
                strict=True)
        ]

    def get_partition_state(self, partition: str) -> dict[str, Any]:
        """The document state of one partition, from the materialized document view."""
        state = self.lake.state(partition, view="document")
        if not isinstance(state, dict):
            raise EventlakeError(f"document state of {partition!r} is not an object")
        return state

    # -- internals -----------------------------------------------------------------------

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
        """Fold in events appended to the log since we last looked."""
        if self.lake.last_seq() <= self._last_seq:
            return
        frame = self.lake.events(since_seq=self._last_seq).collect()
        for kind, payload, partition, seq in zip(
            frame.get_column("type").to_list(), frame.get_column("payload").to_list(),
            frame.get_column("partition_id").to_list(), frame.get_column("seq").to_list(),
            strict=True,
        ):
            self._record({"type": kind, "payload": json.loads(payload),
                          "partition": partition, "seq": seq})

    def _record(self, event: dict[str, Any], *, state: dict[str, Any] | None = None) -> None:
        if state is None:
            state = _apply(self._state, event["type"], event["payload"])
        self._events.append(event)
        self._state = state
        self._last_seq = event["seq"]
        index = len(self._events)
        if index % self.checkpoint_interval == 0:
            self._checkpoints[index] = state
            self._checkpoint_indexes.append(index)
