"""Acceptance (issue 19, item 1): integers are exact on every read path, beyond 64 bits too.

Generated `set` actions put integers from the whole accepted range (both sides of ±2**63 and
2**64, up to the largest integer a float can hold) into the document view. The reference is
an independent fold: `actions.apply_action` on payloads and states that go through Python's
`json` module (exact for integers) after every event. `lake.state`, `lake.scan`, `lake.sql`,
`Repository.get_state`, `get_partition_state` and the stored rows of the view table (read
with deltalake, not through eventlake's readers) must all equal it, type for type: 2**64 must
not come back as the float 1.8446744073709552e+19, which Python's `==` calls equal.

Two batches: the first is materialized, the second is not, so the reads are checked lagging
(stored row plus a fold of newer events) and again after the second `materialize()`. Then
`verify_view` passes, and fails once a stored row is tampered with exactly that way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import deltalake
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.model.actions import apply_action
from eventlake.model.jsoncodec import INT_LIMIT
from eventlake.ops.verify import verify_view
from eventlake.store.viewstore import ViewStore
from tests.validate.test_jsoncodec import exact  # type-strict: 2**64 is not the float it rounds to

BOUNDARIES = [2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64, 2**64 + 1,
              10**19, 10**20, 10**100, 10**300, INT_LIMIT - 1]
integers = st.one_of(
    st.sampled_from(BOUNDARIES + [-b for b in BOUNDARIES] + [-(2**63), -(2**63) - 1]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(INT_LIMIT - 1), max_value=INT_LIMIT - 1),
)
values = st.recursive(integers, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["x", "y", "z"]), inner,
                                                 max_size=3)), max_leaves=6)
# No target is a prefix of another: a `set` never goes through an integer set before.
TARGETS = ["n", "m", "obj.x", "obj.y", "deep.a.b.c"]
PARTITIONS = ["p0", "p1", "p2"]


def set_event(partition: str, target: str, value: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"target": target, "value": value}
    if isinstance(value, list):
        payload["options"] = {"replace": True}  # a `set` of an array must replace
    return {"type": "set", "partition": partition, "payload": payload}


events = st.lists(st.builds(set_event, st.sampled_from(PARTITIONS), st.sampled_from(TARGETS),
                            values), min_size=1, max_size=12)


def reference(batch: list[dict[str, Any]], *, by_partition: bool = True) -> dict[str, Any]:
    """The fold done with Python's `json`: every payload and every state goes through text."""
    states: dict[str, str] = {}
    for event in batch:
        key = event["partition"] if by_partition else "all"
        state = json.loads(states.get(key, "{}"))
        payload = json.loads(json.dumps(event["payload"]))
        states[key] = json.dumps(apply_action(state, event["type"], payload))
    return {key: json.loads(text) for key, text in states.items()}


def stored_rows(lake: el.Lake) -> dict[str, Any]:
    """The document view's current rows, read with deltalake and Python's `json`."""
    view = lake.views["document"]
    store = ViewStore(lake.storage, view)
    if not store.exists():
        return {}  # not materialized yet
    generation = store.active(store.snapshot())
    rows = deltalake.DeltaTable(str(Path(lake.root) / "views" / "document")).to_pyarrow_table(
    ).to_pylist()
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["generation"] != generation:
            continue
        seen = newest.get(row["partition_id"])
        if seen is None or row["last_seq"] > seen["last_seq"]:
            newest[row["partition_id"]] = row
    return {p: json.loads(row["state"]) for p, row in newest.items()}


def check_reads(lake: el.Lake, every: list[dict[str, Any]], stored: list[dict[str, Any]]
                ) -> None:
    """Live reads equal the reference of `every` event, the view's rows that of `stored`."""
    want = reference(every)
    for partition in PARTITIONS:
        expected = want.get(partition, {})
        assert exact(lake.state(partition), expected), partition
        assert exact(el.Repository(lake).get_partition_state(partition), expected), partition
    assert exact(el.Repository(lake).get_state(), reference(every, by_partition=False).get(
        "all", {}))
    rows = reference(stored)
    scanned = lake.scan("document").select("partition_id", "state").collect()
    assert {p: json.loads(s) for p, s in scanned.iter_rows()}.keys() == rows.keys()
    for partition, text in scanned.iter_rows():
        assert exact(json.loads(text), rows[partition]), partition
    queried = lake.sql("select partition_id, state from document").fetchall()
    assert {p for p, _ in queried} == rows.keys()
    for partition, text in queried:
        assert exact(json.loads(text), rows[partition]), partition
    table = stored_rows(lake)
    assert table.keys() == rows.keys()
    for partition, state in table.items():
        assert exact(state, rows[partition]), partition


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=events, second=events)
def test_integers_are_exact_on_every_read_path(first: list[dict[str, Any]],
                                               second: list[dict[str, Any]]) -> None:
    # The one integer every example holds: the case orjson alone turns into a float.
    first = [set_event("p0", "big", 2**64), *first]
    with tempfile.TemporaryDirectory() as folder:
        lake = el.Lake.open(Path(folder) / "lake")
        lake.append(first)
        check_reads(lake, first, stored=[])
        lake.materialize()
        check_reads(lake, first, stored=first)
        lake.append(second)
        check_reads(lake, first + second, stored=first)  # rows lag, reads do not
        lake.materialize()
        check_reads(lake, first + second, stored=first + second)
        assert verify_view(lake, lake.views["document"]).ok


def test_verify_sees_an_integer_stored_as_the_float_it_rounds_to(tmp_path: Path) -> None:
    lake = el.Lake.open(tmp_path / "lake")
    lake.append([set_event("p0", "big", 2**64), set_event("p0", "n", -(2**63) - 1),
                 set_event("p1", "n", 1)])
    lake.materialize()
    assert verify_view(lake, lake.views["document"]).ok
    # What a lossy decoder (orjson alone) would have stored: Python's `==` cannot tell.
    lossy = '{"big":1.8446744073709552e+19,"n":-9223372036854775809}'
    assert json.loads(lossy) == {"big": 2**64, "n": -(2**63) - 1}
    deltalake.DeltaTable(str(tmp_path / "lake" / "views" / "document")).update(
        updates={"state": "'" + lossy + "'"}, predicate="partition_id = 'p0'")
    report = verify_view(lake, lake.views["document"])
    assert not report.ok
    [difference] = report.differences
    assert (difference.partition, difference.field) == ("p0", "state.big")
    with pytest.raises(AssertionError):
        check_reads(lake, [set_event("p0", "big", 2**64), set_event("p0", "n", -(2**63) - 1),
                           set_event("p1", "n", 1)], stored=[
            set_event("p0", "big", 2**64), set_event("p0", "n", -(2**63) - 1),
            set_event("p1", "n", 1)])
