"""Freshness: how far behind the event log each view is, since when, and whether its refresh
is failing. What a scheduler's health check, a dashboard or an on-call engineer asks.

Per view: the watermark against the log's last `seq` (the lag in events: `seq` is gap-free,
so the difference is the number of events the view has not folded), how old its oldest
unfolded events are in event time (`ts`) and in ingest time (`ingested_at`: how long the view
has been behind), the partitions holding the oldest unfolded events, and its last refresh
(when, how long, how many events) and last error, from the refresh record every refresh leaves
(`store.refreshrecords`).

The cost stays flat however far behind a view is and however old the lake: only the first
`window` unfolded events (a seq range, pruned to the files holding it) are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from eventlake.engine.materialize import read_events
from eventlake.errors import InvalidArgumentError
from eventlake.store.refreshrecords import read_refresh_record
from eventlake.store.viewstore import ViewStore

if TYPE_CHECKING:
    from eventlake.model.views import View
    from eventlake.store.parts import LakeParts

__all__ = ["DEFAULT_WINDOW", "Freshness", "LaggingPartition", "ViewFreshness", "freshness"]

# How many of the oldest unfolded events are read: enough to name the lagging partitions.
DEFAULT_WINDOW = 10_000


@dataclass(frozen=True)
class LaggingPartition:
    """A partition with unfolded events, among the oldest: its first unfolded `seq`, how many
    of its events are in the window read, and the oldest event and ingest time among them."""

    partition: str
    first_unfolded_seq: int
    unfolded_in_window: int
    oldest_event_time: datetime
    oldest_ingest_time: datetime

    def to_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "first_unfolded_seq": self.first_unfolded_seq,
                "unfolded_in_window": self.unfolded_in_window,
                "oldest_event_time": self.oldest_event_time.isoformat(),
                "oldest_ingest_time": self.oldest_ingest_time.isoformat()}


@dataclass(frozen=True)
class ViewFreshness:
    """One view's freshness (see the module docstring). Times are UTC; the lags in seconds
    are None when the view is current."""

    view: str
    version: int
    watermark: int
    last_seq: int
    lag_events: int
    oldest_unfolded_event_time: datetime | None
    oldest_unfolded_ingest_time: datetime | None
    event_time_lag_seconds: float | None
    ingest_time_lag_seconds: float | None
    last_refresh_at: datetime | None
    last_refresh_seconds: float | None
    last_refresh_events: int | None
    last_error_at: datetime | None
    last_error: str | None
    failing: bool
    lagging_partitions: tuple[LaggingPartition, ...] = ()

    @property
    def current(self) -> bool:
        return self.lag_events == 0

    def to_json(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {"view": self.view, "version": self.version, "watermark": self.watermark,
                "last_seq": self.last_seq, "lag_events": self.lag_events,
                "oldest_unfolded_event_time": moment(self.oldest_unfolded_event_time),
                "oldest_unfolded_ingest_time": moment(self.oldest_unfolded_ingest_time),
                "event_time_lag_seconds": self.event_time_lag_seconds,
                "ingest_time_lag_seconds": self.ingest_time_lag_seconds,
                "last_refresh_at": moment(self.last_refresh_at),
                "last_refresh_seconds": self.last_refresh_seconds,
                "last_refresh_events": self.last_refresh_events,
                "last_error_at": moment(self.last_error_at), "last_error": self.last_error,
                "failing": self.failing,
                "lagging_partitions": [p.to_json() for p in self.lagging_partitions]}


@dataclass(frozen=True)
class Freshness:
    """Every view's freshness at `checked_at`, against the log's `last_seq`."""

    checked_at: datetime
    last_seq: int
    views: tuple[ViewFreshness, ...]

    @property
    def max_lag_events(self) -> int:
        return max((v.lag_events for v in self.views), default=0)

    def lagging(self, over: int = 0) -> list[ViewFreshness]:
        """The views more than `over` events behind."""
        return [v for v in self.views if v.lag_events > over]

    def to_json(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at.isoformat(), "last_seq": self.last_seq,
                "max_lag_events": self.max_lag_events,
                "views": [v.to_json() for v in self.views]}

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4) of these figures."""
        metrics: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
            ("eventlake_log_last_seq", "gauge", "The event log's last seq.",
             [({}, float(self.last_seq))]),
            ("eventlake_view_watermark", "gauge", "The last seq folded into the view.",
             [(_labels(v), float(v.watermark)) for v in self.views]),
            ("eventlake_view_lag_events", "gauge", "Events in the log the view has not folded.",
             [(_labels(v), float(v.lag_events)) for v in self.views]),
            ("eventlake_view_ingest_time_lag_seconds", "gauge",
             "Seconds since the oldest unfolded event was ingested (0 when current).",
             [(_labels(v), v.ingest_time_lag_seconds or 0.0) for v in self.views]),
            ("eventlake_view_event_time_lag_seconds", "gauge",
             "Seconds since the event time of the oldest unfolded event (0 when current).",
             [(_labels(v), v.event_time_lag_seconds or 0.0) for v in self.views]),
            ("eventlake_view_last_refresh_timestamp_seconds", "gauge",
             "Unix time the view's last successful refresh ended.",
             [(_labels(v), v.last_refresh_at.timestamp()) for v in self.views
              if v.last_refresh_at is not None]),
            ("eventlake_view_last_refresh_duration_seconds", "gauge",
             "How long the view's last successful refresh took.",
             [(_labels(v), v.last_refresh_seconds) for v in self.views
              if v.last_refresh_seconds is not None]),
            ("eventlake_view_refresh_failing", "gauge",
             "1 when the view's most recent refresh failed.",
             [(_labels(v), 1.0 if v.failing else 0.0) for v in self.views]),
        ]
        lines: list[str] = []
        for name, kind, text, samples in metrics:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(f"{name}{{{shown}}} {value!r}" if shown else f"{name} {value!r}")
        return "\n".join(lines) + "\n"


def _labels(view: ViewFreshness) -> dict[str, str]:
    return {"view": view.view, "version": str(view.version)}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def freshness(lake: LakeParts, views: Sequence[View] | None = None, *,
              now: datetime | None = None, partitions: int = 5,
              window: int = DEFAULT_WINDOW) -> Freshness:
    """The freshness of `views` (default: every registered view) at `now` (default: the
    current time), naming up to `partitions` partitions with the oldest unfolded events,
    found among the first `window` unfolded events."""
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 0:
        raise InvalidArgumentError("partitions", partitions, "a whole number, 0 or more")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InvalidArgumentError("window", window, "a whole number, at least 1")
    checked = now or datetime.now(UTC)
    log = lake.log.snapshot()
    head = lake.log.last_seq(log)
    unfolded: dict[int, pl.DataFrame] = {}  # views at one watermark share one read
    found: list[ViewFreshness] = []
    for view in (list(lake.views.values()) if views is None else views):
        watermark = ViewStore(lake.storage, view).watermark()
        record = read_refresh_record(lake.storage, view.name)
        if record is not None and record.version != view.version:
            record = None
        oldest_event = oldest_ingest = None
        lagging: tuple[LaggingPartition, ...] = ()
        if head > watermark:
            if watermark not in unfolded:
                unfolded[watermark] = read_events(
                    lake, since_seq=watermark, until_seq=min(head, watermark + window),
                    columns=["seq", "partition_id", "ts", "ingested_at"], snapshot=log)
            events = unfolded[watermark]
            if events.height:
                oldest_event = events.get_column("ts").min()
                oldest_ingest = events.get_column("ingested_at").min()
                lagging = _lagging_partitions(events, partitions)
        found.append(ViewFreshness(
            view=view.name, version=view.version, watermark=watermark, last_seq=head,
            lag_events=max(0, head - watermark),
            oldest_unfolded_event_time=_utc(oldest_event),
            oldest_unfolded_ingest_time=_utc(oldest_ingest),
            event_time_lag_seconds=_since(checked, oldest_event),
            ingest_time_lag_seconds=_since(checked, oldest_ingest),
            last_refresh_at=None if record is None else record.finished_at,
            last_refresh_seconds=None if record is None else record.seconds,
            last_refresh_events=None if record is None else record.events,
            last_error_at=None if record is None else record.error_at,
            last_error=None if record is None else record.error,
            failing=False if record is None else record.failing,
            lagging_partitions=lagging))
    return Freshness(checked, head, tuple(found))


def _lagging_partitions(events: pl.DataFrame, limit: int) -> tuple[LaggingPartition, ...]:
    if not limit:
        return ()
    rows = (events.group_by("partition_id")
            .agg(pl.col("seq").min().alias("first"), pl.len().alias("count"),
                 pl.col("ts").min().alias("ts"), pl.col("ingested_at").min().alias("ingested"))
            .sort("first").head(limit))
    return tuple(LaggingPartition(row["partition_id"], row["first"], row["count"],
                                  _as_utc(row["ts"]), _as_utc(row["ingested"]))
                 for row in rows.iter_rows(named=True))


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _utc(value: object) -> datetime | None:
    return _as_utc(value) if isinstance(value, datetime) else None


def _since(now: datetime, value: object) -> float | None:
    moment = _utc(value)
    return None if moment is None else max(0.0, (now - moment).total_seconds())
