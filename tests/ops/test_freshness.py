"""Freshness (eventlake/ops/freshness.py): lag, since when, which partitions, the last refresh.

Every figure is checked against the events themselves: the lag against the log's last seq,
the oldest unfolded times and the lagging partitions against a plain Polars reading of every
event above the watermark.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.cli import EXIT_OK, EXIT_USAGE, main
from eventlake.cli.status_commands import EXIT_LAGGING
from eventlake.model.views import AggregateView, ReducerView
from eventlake.store.refreshrecords import read_refresh_record

START = datetime(2025, 1, 1, tzinfo=UTC)

COUNTS = ReducerView(name="counts", version=1, initial_state=lambda: {"n": 0},
                     reduce=lambda state, event: {"n": state["n"] + 1})
BY_TYPE = AggregateView(name="by_type", version=1, group_by=["type"], aggregates={"n": "count"})


@pytest.fixture(autouse=True)
def _outside_the_repository(tmp_path, monkeypatch):
    # The CLI would take the repository's pyproject.toml views; these lakes have their own.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)


def _events(partitions: list[str], first_minute: int) -> list[dict]:
    return [{"type": "tick", "partition": p, "payload": {"i": i},
             "ts": START + timedelta(minutes=first_minute + i)}
            for i, p in enumerate(partitions)]


def _expected(lake: el.Lake, watermark: int, window: int, limit: int) -> dict:
    """The freshness figures of a view at `watermark`, from every event above it."""
    unfolded = lake.events(since_seq=watermark).collect()
    head = lake.last_seq()
    seen = unfolded.filter(pl.col("seq") <= watermark + window)
    lagging = (seen.group_by("partition_id")
               .agg(pl.col("seq").min().alias("first"), pl.len().alias("count"))
               .sort("first").head(limit))
    return {"lag": head - watermark,
            "oldest_ts": seen["ts"].min() if seen.height else None,
            "oldest_ingest": seen["ingested_at"].min() if seen.height else None,
            "lagging": [(r["partition_id"], r["first"], r["count"])
                        for r in lagging.iter_rows(named=True)]}


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]),
                                        min_size=1, max_size=6),
                               st.booleans()), min_size=1, max_size=5),
       window=st.integers(1, 8), limit=st.integers(0, 4))
def test_freshness_matches_the_events_above_the_watermark(tmp_path_factory, plan, window,
                                                          limit):
    lake = el.Lake.open(tmp_path_factory.mktemp("lake") / "lake", views=[COUNTS, BY_TYPE])
    minute = 0
    watermark = 0
    for number, (partitions, refresh) in enumerate(plan):
        lake.append(_events(partitions, minute), producer="t", batch_no=number)
        minute += len(partitions)
        if refresh:
            lake.materialize(["counts"])
            watermark = lake.last_seq()
    now = datetime.now(UTC)
    from eventlake.ops.freshness import freshness

    report = freshness(lake, [COUNTS, BY_TYPE], now=now, partitions=limit, window=window)
    assert report.last_seq == lake.last_seq()
    by_name = {v.view: v for v in report.views}
    for name, mark in (("counts", watermark), ("by_type", 0)):
        got, want = by_name[name], _expected(lake, mark, window, limit)
        assert got.watermark == mark
        assert got.lag_events == want["lag"]
        assert got.current == (want["lag"] == 0)
        assert got.oldest_unfolded_event_time == want["oldest_ts"]
        assert got.oldest_unfolded_ingest_time == want["oldest_ingest"]
        if want["oldest_ts"] is None:
            assert got.event_time_lag_seconds is None and got.ingest_time_lag_seconds is None
        else:
            assert got.event_time_lag_seconds == (now - want["oldest_ts"]).total_seconds()
            assert got.ingest_time_lag_seconds == (now - want["oldest_ingest"]).total_seconds()
        assert [(p.partition, p.first_unfolded_seq, p.unfolded_in_window)
                for p in got.lagging_partitions] == want["lagging"]
    assert report.max_lag_events == max(by_name["counts"].lag_events, by_name["by_type"].lag_events)


def test_the_last_refresh_and_the_last_error_are_recorded(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    assert lake.freshness(["counts"]).views[0].last_refresh_at is None
    lake.append(_events(["a", "b"], 0), producer="t", batch_no=1)
    before = datetime.now(UTC)
    [result] = lake.materialize(["counts"]).values()
    after = datetime.now(UTC)
    view = lake.freshness(["counts"]).views[0]
    assert view.last_refresh_at is not None and before <= view.last_refresh_at <= after
    assert view.last_refresh_seconds == result.seconds
    assert view.last_refresh_events == 2
    assert (view.last_error, view.failing) == (None, False)

    # The same name and version with another reducer: refused, nothing committed, recorded.
    changed = ReducerView(name="counts", version=1, initial_state=lambda: {"n": 0},
                          reduce=lambda state, event: {"n": state["n"] + 2})
    lake2 = el.Lake.open(tmp_path / "lake", views=[changed])
    lake2.append(_events(["c"], 5), producer="t", batch_no=2)
    with pytest.raises(el.MaterializeError):
        lake2.materialize(["counts"])
    view = lake2.freshness(["counts"]).views[0]
    assert view.failing and "ViewChangedError" in (view.last_error or "")
    assert view.last_refresh_at is not None  # the last success stays
    assert view.lag_events == 1

    lake.materialize(["counts"])  # the original definition refreshes again
    record = read_refresh_record(lake.storage, "counts")
    assert record is not None and not record.failing
    assert "ViewChangedError" in (record.error or "")  # the last failure is kept
    assert lake.freshness(["counts"]).views[0].current


def test_a_record_of_another_view_version_is_not_reported(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[COUNTS])
    lake.append(_events(["a"], 0), producer="t", batch_no=1)
    lake.materialize(["counts"])
    bumped = ReducerView(name="counts", version=2, initial_state=lambda: {"n": 0},
                         reduce=lambda state, event: {"n": state["n"] + 1})
    view = el.Lake.open(tmp_path / "lake", views=[bumped]).freshness(["counts"]).views[0]
    assert (view.version, view.watermark, view.lag_events) == (2, 0, 1)
    assert view.last_refresh_at is None


def test_status_fails_on_a_lagging_lake_and_passes_after_materialize(tmp_path, capsys):
    root = str(tmp_path / "lake")
    lake = el.Lake.open(root)
    lake.append(_events(["a", "b", "a"], 0), producer="t", batch_no=1)
    assert main(["--lake", root, "status", "--fail-if-lag-over", "0"]) == EXIT_LAGGING
    out, err = capsys.readouterr()
    assert "document v" in out and "3 events behind" in out
    assert "oldest lagging partitions: a (from seq 1), b (from seq 2)" in out
    assert err.strip() == "lagging: document more than 0 events behind"
    assert main(["--lake", root, "status", "--fail-if-lag-over", "3"]) == EXIT_OK
    assert main(["--lake", root, "materialize"]) == EXIT_OK
    capsys.readouterr()
    assert main(["--lake", root, "status", "--fail-if-lag-over", "0"]) == EXIT_OK
    out, _ = capsys.readouterr()
    assert "watermark 3, current" in out and "last refresh: 20" in out


def test_status_as_json_is_the_library_report(tmp_path, capsys):
    root = str(tmp_path / "lake")
    lake = el.Lake.open(root)
    lake.append(_events(["a", "b"], 0), producer="t", batch_no=1)
    assert main(["--lake", root, "--json", "status"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    want = lake.freshness().to_json()
    shown.pop("checked_at"), want.pop("checked_at")
    for got_view, want_view in zip(shown["views"], want["views"], strict=True):
        for key in ("event_time_lag_seconds", "ingest_time_lag_seconds"):
            assert got_view.pop(key) >= want_view.pop(key) - 60
    assert shown == want
    assert shown["views"][0]["lag_events"] == 2


_SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def test_status_in_the_prometheus_text_format(tmp_path, capsys):
    root = str(tmp_path / "lake")
    lake = el.Lake.open(root, views=[COUNTS])
    lake.append(_events(["a", "b"], 0), producer="t", batch_no=1)
    lake.materialize(["counts"])
    lake.append(_events(["c"], 9), producer="t", batch_no=2)
    assert main(["--lake", root, "status", "--format", "prometheus"]) == EXIT_OK
    text = capsys.readouterr().out
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ ", line), line
            continue
        match = _SAMPLE.match(line)
        assert match, line
        samples[(match[1], match[2] or "")] = float(match[3])
    # The CLI opened the lake without the `counts` view: only document is reported.
    assert samples[("eventlake_log_last_seq", "")] == 3
    assert samples[("eventlake_view_lag_events", 'view="document",version="3"')] == 3
    assert main(["--lake", root, "--views", "nope.views", "status"]) != EXIT_OK
    capsys.readouterr()
    report = lake.freshness()
    assert 'eventlake_view_lag_events{view="counts",version="1"} 1.0' in report.prometheus()
    assert 'eventlake_view_refresh_failing{view="counts",version="1"} 0.0' in report.prometheus()


def test_bad_arguments_are_refused(tmp_path, capsys):
    lake = el.Lake.open(tmp_path / "lake")
    with pytest.raises(el.InvalidArgumentError, match="partitions must be"):
        lake.freshness(partitions=-1)
    with pytest.raises(el.UnknownViewError):
        lake.freshness(["nope"])
    assert main(["--lake", str(tmp_path / "lake"), "status", "--partitions", "-1"]) == EXIT_USAGE
    assert main(["--lake", str(tmp_path / "lake"), "status", "nope"]) != EXIT_OK
    err = capsys.readouterr().err
    assert "Traceback" not in err
