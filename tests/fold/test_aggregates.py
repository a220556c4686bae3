"""Aggregate views: typed columns, exact integers, and values a dtype refuses."""

from __future__ import annotations

import json
import tempfile
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.fold.folds import rows_for
from eventlake.model.views import Agg, AggregateView
from eventlake.ops.verify import verify_view

INT64_MAX = 2**63 - 1

AMOUNTS = AggregateView(
    name="amounts", version=1, group_by=["currency"],
    aggregates={"n": "count", "total": Agg("sum", "amount"), "lo": Agg("min", "amount"),
                "hi": Agg("max", "amount"), "mean": Agg("avg", "amount", dtype="int64"),
                "first_amount": Agg("first", "amount", dtype="int64"),
                "last_amount": Agg("last", "amount", dtype="int64")})
HUGE = AggregateView(name="huge", version=1,
                     aggregates={"total": Agg("sum", "amount", dtype="decimal"),
                                 "hi": Agg("max", "amount", dtype="decimal")})


def _python_rows(events: list[dict]) -> dict[tuple[str, str | None], dict]:
    """AMOUNTS computed with Python ints, per (partition, currency)."""
    rows: dict[tuple[str, str | None], dict] = {}
    for event in events:
        amount = event["payload"]["amount"]
        key = (event["partition"], event["payload"].get("currency"))
        row = rows.setdefault(key, {"amounts": []})
        row["amounts"].append(amount)
    out = {}
    for key, row in rows.items():
        amounts = row["amounts"]
        out[key] = {"n": len(amounts), "total": sum(amounts), "lo": min(amounts),
                    "hi": max(amounts), "first_amount": amounts[0],
                    "last_amount": amounts[-1],
                    # The exact mean, rounded once (an int64 avg keeps its sum exact).
                    "mean": pytest.approx(sum(amounts) / len(amounts), rel=1e-15, abs=0)}
    return out


big_ints = st.one_of(st.integers(-(2**62), 2**62), st.integers(-1000, 1000),
                     st.sampled_from([2**53 + 1, 2**62 - 1, -(2**62) + 3, 2**60 + 7]))


@st.composite
def amount_batches(draw):
    """Batches of deposits whose integer sums stay inside Int64 but pass 2**53."""
    # Two odd amounts whose sum passes 2**53, where a float64 sum would round.
    batches = [[{"type": "deposit", "payload": {"amount": 2**53 - 1, "currency": "EUR"},
                 "partition": "p0"}] * 2]
    totals: dict[tuple[str, str | None], int] = {("p0", "EUR"): 2**54 - 2}
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(1, 12))):
            partition = draw(st.sampled_from(["p0", "p1", "p2"]))
            currency = draw(st.sampled_from(["EUR", "USD", None]))
            amount = draw(big_ints)
            key = (partition, currency)
            # Keep every running sum inside Int64 (an overflow is tested on its own).
            if not -INT64_MAX <= totals.get(key, 0) + amount <= INT64_MAX:
                amount = -amount
            totals[key] = totals.get(key, 0) + amount
            payload = {"amount": amount} | ({} if currency is None else {"currency": currency})
            batch.append({"type": "deposit", "payload": payload, "partition": partition})
        batches.append(batch)
    return batches


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=amount_batches(), chunk=st.sampled_from([None, 5]))
def test_integer_aggregates_are_exact_in_scan_sql_and_state(batches, chunk):
    lake = el.Lake.open(Path(tempfile.mkdtemp()) / "lake", views=[AMOUNTS])
    events: list[dict] = []
    for batch in batches:
        lake.append(batch)
        events += batch
        lake.materialize(chunk_events=chunk)
    want = _python_rows(events)
    scanned = lake.scan("amounts").collect()
    assert scanned.schema["total"] == pl.Int64 and scanned.schema["mean"] == pl.Float64
    got = {(r["partition_id"], r["currency"]): r for r in scanned.iter_rows(named=True)}
    assert set(got) == set(want)
    for key, row in want.items():
        assert {k: got[key][k] for k in row} == row, key
    query = ("select partition_id, currency, n, total, lo, hi, first_amount, last_amount, "
             "mean from amounts")
    for partition, currency, *values in lake.sql(query).fetchall():
        assert dict(zip(["n", "total", "lo", "hi", "first_amount", "last_amount", "mean"],
                        values, strict=True)) == want[(partition, currency)]
    for partition in {p for p, _ in want}:
        state = lake.state(partition, view="amounts")
        assert {r["currency"]: r["total"] for r in state} == {
            c: row["total"] for (p, c), row in want.items() if p == partition}
    assert any(abs(row["total"]) > 2**53 for row in want.values())
    assert verify_view(lake, AMOUNTS).ok


def test_decimal_sums_beyond_int64_are_exact(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[HUGE, AMOUNTS])
    amounts = [2**62, 2**62, 2**62, 2**80 + 1, -(2**70), 10**30 + 3]
    lake.append([{"type": "d", "payload": {"amount": a}, "partition": "p"} for a in amounts[:3]])
    lake.materialize()
    lake.append([{"type": "d", "payload": {"amount": a}, "partition": "p"} for a in amounts[3:]])
    # Exact before the refresh folds them (a lagging read) and after.
    assert lake.state("p", view="huge")[0]["total"] == sum(amounts)
    lake.materialize(chunk_events=2)
    row = lake.scan("huge").collect().row(0, named=True)
    assert row["total"] == Decimal(sum(amounts)) and row["hi"] == Decimal(10**30 + 3)
    assert lake.sql("select total::varchar from huge").fetchall() == [(str(sum(amounts)),)]
    assert lake.state("p", view="huge") == [{"total": Decimal(sum(amounts)),
                                             "hi": Decimal(10**30 + 3), "last_seq": 6,
                                             "event_count": 6}]
    # The Int64 view of the same events fails at the event whose running sum overflows.
    [failure] = lake.failed_partitions("amounts")
    assert (failure.partition, failure.seq) == ("p", 2)  # 2**62 + 2**62 > INT64_MAX
    assert "aggregate 'total'" in failure.error and "payload.amount" in failure.error
    assert "Int64" in failure.error and "dtype='decimal'" in failure.error
    assert verify_view(lake, HUGE).ok and verify_view(lake, AMOUNTS).ok


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_an_overflow_fails_the_partition_at_the_same_event_however_it_is_chunked(
        tmp_path, chunk):
    view = AggregateView(name="sums", version=1, aggregates={"total": Agg("sum", "v")})
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    # The running sum passes INT64_MAX at seq 3 and would come back under it at seq 4:
    # the partition fails at 3 whether the refresh sees 3 and 4 together or apart.
    values = [2**62, 2**62 - 1, 5, -10, 1]
    lake.append([{"type": "t", "payload": {"v": v}, "partition": "p"} for v in values])
    lake.append([{"type": "t", "payload": {"v": 7}, "partition": "q"}])
    lake.materialize(chunk_events=chunk)
    rows = {r["partition_id"]: r for r in lake.scan("sums").collect().iter_rows(named=True)}
    assert rows["p"]["total"] == 2**63 - 1  # the last good state
    assert (rows["p"]["last_seq"], rows["p"]["event_count"]) == (2, 2)
    assert json.loads(rows["p"]["failure"])["seq"] == 3
    assert rows["q"]["total"] == 7 and rows["q"]["failure"] is None
    with pytest.raises(el.PartitionFailedError, match="seq 3"):
        lake.state("p", view="sums")
    assert lake.state("p", view="sums", as_of_seq=2)[0]["total"] == 2**63 - 1
    assert verify_view(lake, view).ok
    want = rows_for(view, lake.events().collect())
    assert want.filter(pl.col("partition_id") == "p")["failure"][0] == rows["p"]["failure"]


def test_json_strings_never_count_and_integral_numbers_count_exactly(tmp_path):
    view = AggregateView(name="v", version=1, aggregates={
        "n": "count", "with_x": Agg("count", "x"), "total": Agg("sum", "x"),
        "fl": Agg("sum", "x", dtype="float64"), "first_x": Agg("first", "x"),
        "last_x": Agg("last", "x")})
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    payloads = ['{"x": "12"}', '{"x": 5.0}', '{"x": 1e3}', '{"x": true}', '{"x": null}',
                '{"y": 1}', '{"x": {"a": 1}}', '{"x": 7}', '{"x": 1234567890123456789.0}',
                '{"x": "last"}']
    lake.append(pl.DataFrame({"type": ["t"] * len(payloads), "partition": ["p"] * len(payloads),
                              "payload": payloads}))
    lake.materialize()
    row = lake.scan("v").collect().row(0, named=True)
    assert row["failure"] is None, row["failure"]
    # "12" is a string, true a boolean, null absent: only 5.0, 1e3, 7 and the long one
    # count, the long one exactly (as a float64 it would be 1234567890123456768).
    assert row["total"] == 5 + 1000 + 7 + 1234567890123456789
    assert row["fl"] == pytest.approx(5.0 + 1000 + 7 + 1234567890123456789.0)
    assert (row["n"], row["with_x"]) == (10, 8)
    assert (row["first_x"], row["last_x"]) == ("12", "last")


def test_an_integer_literal_written_as_a_float_counts_exactly(tmp_path):
    view = AggregateView(name="v", version=1, aggregates={"total": Agg("sum", "x")})
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    # A float64 reads 4611686018427387905.0 as 4611686018427387904: the exact path does not.
    payloads = ['{"x": 4611686018427387905.0}', '{"x": 1.5e1}', '{"x": -0.0}']
    lake.append(pl.DataFrame({"type": ["t"] * 3, "partition": ["p"] * 3,
                              "payload": payloads}))
    lake.materialize()
    assert lake.scan("v").collect()["total"].to_list() == [4611686018427387905 + 15]


def test_a_fraction_in_an_integer_aggregate_fails_only_its_partition(tmp_path):
    view = AggregateView(name="v", version=1, group_by=["type"],
                         aggregates={"n": "count", "total": Agg("sum", "x")})
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    lake.append([{"type": "a", "payload": {"x": 1}, "partition": "p"},
                 {"type": "b", "payload": {"x": 2.5}, "partition": "p"},
                 {"type": "a", "payload": {"x": 3}, "partition": "p"},
                 {"type": "a", "payload": {"x": 2.5}, "partition": "first"},
                 {"type": "a", "payload": {"x": 4}, "partition": "ok"},
                 {"type": "b", "payload": {"x": 0.5}, "partition": "lonely"},
                 {"type": "a", "payload": {"x": 6}, "partition": "lonely"}])
    result = lake.materialize()["v"]
    assert result.failed == ("first", "lonely", "p")
    failures = {f.partition: f for f in lake.failed_partitions("v")}
    assert (failures["p"].seq, failures["p"].event_type, failures["p"].last_seq) == (2, "b", 1)
    assert "2.5 is not an integer" in failures["p"].error
    assert "Agg('sum', 'x', dtype='float64')" in failures["p"].error
    rows = lake.scan("v").collect().sort("partition_id", "type")
    # p keeps its rows before seq 2; "first" failed at its first event: one marker row.
    assert rows.select("partition_id", "type", "n", "total").rows() == [
        ("first", None, None, None), ("lonely", None, None, None), ("ok", "a", 1, 4),
        ("p", "a", 1, 1)]
    assert rows.filter(pl.col("partition_id") == "ok")["failure"][0] is None
    with pytest.raises(el.PartitionFailedError, match=r"2\.5 is not an integer"):
        lake.state("first", view="v")
    assert verify_view(lake, view).ok
    # More events do not move a failed partition; a retry meets the same value again.
    lake.append([{"type": "a", "payload": {"x": 1}, "partition": "p"}])
    lake.materialize(retry_failed=True)
    assert {f.partition: f.seq for f in lake.failed_partitions("v")} == {
        "first": 4, "lonely": 6, "p": 2}
    # Leaving type b out (same version, accepted) and retrying: p and lonely fold on past
    # their b events; lonely's marker row gives way to its real row; first still fails.
    only_a = AggregateView(name="v", version=1, group_by=["type"], where=["a"],
                           aggregates={"n": "count", "total": Agg("sum", "x")})
    narrowed = el.Lake.open(tmp_path / "lake", views=[only_a])
    result = narrowed.materialize(retry_failed=True, accept_changed_definition=True)["v"]
    assert (result.recovered, result.failed) == (("lonely", "p"), ("first",))
    rows = narrowed.scan("v").collect().sort("partition_id", "type")
    assert rows.select("partition_id", "type", "n", "total", "event_count").rows() == [
        ("first", None, None, None, 0), ("lonely", "a", 1, 6, 1), ("ok", "a", 1, 4, 1),
        ("p", "a", 3, 5, 3)]
    assert verify_view(narrowed, only_a).ok
    # Declaring the field a float is a new definition: a version bump rebuilds the view,
    # resetting the column's type.
    fixed = AggregateView(name="v", version=2, group_by=["type"],
                          aggregates={"n": "count", "total": Agg("sum", "x", dtype="float64")})
    lake = el.Lake.open(tmp_path / "lake", views=[fixed])
    assert lake.materialize()["v"].rebuilt
    assert lake.failed_partitions("v") == []
    rows = lake.scan("v").collect().sort("partition_id", "type")
    assert rows.schema["total"] == pl.Float64
    assert rows.filter(pl.col("partition_id") == "p").select("type", "total").rows() == [
        ("a", 5.0), ("b", 2.5)]
    assert verify_view(lake, fixed).ok


def test_aggregate_dtypes_are_checked():
    assert Agg("sum", "x").dtype == "int64" and Agg("avg", "x").dtype == "float64"
    assert Agg("first", "x").dtype == "string" and Agg("count").dtype == "int64"
    assert Agg("sum", "x") == Agg("sum", "x", dtype="int64")
    for fn, dtype in [("avg", "string"), ("sum", "string"), ("count", "float64"),
                      ("max", "money")]:
        with pytest.raises(el.ViewDefinitionError, match="dtype"):
            Agg(fn, "x", dtype=dtype)
    view = AggregateView(name="v", version=1, aggregates={"t": ("sum", "x", "decimal")})
    assert view.aggs["t"] == Agg("sum", "x", dtype="decimal")


def test_extraction_keeps_every_digit_and_row_order():
    from eventlake.fold.aggregates import _extract

    values = [2**64 + 1, -(2**63) - 1, 12, 10**37]
    payloads = pl.Series([json.dumps({"a": {"b": v}, "s": str(v)}) for v in values] * 50)
    found = _extract(payloads, ["a.b", "s"], ["s"])
    assert found["j:a.b"].to_list() == [str(v) for v in values] * 50
    assert found["j:s"].to_list() == [json.dumps(str(v)) for v in values] * 50
    assert found["t:s"].to_list() == [str(v) for v in values] * 50


def test_an_int64_avg_refreshed_batch_by_batch_equals_its_rebuild_exactly(tmp_path):
    # Large values of both signs: a float64 running sum would cancel to a different mean
    # depending on how the events were split into refreshes.
    view = AggregateView(name="means", version=1,
                         aggregates={"mean": Agg("avg", "amount", dtype="int64")})
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    amounts = [2**62 - 1, -257, -(2**62) + 3, 7, 2**53 + 1]
    for amount in amounts:
        lake.append([{"type": "deposit", "payload": {"amount": amount}, "partition": "p"}])
        lake.materialize(["means"])
    [incremental] = lake.state("p", view="means")
    lake.materialize(["means"], rebuild=True)
    [rebuilt] = lake.state("p", view="means")
    assert incremental["mean"] == rebuilt["mean"] == sum(amounts) / len(amounts)
    assert verify_view(lake, view).ok
