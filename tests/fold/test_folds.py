"""Reducer folds: payloads decoded a window at a time fail exactly where one by one did."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlake.errors import InvalidEventError
from eventlake.fold.folds import _payloads, rows_for
from eventlake.model.views import ReducerView
from eventlake.validate.events import decode_payload


def _frame(payloads: list[str], partition: str = "p") -> pl.DataFrame:
    n = len(payloads)
    return pl.DataFrame({
        "seq": list(range(1, n + 1)), "partition_id": [partition] * n, "type": ["t"] * n,
        "payload": payloads, "ts": [datetime(2024, 1, 1, tzinfo=UTC)] * n,
        "event_id": [f"e{i}" for i in range(n)]},
        schema={"seq": pl.Int64(), "partition_id": pl.String(), "type": pl.String(),
                "payload": pl.String(), "ts": pl.Datetime("us", "UTC"),
                "event_id": pl.String()})


def _seen(state, event):
    return {"seen": [*state["seen"], event["payload"]]}


def _view(**options):
    return ReducerView(name="v", version=1, initial_state=lambda: {"seen": []}, reduce=_seen,
                       **options)


def test_a_window_decodes_exactly_as_event_by_event():
    texts = ['{"a":1}', '{"big":123456789012345678901234567890}', '{"x":{"y":[1,2.5,null]}}',
             '{"s":"a,b:c"}']
    assert _payloads(texts) == [json.loads(t) for t in texts]
    row = rows_for(_view(), _frame(texts)).row(0, named=True)
    assert json.loads(row["state"])["seen"][1]["big"] == 123456789012345678901234567890


@pytest.mark.parametrize("texts, bad, refused", [
    # No JSON object on its own, either of them, but joined they would read as two objects.
    (['{"a":"', '"},{"b":1}'], [1, 2], 2),
    # A key twice: the strict codec refuses it, wherever it is in the window.
    (['{"a":1}', '{"k":1,"k":2}', '{"b":2}'], [2], 1),
])
def test_a_payload_the_window_cannot_decode_fails_at_its_own_event(texts, bad, refused):
    assert _payloads(texts) == texts  # kept as text: each event decodes its own
    for seq in bad:
        with pytest.raises(InvalidEventError):
            decode_payload(texts[seq - 1])  # one by one it is refused, too
    row = rows_for(_view(), _frame(texts)).row(0, named=True)
    assert json.loads(row["failure"])["seq"] == bad[0]
    assert row["last_seq"] == bad[0] - 1
    skipping = rows_for(_view(skip_invalid=True), _frame(texts)).row(0, named=True)
    assert skipping["rejected"] == refused
    assert json.loads(skipping["last_rejected"])["seq"] == bad[-1]
    assert len(json.loads(skipping["state"])["seen"]) == len(texts) - refused


def test_a_window_decodes_in_groups_and_a_bad_payload_keeps_only_its_group(monkeypatch):
    from eventlake.fold import folds

    monkeypatch.setattr(folds, "_DECODE_GROUP_CHARS", 20)  # about three payloads a group
    texts = [json.dumps({"n": i}) for i in range(10)]
    assert _payloads(texts) == [{"n": i} for i in range(10)]
    texts[4] = '{"k":1,"k":2}'
    decoded = _payloads(texts)
    kept = [i for i, value in enumerate(decoded) if isinstance(value, str)]
    assert 4 in kept and len(kept) < len(texts) and kept == list(range(kept[0], kept[-1] + 1))
    assert all(decoded[i] == {"n": i} for i in range(10) if i not in kept)
    row = rows_for(_view(), _frame(texts)).row(0, named=True)
    assert json.loads(row["failure"])["seq"] == 5


def test_a_partition_unstorable_from_its_first_event_keeps_its_initial_state():
    view = ReducerView(name="v", version=1, initial_state=lambda: {"n": 0},
                       reduce=lambda state, event: {"n": float("nan")})
    row = rows_for(view, _frame(['{"a":1}', '{"a":2}'])).row(0, named=True)
    assert json.loads(row["state"]) == {"n": 0}
    assert json.loads(row["failure"])["seq"] == 1 and row["last_seq"] == 0


_objects = st.dictionaries(
    st.sampled_from(["a", "b", ":", "k:v", "\\u003a"]),
    st.one_of(st.integers(), st.sampled_from([2**63, -(2**64), 10**30]), st.floats(
        allow_nan=False, allow_infinity=False), st.text(max_size=4), st.none(),
        st.lists(st.integers(), max_size=2)), max_size=3)
_bad_texts = st.sampled_from(['{"k":1,"k":2}', '[1]', '{"a":NaN}', '{"a":1', '7'])


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_objects.map(json.dumps), _bad_texts), max_size=12),
       st.integers(1, 60))
def test_window_decoding_is_decoding_each_payload(monkeypatch, texts, group_chars):
    # Whatever the groups: a payload comes out decoded exactly as `decode_payload` decodes
    # it on its own (ints stay ints, beyond 64 bits too), or as its text when its group
    # holds one the codec refuses; with nothing refused, every payload is decoded.
    from eventlake.fold import folds

    monkeypatch.setattr(folds, "_DECODE_GROUP_CHARS", group_chars)
    out = _payloads(texts)
    assert len(out) == len(texts)
    refused = set()
    for i, text in enumerate(texts):
        try:
            expected = decode_payload(text)
        except InvalidEventError:
            refused.add(i)
            assert out[i] == text
            continue
        if out[i] is not text:
            assert out[i] == expected
            assert json.dumps(out[i], sort_keys=True) == json.dumps(expected, sort_keys=True)
    if not refused:
        assert all(type(value) is dict for value in out)
