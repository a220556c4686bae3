"""The record of each view's last refresh: when it ran, how long it took, how it ended.

A view table's own log says what a refresh committed, but not a refresh that found nothing to
fold, nor one that failed: both commit nothing. Freshness ("which views are behind, since when,
and is their refresh failing?") needs all three, so every refresh leaves one small record per
view under `<root>/status/views/` (`store.statusfiles`: written whole, so a reader never sees
half of one). A record is status, not data: losing one loses no event and no row, and the
next refresh writes it again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from eventlake.store.statusfiles import read_status, write_status
from eventlake.store.storage import Storage

__all__ = ["RefreshRecord", "read_refresh_record", "write_refresh_record"]

# Under the lake's status folder (`store.statusfiles`): one record per view name.
FOLDER = ("views",)


@dataclass(frozen=True)
class RefreshRecord:
    """One view's refresh history in brief.

    `finished_at`/`seconds`/`watermark` are those of the last refresh that ended well;
    `error_at`/`error` those of the last one that failed (kept after later successes, so a
    flapping view shows its last failure); `failing` says whether the most recent run failed.
    """

    view: str
    version: int
    finished_at: datetime | None = None
    seconds: float | None = None
    watermark: int | None = None
    events: int | None = None
    error_at: datetime | None = None
    error: str | None = None
    failing: bool = False

    def succeeded(self, *, at: datetime, seconds: float, watermark: int, events: int
                  ) -> RefreshRecord:
        return replace(self, finished_at=at, seconds=seconds, watermark=watermark,
                       events=events, failing=False)

    def failed(self, *, at: datetime, error: str) -> RefreshRecord:
        return replace(self, error_at=at, error=error, failing=True)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("finished_at", "error_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RefreshRecord:
        def moment(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(str(value))

        def number(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        seconds = data.get("seconds")
        error = data.get("error")
        return cls(view=str(data["view"]), version=int(data["version"]),
                   finished_at=moment("finished_at"),
                   seconds=None if seconds is None else float(seconds),
                   watermark=number("watermark"), events=number("events"),
                   error_at=moment("error_at"), error=None if error is None else str(error),
                   failing=bool(data.get("failing")))


def read_refresh_record(storage: Storage, view: str) -> RefreshRecord | None:
    """The last record of `view`'s refreshes, or None when there is none (never refreshed
    since records were kept) or it cannot be read (a record is status, never worth an error).
    """
    data = read_status(storage, FOLDER, view)
    try:
        return None if data is None else RefreshRecord.from_json(data)
    except (ValueError, TypeError, KeyError):
        return None


def write_refresh_record(storage: Storage, record: RefreshRecord) -> None:
    """Store `record` as the latest of its view, whole or not at all."""
    write_status(storage, FOLDER, record.view, record.to_json())
