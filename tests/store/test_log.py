"""The Delta event log (eventlake/log.py): gap-free seq, layout, pruning, exactly-once batches.

The tests taking `backend` run on a local lake and on a lake on S3 (tests/backends.py): the
three kinds of batches, special partition names, concurrent writers and exactly-once batches.
Process tests use the 'spawn' context and join every process with a timeout.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import polars as pl
import pyarrow as pa
import pytest

import eventlake as el
from eventlake.store.log import StaleLogError
from eventlake.validate.events import normalize_batch
from tests.backends import open_worker_lake
from tests.logfiles import TAIL_FOLDER, file_rows, files_holding, may_hold, on_disk, seq_range

JOIN_TIMEOUT = 120


# -- helpers -------------------------------------------------------------------------------


def run_processes(target, args_list, *, timeout: float = JOIN_TIMEOUT) -> list:
    """Start one spawned process per args tuple (each gets a queue last), collect results."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue)) for args in args_list]
    for proc in procs:
        proc.start()
    results = []
    deadline = time.monotonic() + timeout
    try:
        while len(results) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                results.append(queue.get(timeout=min(remaining, 5)))
            except Exception:
                if all(not p.is_alive() for p in procs) and queue.empty():
                    break
        for proc in procs:
            proc.join(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
    assert [p.exitcode for p in procs] == [0] * len(procs), results
    assert len(results) == len(procs)
    return results


# -- process workers (module level so 'spawn' can import them) -----------------------------


def _append_worker(root: str, options: dict, proc: int, batches: int, per_batch: int,
                   queue) -> None:
    lake = open_worker_lake(root, options)
    out = []
    for batch in range(batches):
        events = [{"type": "tick", "payload": {"proc": proc, "batch": batch, "i": i},
                   "partition": f"p{(proc + batch + i) % 7}"} for i in range(per_batch)]
        res = lake.append(events, producer=f"proc-{proc}", batch_no=batch)
        out.append((batch, res.first_seq, res.last_seq, res.count, res.duplicate))
    queue.put((proc, out))


def _race_worker(root: str, options: dict, proc: int, rounds: int, barrier, queue) -> None:
    lake = open_worker_lake(root, options)
    out = []
    for rnd in range(rounds):
        events = [{"type": "race", "payload": {"round": rnd, "i": i, "writer": proc},
                   "partition": f"r{i % 3}"} for i in range(5)]
        barrier.wait(timeout=60)
        res = lake.append(events, producer="racer", batch_no=rnd)
        out.append((rnd, res.duplicate, res.first_seq, res.last_seq, res.count))
    queue.put((proc, out))


# -- acceptance: 10,000 events in three batches of three input kinds -----------------------

SPECIAL_PAYLOADS = [
    {"nested": {"a": [1, {"b": [None, True, False, {"c": {}}]}], "d": {"e": {"f": "g"}}}},
    {"unicode": "žluťoučký kůň", "emoji": "😀🙂👩‍👩‍👧", "non_bmp": "𝄞𠜎𝒳", "cjk": "客户"},
    {"escapes": "quote \" backslash \\ newline \n tab \t nul \u0000 \u2028"},
    {"big": 2**64 + 1, "neg_big": -(2**70) - 3, "beyond_double": 2**53 + 1, "max": 2**63 - 1},
    {"floats": [0.1, 1 / 3, 1e-310, 1.7976931348623157e308, -2.5e-5, 123456789.123456789]},
    {},
    {"empty_list": [], "empty_obj": {}, "empty_str": ""},
    {"key with spaces and ünïcode 🔑": 1, "": "empty key"},
]

# Partition values that need escaping in a path or an object key (or look like an escape).
SPECIAL_PARTITIONS = ["a b", "a=b", "50%", "50%25", "x:y", "ünï", "🙂", "a.b", "#tag", "q?x",
                      "+plus", "a*b?[c]", "x[1]", "it's", "$1"]


def special_payload(i: int) -> dict:
    return SPECIAL_PAYLOADS[i % len(SPECIAL_PAYLOADS)] | {"i": i}


def test_ten_thousand_events_in_three_kinds_of_batches(backend):
    lake = backend.open()
    partitions = [f"part-{k:02d}" for k in range(50)] + SPECIAL_PARTITIONS
    rng = random.Random(7)
    expected: list[tuple[str, str, object]] = []  # (partition, type, decoded payload)

    # batch 1: list of dicts, payload as dicts and (every 5th) as JSON text
    dicts = []
    for i in range(4000):
        payload = special_payload(i)
        part = partitions[rng.randrange(len(partitions))]
        given = json.dumps(payload, ensure_ascii=bool(i % 2)) if i % 5 == 0 else payload
        dicts.append({"type": f"kind-{i % 4}", "payload": given, "partition": part})
        expected.append((part, f"kind-{i % 4}", payload))
    # batch 2: pyarrow Table with JSON text payloads
    rows = [(partitions[rng.randrange(len(partitions))], special_payload(4000 + i))
            for i in range(3000)]
    table = pa.table({"type": ["arrow"] * 3000,
                      "payload": [json.dumps(p, ensure_ascii=False) for _, p in rows],
                      "partition": [r[0] for r in rows]})
    expected += [(part, "arrow", p) for part, p in rows]
    # batch 3: polars DataFrame with JSON text payloads
    rows = [(partitions[rng.randrange(len(partitions))], special_payload(7000 + i))
            for i in range(3000)]
    frame = pl.DataFrame({"type": ["polars"] * 3000,
                          "payload": [json.dumps(p) for _, p in rows],
                          "partition": [r[0] for r in rows]})
    expected += [(part, "polars", p) for part, p in rows]

    results = [lake.append(dicts), lake.append(table), lake.append(frame)]
    assert [(r.first_seq, r.last_seq, r.count) for r in results] == [
        (1, 4000, 4000), (4001, 7000, 3000), (7001, 10000, 3000)]

    events = lake.events().collect()
    assert events.get_column("seq").to_list() == list(range(1, 10001))
    assert events.height == 10000
    got = list(zip(events.get_column("partition_id").to_list(),
                   events.get_column("type").to_list(),
                   [json.loads(p) for p in events.get_column("payload").to_list()], strict=True))
    for (g_part, g_type, g_payload), (e_part, e_type, e_payload) in zip(got, expected,
                                                                          strict=True):
        assert (g_part, g_type) == (e_part, e_type)
        assert g_payload == e_payload
    # floats survive bit for bit, big ints stay ints
    decoded = [json.loads(p) for p in events.get_column("payload").to_list()]
    for payload, (_, _, original) in zip(decoded, expected, strict=True):
        if "floats" in original:
            assert [x.hex() for x in payload["floats"]] == [x.hex() for x in original["floats"]]
        if "big" in original:
            assert payload["big"] == 2**64 + 1 and isinstance(payload["big"], int)
            assert payload["beyond_double"] == 2**53 + 1
    # JSON text given by the caller is stored as given
    stored = events.get_column("payload").to_list()
    assert stored[4000] == table.column("payload")[0].as_py()
    assert stored[0] == dicts[0]["payload"]

    # layout: every live file sits in the folder its layout gives it and holds the rows it
    # should (tests/logfiles.py), per delta-rs, per eventlake's own log and in the storage
    snap = lake.log.snapshot()
    actions = snap.add_actions()
    options = lake.storage.options
    held = file_rows(lake.root, options=options)
    assert sorted(f"{lake.root}/events/{unquote(p)}"
                  for p in actions.column("path").to_pylist()) == sorted(held)
    assert on_disk(lake.root, options=options) == sorted(held)
    assert sorted(seq for rows in held.values() for seq, _ in rows) == list(range(1, 10001))
    assert all(got[seq - 1][0] == part for rows in held.values() for seq, part in rows)
    assert {part for rows in held.values() for _, part in rows} == set(partitions)
    layout = lake.layout
    if layout.kind == "buckets":
        # Batches this large fill their buckets: one file per bucket per batch, no tail.
        assert not any(TAIL_FOLDER in f for f in held)
        assert len(held) <= 3 * layout.bucket_count
    # each batch was one commit
    assert snap.version == 3
    # reads of one partition prune to the files that can hold it
    for name in [*SPECIAL_PARTITIONS, "part-00"]:
        plan = lake.log.plan(partitions=[name])
        assert sorted(plan.files) == sorted(f for f, rows in held.items()
                                            if may_hold(f, rows, name, layout)), name
        if layout.kind == "partition_id":
            assert set(plan.partitions) == {name}
        rows_of = lake.events(partition=name).collect()
        assert set(rows_of.get_column("partition_id").to_list()) == {name}
        assert rows_of.get_column("seq").to_list() == [
            seq for seq, (part, _, _) in enumerate(expected, 1) if part == name]
    assert lake.events(since_seq=6500, until_seq=6510).collect().get_column(
        "seq").to_list() == list(range(6501, 6511))


def test_partition_names_with_special_characters_round_trip(backend):
    lake = backend.open()
    options = lake.storage.options
    lake.append([{"type": "t", "payload": {"name": n}, "partition": n}
                 for n in SPECIAL_PARTITIONS])
    frame = lake.events().collect()
    assert frame.get_column("partition_id").to_list() == SPECIAL_PARTITIONS
    stored = on_disk(lake.root, options=options)
    for name in SPECIAL_PARTITIONS:
        plan = lake.log.plan(partitions=[name])
        # One file holds each name: its own folder's, or the batch's one tail file.
        assert len(plan.files) == 1
        assert list(plan.files) == files_holding(lake.root, name, options=options)
        if lake.layout.kind == "partition_id":
            assert plan.partitions == (name,)
        assert plan.files[0] in stored
        rows = lake.events(partition=name).collect()
        assert rows.get_column("partition_id").to_list() == [name]
        assert json.loads(rows.get_column("payload")[0]) == {"name": name}


# -- acceptance: concurrent writers --------------------------------------------------------


def test_four_processes_append_concurrently_without_gaps_or_duplicates(backend):
    lake = backend.open()
    # Each commit on S3 is several HTTP round trips (and a conditional PUT that may lose):
    # fewer, larger batches there keep the run about as long as the local one.
    procs, batches, per_batch = (4, 25, 3) if backend.is_local else (4, 8, 10)
    results = run_processes(_append_worker, [(*backend.worker_args(lake), p, batches, per_batch)
                                             for p in range(procs)], timeout=300)
    total = procs * batches * per_batch
    events = lake.events().collect()
    seqs = events.get_column("seq").to_list()
    assert seqs == list(range(1, total + 1))
    assert lake.last_seq() == total
    tags = Counter((p["proc"], p["batch"], p["i"])
                   for p in map(json.loads, events.get_column("payload").to_list()))
    assert set(tags.values()) == {1}
    assert set(tags) == {(p, b, i) for p in range(procs) for b in range(batches)
                         for i in range(per_batch)}
    # every batch is contiguous in seq (one atomic commit) and matches its AppendResult
    by_batch: dict[tuple[int, int], list[int]] = {}
    for seq, payload in zip(seqs, events.get_column("payload").to_list(), strict=True):
        p = json.loads(payload)
        by_batch.setdefault((p["proc"], p["batch"]), []).append(seq)
    for proc, out in results:
        for batch, first, last, count, duplicate in out:
            assert not duplicate and count == per_batch
            assert by_batch[(proc, batch)] == list(range(first, last + 1))
    assert len({r[0] for r in results}) == procs
    ranges = sorted((first, last) for _, out in results for _, first, last, _, _ in out)
    assert ranges == [(1 + k * per_batch, (k + 1) * per_batch) for k in range(procs * batches)]


@pytest.mark.slow
def test_many_processes_append_concurrently_heavy(lake, lake_path):
    procs, batches, per_batch = 6, 60, 20
    run_processes(_append_worker, [(str(lake_path), {}, p, batches, per_batch)
                                   for p in range(procs)], timeout=600)
    seqs = lake.events().select("seq").collect().get_column("seq").to_list()
    assert seqs == list(range(1, procs * batches * per_batch + 1))


# -- acceptance: exactly-once (producer, batch_no) ------------------------------------------


def test_same_producer_batch_twice_is_a_duplicate(backend):
    lake = backend.open()
    events = [{"type": "t", "payload": {"i": i}, "partition": f"p{i % 2}"} for i in range(4)]
    first = lake.append(events, producer="inbox", batch_no=7)
    assert (first.duplicate, first.first_seq, first.last_seq, first.count) == (False, 1, 4, 4)
    version = lake.log.snapshot().version
    again = lake.append(events, producer="inbox", batch_no=7)
    assert again.duplicate is True
    assert (again.count, again.first_seq, again.last_seq) == (0, None, 4)
    assert again.batch_id == first.batch_id
    assert lake.last_seq() == 4
    assert lake.events().collect().height == 4
    assert lake.log.snapshot().version == version
    # a different batch_no, or producer, is a new batch
    assert lake.append(events, producer="inbox", batch_no=8).first_seq == 5
    assert lake.append(events, producer="other", batch_no=7).first_seq == 9
    # even different content under a landed key is not written again
    assert lake.append(events[:1], producer="inbox", batch_no=7).duplicate
    assert lake.last_seq() == 12


def test_racing_processes_land_one_copy_of_a_batch(backend):
    lake = backend.open()
    procs, rounds = 3, 3
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    results = run_processes(_race_worker, [(*backend.worker_args(lake), p, rounds, barrier)
                                           for p in range(procs)], timeout=300)
    events = lake.events().collect()
    assert events.height == rounds * 5
    assert events.get_column("seq").to_list() == list(range(1, rounds * 5 + 1))
    payloads = [json.loads(p) for p in events.get_column("payload").to_list()]
    for rnd in range(rounds):
        landed = [p for p in payloads if p["round"] == rnd]
        assert sorted(p["i"] for p in landed) == list(range(5))
        assert len({p["writer"] for p in landed}) == 1  # one writer's copy, whole
        outcomes = [o for _, out in results for o in out if o[0] == rnd]
        winners = [o for o in outcomes if not o[1]]
        assert len(winners) == 1 and winners[0][4] == 5
        for loser in outcomes:
            if loser[1]:
                assert loser[4] == 0 and loser[3] == winners[0][3]


def test_batch_keys_are_validated_and_unambiguous(lake):
    events = [{"type": "t", "payload": {}, "partition": "p"}]
    for producer, batch_no, field in [("a/b", "c", "producer"), ("", 1, "producer"),
                                      ("p", None, "batch_no"), (None, 1, "producer"),
                                      ("p", True, "batch_no"), ("p", "", "batch_no"),
                                      ("p", 1.5, "batch_no"), ("p\n", 1, "producer")]:
        with pytest.raises(el.InvalidEventError) as info:
            lake.append(events, producer=producer, batch_no=batch_no)
        assert info.value.field == field
    assert lake.last_seq() == 0
    # 'a' + 'b/c' is a batch of its own, not confused with anything else
    assert not lake.append(events, producer="a", batch_no="b/c").duplicate
    assert not lake.append(events, producer="a", batch_no="b").duplicate
    assert lake.append(events, producer="a", batch_no="b/c").duplicate


def test_expected_last_seq_guards_the_append(lake):
    events = normalize_batch([{"type": "t", "payload": {}, "partition": "p"}])
    assert lake.log.append(events, expected_last_seq=0).first_seq == 1
    with pytest.raises(StaleLogError) as info:
        lake.log.append(events, expected_last_seq=0)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert info.value.transient and isinstance(info.value, el.CommitConflictError)
    assert lake.last_seq() == 1
    assert lake.log.append(events, expected_last_seq=1).first_seq == 2


# -- AppendResult, ids and timestamps -------------------------------------------------------


def test_append_result_fields(lake):
    events = [{"type": "t", "payload": {"i": i}, "partition": p}
              for i, p in enumerate(["b", "a", "c", "a", "b", "b"])]
    res = lake.append(events, producer="prod", batch_no=1)
    assert (res.first_seq, res.last_seq, res.count) == (1, 6, 6)
    assert res.partitions == ("a", "b", "c")
    assert res.duplicate is False
    assert res.version == lake.log.snapshot().version
    frame = lake.events().collect()
    assert set(frame.get_column("batch_id").to_list()) == {res.batch_id}
    anon = lake.append(events[:2])
    assert (anon.first_seq, anon.last_seq, anon.count, anon.partitions) == (7, 8, 2, ("a", "b"))
    assert anon.batch_id != res.batch_id
    assert lake.events(since_seq=6).collect().get_column("batch_id").unique().to_list() == [
        anon.batch_id]
    empty = lake.append([])
    assert (empty.count, empty.first_seq, empty.last_seq, empty.duplicate) == (0, None, 8, False)
    assert lake.last_seq() == 8


def test_event_ids_generated_unique_and_stable(tmp_path):
    events = [{"type": "t", "payload": {"i": i}, "partition": f"p{i % 3}"} for i in range(20)]
    keyed = [dict(e) for e in events]
    keyed[5]["event_id"] = "mine-5"
    lakes = [el.Lake.open(tmp_path / name) for name in ("one", "two")]
    for lake in lakes:
        lake.append(keyed, producer="inbox", batch_no="file-1")
        lake.append(events)  # anonymous batch: fresh ids
        lake.append(events)
    ids = [lake.events().collect().get_column("event_id").to_list() for lake in lakes]
    for got in ids:
        assert len(got) == 60 and len(set(got)) == 60 and all(got)
        assert got[5] == "mine-5"
    # the keyed batch gets the same ids wherever (and however often) it is ingested
    assert ids[0][:20] == ids[1][:20]
    assert ids[0][20:] != ids[1][20:]


def test_supplied_event_id_colliding_with_a_generated_one_is_refused(lake, tmp_path):
    # learn the id generated for record 1 of batch ("x", 2) from a scratch lake...
    scratch = el.Lake.open(tmp_path / "scratch")
    plain = [{"type": "t", "payload": {}, "partition": "p"} for _ in range(2)]
    scratch.append(plain, producer="x", batch_no=2)
    generated = scratch.events().collect().get_column("event_id")[1]
    # ...and supply it for record 0 of the same batch: two records would share one id
    batch = [plain[0] | {"event_id": generated}, plain[1]]
    with pytest.raises(el.InvalidEventError) as info:
        lake.append(batch, producer="x", batch_no=2)
    assert info.value.field == "event_id" and info.value.index == 1
    assert "record 0" in str(info.value)
    assert lake.last_seq() == 0


def test_ts_given_is_kept_in_utc_and_default_is_ingest_time(lake):
    given = datetime(2023, 7, 1, 9, 15, tzinfo=UTC) + timedelta(microseconds=42)
    before = datetime.now(UTC)
    lake.append([
        {"type": "t", "payload": {}, "partition": "p", "ts": given},
        {"type": "t", "payload": {}, "partition": "p",
         "ts": given.astimezone(UTC).isoformat().replace("+00:00", "-05:00")},
        {"type": "t", "payload": {}, "partition": "p"},
    ])
    after = datetime.now(UTC)
    frame = lake.events().collect()
    ts = frame.get_column("ts").to_list()
    ingested = frame.get_column("ingested_at").to_list()
    assert ts[0] == given
    assert ts[1] == given + timedelta(hours=5)
    assert before <= ts[2] <= after
    assert ts[2] == ingested[2]
    assert len(set(ingested)) == 1 and before <= ingested[0] <= after
    assert str(frame.schema["ts"]) == str(pl.Datetime("us", "UTC"))


# -- reading: filters and pruning -----------------------------------------------------------


@pytest.fixture
def multi_batch_lake(lake):
    """Six batches over four partitions: several files per partition, seq ranges known."""
    rng = random.Random(3)
    for batch in range(6):
        lake.append([{"type": "t", "payload": {"b": batch, "i": i},
                      "partition": f"q{rng.randrange(4)}"} for i in range(40)])
    return lake


def test_plan_by_partition_lists_only_that_partitions_files(multi_batch_lake, lake_path):
    layout = multi_batch_lake.layout
    held = file_rows(lake_path)
    for part in ("q0", "q1", "q2", "q3"):
        plan = multi_batch_lake.log.plan(partitions=[part])
        assert plan.files, part
        # Exactly the files a plan cannot rule out: the partition's folder, or (buckets) the
        # files of its bucket and of the tail whose partition ids range over it.
        assert sorted(plan.files) == sorted(f for f, rows in held.items()
                                            if may_hold(f, rows, part, layout))
        assert set(files_holding(lake_path, part)) <= set(plan.files)
        if layout.kind == "partition_id":
            folder = lake_path / "events" / f"partition_id={part}"
            assert sorted(plan.files) == sorted(str(p) for p in folder.glob("*.parquet"))
            assert set(plan.partitions) == {part}
    plan = multi_batch_lake.log.plan(partitions=["q1", "q3"])
    assert sorted(plan.files) == sorted(f for f, rows in held.items()
                                        if may_hold(f, rows, "q1", layout)
                                        or may_hold(f, rows, "q3", layout))
    if layout.kind == "buckets":
        # The tail was sorted into buckets at least once: bucket files are planned too.
        assert any(TAIL_FOLDER not in f for f in plan.files)
    assert multi_batch_lake.log.plan(partitions=["nope"]).files == ()


@pytest.mark.parametrize("bound", [0, 39, 40, 41, 120, 200, 239, 240])
def test_plan_prunes_files_by_seq_range(multi_batch_lake, lake_path, bound):
    held = file_rows(lake_path)
    ranges = {f: seq_range(f) for f in held}
    since = multi_batch_lake.log.plan(since_seq=bound)
    assert sorted(since.files) == sorted(f for f, (_, hi) in ranges.items() if hi > bound)
    until = multi_batch_lake.log.plan(until_seq=bound)
    assert sorted(until.files) == sorted(f for f, (lo, _) in ranges.items() if lo <= bound)
    both = multi_batch_lake.log.plan(partitions=["q2"], since_seq=bound, until_seq=bound + 50)
    assert sorted(both.files) == sorted(
        f for f, (lo, hi) in ranges.items()
        if may_hold(f, held[f], "q2", multi_batch_lake.layout) and hi > bound
        and lo <= bound + 50)


def test_events_filters_match_a_python_filter(multi_batch_lake):
    everything = multi_batch_lake.events().collect()
    rows = everything.rows(named=True)
    rng = random.Random(11)
    for _ in range(12):
        partition = rng.choice([None, "q0", "q3", ["q1", "q2"]])
        since = rng.choice([None, 0, 17, 80, 239])
        until = rng.choice([None, 5, 100, 240])
        got = multi_batch_lake.events(partition=partition, since_seq=since,
                                      until_seq=until).collect()
        wanted = [r["seq"] for r in rows
                  if (partition is None or r["partition_id"] in (
                      [partition] if isinstance(partition, str) else partition))
                  and (since is None or r["seq"] > since)
                  and (until is None or r["seq"] <= until)]
        assert got.get_column("seq").to_list() == wanted
        assert got.columns == everything.columns
