"""Typed reducer views (`ReducerView(columns=...)`): exact, typed in SQL, strict on mismatch."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.engine.materialize import MaterializeError
from eventlake.fold.folds import rows_for
from eventlake.model import jsoncodec
from eventlake.ops.verify import verify_view
from eventlake.query.sql import duckdb_init_sql
from eventlake.store.viewstore import ViewStore, bucket_of
from eventlake.views import ReducerView

COLUMNS = {"balance": "int64", "transactions": "int64", "owner": "string",
           "tags": "list[string]", "meta": "json", "score": "float64", "open": "bool"}
INT64_MAX = 2**63 - 1


def _initial():
    return {"balance": 0, "transactions": 0, "owner": None, "tags": [], "meta": None,
            "score": 0.0, "open": True}


def _reduce(state, event):
    """Every kind of value, and every kind of misfit, from plain events.

    It copes with None where a value was (on_mismatch="null" stores None for a misfit)."""
    kind, payload = event["type"], event["payload"]
    state = dict(state)
    if kind == "deposit":
        state["balance"] = (state.get("balance") or 0) + payload["amount"]
        state["transactions"] = (state.get("transactions") or 0) + 1
    elif kind == "owner":
        state["owner"] = payload["value"]  # sometimes an int: a misfit
    elif kind == "tag":
        state["tags"] = [*(state.get("tags") or []), payload["value"]]
    elif kind == "meta":
        state["meta"] = {"seq": event["seq"], "value": payload["value"]}
    elif kind == "score":
        state["score"] = payload["value"]  # a float, or an int: a misfit
    elif kind == "close":
        state["open"] = False
    elif kind == "drop":
        state.pop("owner", None)  # a missing key
    elif kind == "extra":
        state["extra"] = 1  # a key not declared
    return state


TYPED_NULL = ReducerView(name="typed_null", version=1, initial_state=_initial,
                         reduce=_reduce, columns=COLUMNS, on_mismatch="null")
UNTYPED = ReducerView(name="untyped", version=1, initial_state=_initial, reduce=_reduce)


def _safe(state, event):
    """The same reducer on events that always fit."""
    if event["type"] in ("owner", "score", "drop", "extra") or (
            event["type"] == "deposit" and abs(event["payload"]["amount"]) > 2**40):
        return state
    return _reduce(state, event)


TYPED_ERROR = ReducerView(name="typed_error", version=1, initial_state=_initial,
                          reduce=_safe, columns=COLUMNS)
VIEWS = [TYPED_NULL, TYPED_ERROR, UNTYPED]


# -- an independent reference: the documented rules, written out plainly -------------------


def _fits(kind: str, value) -> bool:
    if value is None:
        return True
    if kind == "int64":
        return type(value) is int and -(2**63) <= value <= INT64_MAX
    if kind == "float64":
        return type(value) is float and math.isfinite(value)
    if kind == "bool":
        return type(value) is bool
    if kind == "string":
        return type(value) is str
    if kind == "json":
        return True
    assert kind.startswith("list[")
    return type(value) in (list, tuple) and all(_fits(kind[5:-1], v) for v in value)


def reference(view: ReducerView, events: list[dict], partition: str) -> tuple[dict, int]:
    """The state of `partition` and its count of nulled values: after every event the state
    is fitted to the columns (None for a misfit or missing key, extra keys dropped)."""
    declared = {name: kind.name for name, kind in view.column_types.items()}

    def fit(state):
        nulled = sum(1 for k in state if k not in declared)
        out = {}
        for name, kind in declared.items():
            ok = name in state and _fits(kind, state[name])
            nulled += not ok
            out[name] = state[name] if ok else None
        assert view.on_mismatch == "null" or nulled == 0, (partition, state)
        return out, nulled

    state, total = fit(view.initial_state())
    for event in events:
        if event["partition"] == partition:
            state, nulled = fit(view.reduce(state, event))
            total += nulled
    # Stored and read back: lists as lists, JSON values as their JSON.
    return jsoncodec.loads(jsoncodec.dumps(state)), total


def _decoded(lake: el.Lake) -> list[dict]:
    return [{**row, "partition": row["partition_id"], "payload": json.loads(row["payload"])}
            for row in lake.events().collect().iter_rows(named=True)]


def assert_typed_exact(lake: el.Lake, view: ReducerView) -> None:
    """The view table equals a from-scratch fold, row for row and cell for cell, and each
    row reads back as the reference state."""
    events = lake.events().collect()
    got = lake.scan(view.name).collect().drop("updated_at").sort("partition_id")
    want = rows_for(view, events).sort("partition_id")
    assert got.columns == want.columns
    assert got.to_dicts() == want.to_dicts()
    # Exact: `==` equates 1 and 1.0; the JSON comparison does not.
    for a, b in zip(got.to_dicts(), want.to_dicts(), strict=True):
        assert jsoncodec.first_difference(a, b) is None
    decoded = _decoded(lake)
    for row in got.iter_rows(named=True):
        state, nulled = reference(view, decoded, row["partition_id"])
        stored = {name: row[name] for name in COLUMNS}
        stored["meta"] = None if stored["meta"] is None else json.loads(stored["meta"])
        assert jsoncodec.first_difference(stored, state) is None, (row, state)
        if view.on_mismatch == "null":
            assert row["mismatches"] == nulled
    assert verify_view(lake, view).ok


# -- generated streams -----------------------------------------------------------------------


@st.composite
def events(draw, partitions):
    kind = draw(st.sampled_from(["deposit", "deposit", "owner", "tag", "meta", "score",
                                 "close", "drop", "extra", "noise"]))
    if kind == "deposit":
        payload = {"amount": draw(st.one_of(st.integers(-500, 500),
                                            st.sampled_from([2**62, -(2**62), 2**63])))}
    elif kind == "owner":
        payload = {"value": draw(st.one_of(st.text(max_size=4), st.integers(0, 3)))}
    elif kind == "tag":
        payload = {"value": draw(st.one_of(st.text(max_size=3), st.none()))}
    elif kind == "meta":
        payload = {"value": draw(st.recursive(
            st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=3),
            lambda inner: st.lists(inner, max_size=2)
            | st.dictionaries(st.sampled_from("xyz"), inner, max_size=2), max_leaves=4))}
    elif kind == "score":
        payload = {"value": draw(st.one_of(
            st.floats(allow_nan=False, allow_infinity=False), st.integers(-2, 2)))}
    else:
        payload = {}
    return {"type": kind, "payload": payload, "partition": draw(st.sampled_from(partitions))}


@st.composite
def streams(draw):
    partitions = [f"p{i}" for i in range(draw(st.integers(1, 6)))]
    batches = draw(st.lists(st.tuples(st.lists(events(partitions), max_size=20),
                                      st.booleans()), min_size=1, max_size=6))
    return batches


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(batches=streams(), chunk=st.sampled_from([None, 5, 30]))
def test_typed_views_refreshed_batch_by_batch_equal_a_fold_from_scratch(batches, chunk):
    lake = el.Lake.open(Path(tempfile.mkdtemp()) / "lake", views=VIEWS)
    for batch, refresh in batches:
        if batch:
            lake.append(batch)
        decoded = _decoded(lake)
        for partition in {e["partition"] for e in decoded}:
            # lake.state is exact before a refresh too, and the typed view's state is the
            # untyped one's whenever every state fits.
            state, _ = reference(TYPED_NULL, decoded, partition)
            assert jsoncodec.first_difference(
                lake.state(partition, view="typed_null"), state) is None
            safe = lake.state(partition, view="typed_error")
            assert jsoncodec.first_difference(safe, reference(TYPED_ERROR, decoded,
                                                               partition)[0]) is None
        if refresh:
            results = lake.materialize(chunk_events=chunk)
            assert_typed_exact(lake, TYPED_NULL)
            assert_typed_exact(lake, TYPED_ERROR)
            assert results["typed_error"].nulls == 0
    lake.materialize(chunk_events=chunk)
    assert_typed_exact(lake, TYPED_NULL)
    assert_typed_exact(lake, TYPED_ERROR)
    # A rebuild from the whole log gives the same rows as the refreshes did.
    before = lake.scan("typed_null").collect().drop("updated_at").sort("partition_id")
    rebuilt = lake.materialize(["typed_null"], rebuild=True)["typed_null"]
    after = lake.scan("typed_null").collect().drop("updated_at").sort("partition_id")
    assert after.to_dicts() == before.to_dicts()
    assert rebuilt.nulls == int(before.get_column("mismatches").sum() or 0)


# -- the acceptance ------------------------------------------------------------------


def _deposits(amounts: dict[str, list[int]]) -> list[dict]:
    return [{"type": "deposit", "payload": {"amount": a}, "partition": p}
            for p, values in amounts.items() for a in values]


def test_sql_sees_the_declared_types_and_orders_numerically(tmp_path):
    balances = ReducerView(name="balances", version=1, initial_state=_initial, reduce=_safe,
                           columns=COLUMNS)
    lake = el.Lake.open(tmp_path / "lake", views=[balances])
    # As text, "9" > "100" > "10": a numeric order is 100, 10, 9.
    lake.append(_deposits({"a": [9], "b": [100], "c": [4, 6]}))
    lake.append([{"type": "tag", "payload": {"value": "vip"}, "partition": "b"},
                 {"type": "meta", "payload": {"value": {"tier": 2}}, "partition": "b"}])
    lake.materialize()
    declared = {"partition_id": "VARCHAR", "balance": "BIGINT", "transactions": "BIGINT",
                "owner": "VARCHAR", "tags": "VARCHAR[]", "meta": "JSON", "score": "DOUBLE",
                "open": "BOOLEAN"}
    described = {name: kind for name, kind, *_ in lake.sql("describe balances").fetchall()}
    assert {k: described[k] for k in declared} == declared
    assert "state" not in described
    assert lake.sql("select partition_id from balances order by balance desc").fetchall() == [
        ("b",), ("c",), ("a",)]
    assert lake.sql("select tags[1], meta->>'$.value.tier' from balances "
                    "where partition_id = 'b'").fetchall() == [("vip", "2")]
    # Polars sees them typed too.
    schema = lake.scan("balances").collect_schema()
    assert (schema["balance"], schema["tags"], schema["score"]) == (
        pl.Int64, pl.List(pl.String), pl.Float64)
    # The DuckDB shell's init file defines the same types.
    con = duckdb.connect()
    con.execute(duckdb_init_sql(lake, use_delta_extension=False))
    shell = {name: kind for name, kind, *_ in con.sql("describe balances").fetchall()}
    assert {k: shell[k] for k in declared} == declared
    assert con.sql("select partition_id, balance from balances order by balance desc"
                   ).fetchall() == [("b", 100), ("c", 10), ("a", 9)]


def _table_state(lake: el.Lake, view: ReducerView) -> tuple[int, int]:
    store = ViewStore(lake.storage, view)
    snap = store.snapshot()
    return snap.version, store.watermark(snap)


def test_a_state_that_does_not_fit_stops_the_refresh_and_commits_nothing(tmp_path):
    strict = ReducerView(name="balances", version=1, initial_state=_initial, reduce=_reduce,
                         columns=COLUMNS)
    other = ReducerView(name="plain", version=1, initial_state=_initial, reduce=_reduce)
    lake = el.Lake.open(tmp_path / "lake", views=[strict, other])
    lake.append(_deposits({"a": [1, 2], "b": [3]}))
    lake.materialize()
    before = _table_state(lake, strict)
    lake.append(_deposits({"a": [5], "b": [INT64_MAX]}))  # b: 3 + INT64_MAX leaves int64
    with pytest.raises(MaterializeError) as caught:
        lake.materialize()
    error = caught.value.failures["balances"]
    assert isinstance(error, el.ColumnMismatchError) and isinstance(error, el.ReducerError)
    assert (error.view, error.partition, error.seq, error.event_type, error.column) == (
        "balances", "b", 5, "deposit", "balance")
    assert error.expected == "int64" and error.value == repr(3 + INT64_MAX)
    assert str(error).startswith(
        "view 'balances' partition 'b' at seq 5 (event type 'deposit'): column 'balance' "
        "holds an int beyond the signed 64-bit range")
    assert "nothing of this refresh was committed" in str(error)
    assert _table_state(lake, strict) == before  # table version and watermark
    # The other view refreshed; a read of the partition meets the same error.
    assert caught.value.results["plain"].new_watermark == 5
    with pytest.raises(el.ColumnMismatchError, match="at seq 5"):
        lake.state("b", view="balances")
    assert lake.state("a", view="balances")["balance"] == 8
    # A wrong type, a missing key and an undeclared key are refused the same way, named.
    for kind, column, expected in [("owner", "owner", "string"), ("drop", "owner", "string"),
                                   ("extra", "extra", "only the keys")]:
        fresh = el.Lake.open(tmp_path / kind, views=[strict])
        fresh.append([{"type": kind, "payload": {"value": 7}, "partition": "z"}])
        with pytest.raises(MaterializeError) as caught:
            fresh.materialize()
        error = caught.value.failures["balances"]
        assert (error.partition, error.seq, error.column) == ("z", 1, column)
        assert error.expected.startswith(expected)
        # A first build that fails leaves no generation active: the view stays empty.
        assert fresh.scan("balances").collect().height == 0
        assert ViewStore(fresh.storage, strict).watermark() == 0


def test_on_mismatch_null_stores_nulls_and_counts_them(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[TYPED_NULL])
    lake.append(_deposits({"a": [1], "b": [2]}))
    first = lake.materialize()["typed_null"]
    assert first.nulls == 0
    lake.append([
        {"type": "owner", "payload": {"value": 42}, "partition": "a"},       # wrong type
        {"type": "score", "payload": {"value": 1}, "partition": "a"},        # int in float64
        {"type": "extra", "payload": {}, "partition": "a"},                  # undeclared key
        {"type": "deposit", "payload": {"amount": INT64_MAX}, "partition": "b"},  # overflow
        {"type": "drop", "payload": {}, "partition": "b"},                   # missing key
    ])
    result = lake.materialize()["typed_null"]
    assert result.nulls == 5
    from eventlake.cli.view_commands import _result_json

    assert _result_json(result)["nulls"] == 5  # `eventlake materialize --json`
    rows = {r["partition_id"]: r for r in lake.scan("typed_null").collect().iter_rows(
        named=True)}
    assert (rows["a"]["owner"], rows["a"]["score"], rows["a"]["mismatches"]) == (None, None, 3)
    assert (rows["b"]["balance"], rows["b"]["owner"], rows["b"]["mismatches"]) == (None, None, 2)
    assert rows["a"]["balance"] == 1
    assert lake.state("a", view="typed_null") == {**_initial(), "balance": 1, "transactions": 1,
                                                  "owner": None, "score": None}
    assert lake.sql("select sum(mismatches) from typed_null").fetchall() == [(5,)]
    assert_typed_exact(lake, TYPED_NULL)


def test_a_typed_state_reads_back_as_the_untyped_state(tmp_path):
    values = {"balance": -(2**63), "transactions": INT64_MAX, "owner": "Žofia 😀 \u00e9",
              "tags": ["", None, "ü"], "meta": {"deep": [1, 2.5, {"x": None}], "big": 2**70},
              "score": -0.0, "open": False}

    def fixed(state, event):
        return dict(values)

    typed = ReducerView(name="typed", version=1, initial_state=_initial, reduce=fixed,
                        columns=COLUMNS)
    plain = ReducerView(name="plain", version=1, initial_state=_initial, reduce=fixed)
    lake = el.Lake.open(tmp_path / "lake", views=[typed, plain])
    lake.append([{"type": "x", "payload": {}, "partition": "p"},
                 {"type": "x", "payload": {}, "partition": "q"}])
    lake.materialize()
    lake.append([{"type": "x", "payload": {}, "partition": "q"}])  # q: refolded from its row
    for partition in ("p", "q"):
        got, want = lake.state(partition, view="typed"), lake.state(partition, view="plain")
        assert jsoncodec.first_difference(got, want) is None
        assert jsoncodec.first_difference(got, values) is None
        assert math.copysign(1.0, got["score"]) == -1.0
    lake.materialize()
    assert jsoncodec.first_difference(lake.state("q", view="typed"), values) is None
    assert verify_view(lake, typed).ok


def _refused(root: Path, version: int, **options) -> None:
    """A view `untyped` so defined is refused on the lake at `root` as a changed one."""
    view = ReducerView(name="untyped", version=version, initial_state=_initial,
                       reduce=_reduce, **options)
    with pytest.raises(MaterializeError) as caught:
        el.Lake.open(root, views=[view]).materialize()
    assert isinstance(caught.value.failures["untyped"], el.ViewChangedError)


def test_changing_columns_needs_a_version_bump_and_a_bump_retypes_the_table(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[UNTYPED])
    lake.append(_deposits({"a": [10, 20], "b": [5]}))
    lake.materialize()
    # Untyped v1 -> typed: a definition change, refused under the same version.
    _refused(tmp_path / "lake", 1, columns=COLUMNS)
    bumped = ReducerView(name="untyped", version=2, initial_state=_initial, reduce=_reduce,
                         columns=COLUMNS)
    typed_lake = el.Lake.open(tmp_path / "lake", views=[bumped])
    assert typed_lake.materialize()["untyped"].rebuilt
    frame = typed_lake.scan("untyped").collect()
    assert "state" not in frame.columns
    assert dict(frame.select("partition_id", "balance").iter_rows()) == {"a": 30, "b": 5}
    assert typed_lake.sql("select balance from untyped where partition_id = 'a'"
                          ).fetchall() == [(30,)]
    assert_typed_exact(typed_lake, bumped)
    # Another column type, another column, or on_mismatch is a definition change as well.
    _refused(tmp_path / "lake", 2, columns={**COLUMNS, "balance": "float64"})
    _refused(tmp_path / "lake", 2, columns={**COLUMNS, "note": "string"})
    _refused(tmp_path / "lake", 2, columns=COLUMNS, on_mismatch="null")
    # And back to untyped with a bump: the state column again.
    back = ReducerView(name="untyped", version=3, initial_state=_initial, reduce=_reduce)
    plain = el.Lake.open(tmp_path / "lake", views=[back])
    plain.append(_deposits({"a": [1]}))
    plain.materialize()
    rows = dict(plain.scan("untyped").collect().select("partition_id", "state").iter_rows())
    assert json.loads(rows["a"])["balance"] == 31


def test_verify_finds_a_corrupted_typed_cell(tmp_path):
    lake = el.Lake.open(tmp_path / "lake", views=[TYPED_ERROR])
    lake.append(_deposits({f"p{i}": [i, 2 * i] for i in range(12)}))
    lake.materialize()
    assert verify_view(lake, TYPED_ERROR).ok
    store = ViewStore(lake.storage, TYPED_ERROR)
    snap = store.snapshot()
    marks = store.marks(snap)
    bucket = bucket_of("p7", store.buckets(snap))
    rows = store.read_buckets(snap, [bucket], generation=marks.active)
    rows = rows.with_columns(pl.when(pl.col("partition_id") == "p7")
                             .then(pl.col("balance") + 1).otherwise(pl.col("balance"))
                             .alias("balance"))
    store.commit_buckets(snap, rows, buckets=[bucket], generation=marks.active, marks={})
    report = verify_view(lake, TYPED_ERROR)
    assert [(d.partition, d.field, d.stored["balance"], d.expected["balance"])
            for d in report.differences] == [("p7", "state.balance", 22, 21)]


def test_the_sample_balances_view_is_typed_and_reads_as_before(tmp_path, capsys):
    """data/samples/views.py's `balances` (v2, typed): `eventlake sql` sees BIGINT columns, and
    `eventlake state` gives the dict the untyped v1 gave."""
    import dataclasses

    from eventlake.cli import main
    from eventlake.config import load_views
    from tests.samples import REPO, SAMPLES

    views = REPO / "data" / "samples" / "views.py"
    balances = next(v for v in load_views(str(views)) if v.name == "balances")
    assert balances.column_types is not None
    untyped = dataclasses.replace(balances, name="balances_v1", version=1, columns=None)
    common = ["--lake", str(tmp_path / "lake"), "--views", str(views)]
    assert main([*common, "ingest", str(SAMPLES)]) == 0
    assert main([*common, "materialize"]) == 0
    capsys.readouterr()
    assert main([*common, "sql", "describe balances", "--format", "csv"]) == 0
    described = {line.split(",")[0]: line.split(",")[1]
                 for line in capsys.readouterr().out.splitlines()[1:]}
    assert (described["balance"], described["transactions"]) == ("BIGINT", "BIGINT")
    assert main([*common, "sql", "select partition_id, balance from balances "
                 "order by balance desc", "--format", "csv"]) == 0
    ordered = [int(line.split(",")[1]) for line in capsys.readouterr().out.splitlines()[1:]]
    assert ordered == sorted(ordered, reverse=True) and len(ordered) > 10
    lake = el.Lake.open(tmp_path / "lake", views=[*load_views(str(views)), untyped])
    lake.materialize()
    for partition in ("acct-001", "acct-017", "workspace-1"):
        assert main([*common, "state", partition, "--view", "balances"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown == lake.state(partition, view="balances_v1") == lake.state(
            partition, view="balances")


def test_a_value_that_cannot_be_stored_fails_only_its_partition(tmp_path):
    def poisoned(state, event):
        value = event["payload"].get("value")
        if value == "nan":
            return {**state, "meta": float("nan")}  # a json column: NaN is no JSON
        if value == "surrogate":
            return {**state, "owner": "\ud800"}  # a string column: not UTF-8
        return _safe(state, event)

    view = ReducerView(name="poisoned", version=1, initial_state=_initial, reduce=poisoned,
                       columns=COLUMNS)
    lake = el.Lake.open(tmp_path / "lake", views=[view])
    lake.append(_deposits({"a": [1], "b": [2], "c": [3]}))
    lake.append([{"type": "x", "payload": {"value": "nan"}, "partition": "a"},
                 {"type": "x", "payload": {"value": "surrogate"}, "partition": "b"},
                 *_deposits({"a": [10], "b": [20], "c": [30]}),
                 # A new partition that fails at its first event keeps its initial state.
                 {"type": "x", "payload": {"value": "nan"}, "partition": "d"}])
    result = lake.materialize()["poisoned"]
    assert result.failed == ("a", "b", "d")
    failed = {f.partition: f for f in lake.failed_partitions("poisoned")}
    assert (failed["a"].seq, failed["b"].seq, failed["d"].seq) == (4, 5, 9)
    assert "cannot be stored in its columns" in failed["a"].error
    rows = {r["partition_id"]: r for r in lake.scan("poisoned").collect().iter_rows(named=True)}
    assert (rows["a"]["balance"], rows["b"]["balance"], rows["c"]["balance"]) == (1, 2, 33)
    assert {k: rows["d"][k] for k in COLUMNS} == {**_initial(), "meta": None}
    assert verify_view(lake, view).ok
