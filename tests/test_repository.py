"""The insieme Repository API on a lake (eventlake/repository.py).

Ported behaviours of insieme's repository (init / addEvent / getState with checkpoints and
clamping), plus what a shared lake adds: catch-up with other writers, a new process seeing the
same state, and partition state served without reading other partitions.
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import random
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import eventlake as el
from eventlake.model.actions import apply_action, is_state_action
from eventlake.store.storage import Snapshot
from tests.logfiles import file_rows, may_hold
from tests.model.test_actions import chain, tokens

JOIN_TIMEOUT = 120


# -- an independent reference: fold events through apply_action ----------------------------


def fold(events, state=None):
    state = {} if state is None else state
    for event in events:
        if is_state_action(event["type"]):
            state = apply_action(state, event["type"], event["payload"])
    return state


def prefix_states(events):
    """states[i] = state after the first i events, each an independent deep copy."""
    states = [{}]
    state: dict = {}
    for event in events:
        if is_state_action(event["type"]):
            state = apply_action(state, event["type"], event["payload"])
        states.append(copy.deepcopy(state))
    return states


class Generator:
    """Random but always-applicable events: every action type, plus domain events.

    Each partition writes under its own top-level key, so an event that applies to the whole
    document also applies to its partition's own state.
    """

    def __init__(self, seed: int, partitions: list[str], *, namespaced: bool = True):
        self.rng = random.Random(seed)
        self.partitions = partitions
        self.namespaced = namespaced
        self.states: dict[str, dict] = {p: {} for p in partitions}
        self.next_id = 0

    def _key(self, partition: str, name: str) -> str:
        return f"{partition}.{name}" if self.namespaced else name

    def _scope(self, partition: str) -> dict:
        state = self.states[partition]
        return state.get(partition, {}) if self.namespaced else state

    def _nodes(self, partition: str) -> list[str]:
        files = self._scope(partition).get("files") or {}
        return sorted((files.get("items") or {}).keys())

    def candidate(self, partition: str) -> tuple[str, dict]:
        rng = self.rng
        key = lambda name: self._key(partition, name)  # noqa: E731
        scope = self._scope(partition)
        nodes = self._nodes(partition)
        if "files" not in scope:
            return "set", {"target": key("files"), "value": {"tree": [], "items": {}}}
        choice = rng.choice(["set", "set_merge", "set_list", "unset", "push", "push", "update",
                             "move", "delete", "deposit", "deposit"])
        if choice == "set":
            return "set", {"target": key(f"meta.k{rng.randrange(5)}"), "value": rng.randrange(99)}
        if choice == "set_merge":
            return "set", {"target": key("meta"), "value": {"merged": rng.randrange(9)}}
        if choice == "set_list":
            return "set", {"target": key("list"), "value": [rng.randrange(9), "x", None],
                           "options": {"replace": True}}
        if choice == "unset":
            return "unset", {"target": key(f"meta.k{rng.randrange(5)}")}
        if choice == "deposit":
            return "deposit", {"amount": rng.randrange(1, 500), "note": "ünï 🙂"}
        if choice == "push" or not nodes:
            self.next_id += 1
            parent = rng.choice(["_root", *nodes[-3:]])
            position = rng.choice(["first", "last", None] + (
                [{"after": nodes[0]}, {"before": nodes[-1]}] if nodes else []))
            options: dict = {"parent": parent}
            if position is not None:
                options["position"] = position
            return "treePush", {"target": key("files"),
                                "value": {"id": f"n{self.next_id}", "name": f"node {self.next_id}"},
                                "options": options}
        node = rng.choice(nodes)
        if choice == "update":
            return "treeUpdate", {"target": key("files"), "value": {"name": f"renamed {node}"},
                                  "options": {"id": node, "replace": rng.random() < 0.2}}
        if choice == "move":
            return "treeMove", {"target": key("files"),
                                "options": {"id": node, "parent": rng.choice(["_root", *nodes]),
                                            "position": rng.choice(["first", "last"])}}
        return "treeDelete", {"target": key("files"), "options": {"id": node}}

    def event(self) -> dict:
        partition = self.rng.choice(self.partitions)
        kind, payload = self.candidate(partition)
        if is_state_action(kind):
            self.states[partition] = apply_action(self.states[partition], kind, payload)
        return {"type": kind, "payload": payload, "partition": partition}

    def events(self, n: int) -> list[dict]:
        return [self.event() for _ in range(n)]


def log_fingerprint(lake) -> tuple[int, int]:
    snap = lake.log.snapshot()
    return lake.log.last_seq(snap), snap.version


def stored_events(lake) -> list[dict]:
    frame = lake.events().collect()
    return [{"type": t, "payload": json.loads(p), "partition": part}
            for t, p, part in zip(frame.get_column("type").to_list(),
                                  frame.get_column("payload").to_list(),
                                  frame.get_column("partition_id").to_list(), strict=True)]


# -- init ----------------------------------------------------------------------------------


def test_init_with_initial_state_on_empty_log_writes_one_init_event(lake):
    initial = {"explorer": {"items": {"f1": {"name": "Documents"}}, "tree": [{"id": "f1",
                                                                              "children": []}]},
               "settings": {"theme": "dark", "big": 2**64}}
    repo = el.Repository(lake)
    repo.init(initial)
    assert repo.get_state() == initial
    events = repo.get_events()
    assert [(e["type"], e["payload"], e["seq"]) for e in events] == [
        ("init", {"value": initial}, 1)]
    assert lake.last_seq() == 1
    # the caller's dict is not aliased
    initial["settings"]["theme"] = "light"
    assert repo.get_state()["settings"]["theme"] == "dark"


def test_init_on_non_empty_log_replays_and_writes_nothing(lake):
    lake.append([{"type": "set", "payload": {"target": "counter", "value": v}, "partition": "p"}
                 for v in (1, 2)] + [
        {"type": "set", "payload": {"target": "name", "value": "test"}, "partition": "q"}])
    before = log_fingerprint(lake)
    repo = el.Repository(lake)
    repo.init({"new": {"state": "must not be used"}})
    assert repo.get_state() == {"counter": 2, "name": "test"}
    assert log_fingerprint(lake) == before
    assert [e["type"] for e in repo.get_events()] == ["set", "set", "set"]


def test_init_without_initial_state_on_empty_log_writes_nothing(lake):
    repo = el.Repository(lake)
    repo.init()
    assert repo.get_state() == {}
    assert log_fingerprint(lake) == (0, 0)
    assert repo.get_events() == []


def _init_worker(root: str, who: int, barrier, queue) -> None:
    import eventlake as el

    repo = el.Repository(el.Lake.open(root))
    barrier.wait(timeout=60)
    repo.init({"who": who})
    queue.put((who, repo.get_state()))


def test_concurrent_init_on_an_empty_log_writes_one_init_event(lake, lake_path):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_init_worker, args=(str(lake_path), i, barrier, queue))
             for i in range(2)]
    for proc in procs:
        proc.start()
    try:
        states = [queue.get(timeout=JOIN_TIMEOUT) for _ in procs]
        for proc in procs:
            proc.join(timeout=JOIN_TIMEOUT)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=10)
    assert [p.exitcode for p in procs] == [0, 0]
    events = stored_events(lake)
    assert [e["type"] for e in events] == ["init"]
    winner = events[0]["payload"]["value"]
    assert all(state == winner for _, state in states)


# -- add_event -----------------------------------------------------------------------------


@pytest.mark.parametrize("populated", [False, True])
def test_add_event_refuses_init(lake, populated):
    repo = el.Repository(lake)
    repo.init()
    if populated:
        repo.add_event({"type": "set", "payload": {"target": "counter", "value": 1}})
    before = log_fingerprint(lake)
    with pytest.raises(el.InvalidEventError,
                       match=r"init events can only be created through init\(\)") as info:
        repo.add_event({"type": "init", "payload": {"value": {"new": "state"}}})
    assert info.value.field == "type"
    assert log_fingerprint(lake) == before
    assert repo.get_state() == ({"counter": 1} if populated else {})


def test_state_after_each_added_event_equals_a_fold(lake):
    repo = el.Repository(lake)
    repo.init({"title": "doc"})
    generator = Generator(5, ["a", "b", "c"])
    written = [{"type": "init", "payload": {"value": {"title": "doc"}}}]
    before = repo.get_state()
    domain = 0
    for event in generator.events(25):
        payload = copy.deepcopy(event["payload"])
        repo.add_event(event)
        event["payload"]["mutated_after_add"] = True  # must not reach the repository
        written.append({"type": event["type"], "payload": payload})
        state = repo.get_state()
        assert state == fold(written)
        if not is_state_action(event["type"]):
            domain += 1
            assert state == before  # domain events leave the document alone
        before = state
    assert domain >= 2
    assert [e["payload"] for e in repo.get_events()] == [e["payload"] for e in written]
    assert [e["seq"] for e in repo.get_events()] == list(range(1, 27))


def test_events_without_partition_go_to_the_default_partition(lake):
    repo = el.Repository(lake)
    repo.init()
    repo.add_event({"type": "set", "payload": {"target": "a", "value": 1}})
    repo.add_event({"type": "deposit", "payload": {"amount": 3}, "partition": "acct"})
    assert [e["partition"] for e in repo.get_events()] == ["_default", "acct"]
    assert [e["seq"] for e in repo.get_events("acct")] == [2]


@pytest.mark.parametrize(("kind", "payload", "field"), [
    # Refused at append whatever the state:
    ("set", {"value": 1}, "payload.target"),
    ("set", {"target": "", "value": 1}, "payload.target"),
    ("set", {"target": "list", "value": [1, 2]}, "payload.value"),
    ("set", {"target": "a"}, "payload.value"),
    ("unset", {"target": 5}, "payload.target"),
    ("treePush", {"target": "tree_home", "value": {"name": "no id"}}, "payload.value.id"),
    ("treeMove", {"target": "tree_home"}, "payload.options"),
    ("treeDelete", {"target": "tree_home", "options": {}}, "payload.options.id"),
    # Refused by the current state:
    ("treeUpdate", {"target": "missing", "value": {"name": "x"}, "options": {"id": "n1"}},
     "payload.target"),
    ("treePush", {"target": "missing.deeper", "value": {"id": "n9"}}, "payload.target"),
    ("set", {"target": "a.b.c", "value": 1}, "payload.target"),
    ("init", {"value": {}}, "type"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_malformed_action_payloads_are_refused_and_nothing_is_written(lake, kind, payload,
                                                                       field):
    repo = el.Repository(lake)
    repo.init({"tree_home": {"tree": [], "items": {}}, "a": {"b": 1}})
    before = log_fingerprint(lake)
    state = repo.get_state()
    with pytest.raises(el.InvalidEventError) as info:
        repo.add_event({"type": kind, "payload": payload, "partition": "p"})
    assert info.value.field == field, str(info.value)
    assert field in str(info.value)
    assert log_fingerprint(lake) == before
    assert repo.get_state() == state


@pytest.mark.parametrize("event", [
    {"type": "set", "payload": "[1, 2]", "partition": "p"},
    {"type": "set", "payload": None, "partition": "p"},
    {"type": "deposit", "payload": {"x": float("nan")}, "partition": "p"},
    {"type": "", "payload": {}, "partition": "p"},
    {"type": "deposit", "payload": {}, "partition": "../etc"},
    {"type": "deposit", "payload": {}, "partition": "p", "extra": 1},
], ids=["array-text", "null", "nan", "empty-type", "escaping-partition", "unknown-key"])
def test_bad_events_are_refused_by_add_event(lake, event):
    repo = el.Repository(lake)
    repo.init({"x": 1})
    before = log_fingerprint(lake)
    with pytest.raises(el.InvalidEventError):
        repo.add_event(event)
    assert log_fingerprint(lake) == before


# -- get_state: checkpoints, clamping, immutability ----------------------------------------


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """init + 500 events: every action type and domain events over six partitions."""
    root = tmp_path_factory.mktemp("repo") / "lake"
    lake = el.Lake.open(root)
    el.Repository(lake).init({"title": "doc"})
    generator = Generator(42, [f"w{k}" for k in range(6)])
    events = generator.events(500)
    for start in range(0, 500, 125):
        lake.append(events[start:start + 125])
    written = [{"type": "init", "payload": {"value": {"title": "doc"}}}, *events]
    kinds = {e["type"] for e in written}
    assert kinds >= {"init", "set", "unset", "treePush", "treeDelete", "treeUpdate", "treeMove",
                     "deposit"}
    return root, written


@pytest.mark.parametrize("interval", [50, 7])
def test_get_state_at_every_index_equals_a_replay(big_log, interval):
    root, written = big_log
    expected = prefix_states(written)
    total = len(written)
    repo = el.Repository(el.Lake.open(root), checkpoint_interval=interval)
    repo.init({"ignored": True})
    assert len(repo.get_events()) == total
    for index in range(total + 1):
        assert repo.get_state(index) == expected[index], index
    assert repo.get_state() == expected[total]
    for index in (-1, -100):
        assert repo.get_state(index) == {}
    for index in (total + 1, total + 1000):
        assert repo.get_state(index) == expected[total]


def test_mutating_returned_states_changes_nothing(big_log):
    root, written = big_log
    expected = prefix_states(written)
    repo = el.Repository(el.Lake.open(root))
    repo.init()
    for index in (None, 50, 100, 123, len(written)):
        state = repo.get_state(index)
        state["title"] = "hacked"
        for value in state.values():
            if isinstance(value, dict):
                value.clear()
    for index in (0, 1, 49, 50, 51, 100, 123, 250, len(written)):
        assert repo.get_state(index) == expected[index]
    assert repo.get_state() == expected[-1]


# -- partition state -----------------------------------------------------------------------


@pytest.fixture
def wide_lake(lake):
    """200 partitions, each with its own valid history (documents are per partition)."""
    partitions = [f"p{k:03d}" for k in range(200)]
    generator = Generator(9, partitions, namespaced=False)
    events = generator.events(2400)
    lake.append(events[:1200])
    lake.append(events[1200:])
    return lake, events, generator


def record_scans(monkeypatch) -> list[tuple[str, tuple[str, ...]]]:
    calls: list[tuple[str, tuple[str, ...]]] = []
    original = Snapshot.scan

    def spy(self, plan, **kwargs):
        calls.append((self.name, tuple(plan.files)))
        return original(self, plan, **kwargs)

    monkeypatch.setattr(Snapshot, "scan", spy)
    return calls


def test_partition_state_folds_only_that_partition(wide_lake, lake_path, monkeypatch):
    lake, events, _ = wide_lake
    repo = el.Repository(lake)
    chosen = ["p000", "p007", "p123", "p199"]
    held = file_rows(lake_path)
    for part in chosen:
        calls = record_scans(monkeypatch)
        state = repo.get_partition_state(part)
        monkeypatch.undo()
        assert state == fold([e for e in events if e["partition"] == part])
        read = [f for name, files in calls if name == "events" for f in files]
        assert read, "the partition's events were not read from the log"
        # Only files that can hold the partition: its folder's, or its bucket's and the tail's.
        assert all(may_hold(f, held[f], part, lake.layout) for f in read), read
        assert {name for name, _ in calls} <= {"events", "views/document"}
    assert repo.get_partition_state("never-written") == {}


def test_partition_state_after_materialize_reads_the_row_and_the_lag(wide_lake, lake_path,
                                                                     monkeypatch):
    lake, events, generator = wide_lake
    lake.materialize()
    watermark = lake.last_seq()
    more = generator.events(600)
    lake.append(more)
    everything = events + more
    repo = el.Repository(lake)
    held = file_rows(lake_path)
    for part in ["p001", "p042", "p150", "p198"]:
        calls = record_scans(monkeypatch)
        state = repo.get_partition_state(part)
        monkeypatch.undo()
        assert state == fold([e for e in everything if e["partition"] == part])
        read = [f for name, files in calls if name == "events" for f in files]
        # Only files that can hold the partition: its folder's, or its bucket's and the tail's.
        assert all(may_hold(f, held[f], part, lake.layout) for f in read), read
        if any(e["partition"] == part for e in more):
            assert read, "the events after the view's watermark were not folded"
        # only files holding events newer than the view row: the lag, not the history
        for file in read:
            assert max(pq.read_table(file, columns=["seq"]).column("seq").to_pylist()) > watermark
        view_files = [f for name, files in calls if name == "views/document" for f in files]
        assert view_files, "the materialized row was not used"
        assert len({Path(f).parent for f in view_files}) == 1  # one bucket of the view


# -- sharing the lake: other processes, other writers --------------------------------------

REOPEN = """
import json, sys
import eventlake as el
repo = el.Repository(el.Lake.open(sys.argv[1]))
repo.init({"ignored": True})
print(json.dumps({"state": repo.get_state(), "events": len(repo.get_events())}))
"""


def test_repository_reopened_in_a_new_process_has_the_same_state(big_log):
    root, written = big_log
    repo = el.Repository(el.Lake.open(root))
    repo.init()
    done = subprocess.run([sys.executable, "-c", REOPEN, str(root)], capture_output=True,
                          text=True, timeout=JOIN_TIMEOUT, check=True)
    other = json.loads(done.stdout)
    assert other["state"] == repo.get_state() == prefix_states(written)[-1]
    assert other["events"] == len(written)
    assert el.Lake.open(root).last_seq() == len(written)  # the second init wrote nothing


def test_repository_catches_up_with_other_writers_in_seq_order(lake, lake_path):
    mine = el.Repository(lake)
    mine.init({"count": 0})
    theirs = el.Repository(el.Lake.open(lake_path))
    theirs.init()
    theirs.add_event({"type": "set", "payload": {"target": "files", "value": {}}})
    el.Lake.open(lake_path).append([
        {"type": "set", "payload": {"target": "count", "value": 1}, "partition": "x"},
        {"type": "treePush", "payload": {"target": "files", "value": {"id": "a"}},
         "partition": "x"},
    ])
    assert mine.get_state() == {"count": 1, "files": {"tree": [{"id": "a", "children": []}],
                                                      "items": {"a": {}}}}
    mine.add_event({"type": "treePush", "payload": {"target": "files", "value": {"id": "b"},
                                                    "options": {"parent": "a"}}})
    theirs.add_event({"type": "set", "payload": {"target": "count", "value": 2}})
    expected = fold(stored_events(lake))
    assert mine.get_state() == theirs.get_state() == expected
    assert [e["seq"] for e in mine.get_events()] == [1, 2, 3, 4, 5, 6]
    assert mine.get_state(4)["files"]["tree"][0]["children"] == []


def test_a_race_lost_between_check_and_commit_is_rechecked(lake, lake_path, monkeypatch):
    mine = el.Repository(lake)
    mine.init({"files": {"tree": [], "items": {}}})
    other = el.Lake.open(lake_path)
    real_append = lake.log.append
    # what another writer commits just before my next commit (once)
    interleave: list[list[dict]] = []

    def racing_append(batch, **kwargs):
        if interleave and kwargs.get("expected_last_seq") is not None:
            other.append(interleave.pop(0))
        return real_append(batch, **kwargs)

    monkeypatch.setattr(lake.log, "append", racing_append)
    # harmless: my event still applies after it, and lands after it
    interleave.append([{"type": "deposit", "payload": {"n": 1}, "partition": "z"}])
    mine.add_event({"type": "treePush", "payload": {"target": "files", "value": {"id": "n1"}}})
    assert [e["type"] for e in stored_events(lake)] == ["init", "deposit", "treePush"]
    # fatal: replaces the tree my treeUpdate targets with a scalar
    interleave.append([{"type": "set", "payload": {"target": "files", "value": 0,
                                                   "options": {"replace": True}},
                        "partition": "z"}])
    before = log_fingerprint(lake)
    with pytest.raises(el.InvalidEventError):
        mine.add_event({"type": "treeUpdate", "payload": {
            "target": "files", "value": {"name": "x"}, "options": {"id": "n1"}}})
    after = stored_events(lake)
    assert [e["type"] for e in after] == ["init", "deposit", "treePush", "set"]
    assert log_fingerprint(lake)[0] == before[0] + 1  # only the other writer's event
    assert mine.get_state() == fold(after) == {"files": 0}


def test_add_event_gives_up_with_a_transient_error_when_always_outrun(lake, lake_path,
                                                                        monkeypatch):
    import eventlake.repository as repository

    mine = el.Repository(lake)
    mine.init()
    other = el.Lake.open(lake_path)
    real_append = lake.log.append

    def always_outrun(batch, **kwargs):
        other.append([{"type": "deposit", "payload": {}, "partition": "z"}])
        return real_append(batch, **kwargs)

    monkeypatch.setattr(lake.log, "append", always_outrun)
    monkeypatch.setattr(repository, "_WRITE_ATTEMPTS", 3)
    started = time.monotonic()
    with pytest.raises(el.CommitConflictError) as info:
        mine.add_event({"type": "deposit", "payload": {"mine": True}})
    assert info.value.transient
    assert time.monotonic() - started < 10
    assert all(not e["payload"].get("mine") for e in stored_events(lake))


# -- bad arguments, the "" partition, deep partitions ----------------------------------------


@pytest.mark.parametrize(("call", "argument", "value"), [
    (lambda repo, v: repo.get_partition_state(v), "partition", 5),
    (lambda repo, v: repo.get_partition_state(v), "partition", None),
    (lambda repo, v: repo.get_partition_state(v), "partition", ["p"]),
    (lambda repo, v: repo.get_events(partition=v), "partition", 5),
    (lambda repo, v: repo.get_events(partition=v), "partition", b"p"),
    (lambda repo, v: repo.get_state(until_event_index=v), "until_event_index", "3"),
    (lambda repo, v: repo.get_state(v), "until_event_index", 3.0),
    (lambda repo, v: repo.get_state(v), "until_event_index", True),
], ids=["state-int", "state-none", "state-list", "events-int", "events-bytes", "index-str",
        "index-float", "index-bool"])
def test_bad_arguments_get_a_clear_error_naming_them(lake, call, argument, value):
    repo = el.Repository(lake)
    repo.init({"a": 1})
    with pytest.raises(el.InvalidEventError) as info:
        call(repo, value)
    assert info.value.field == argument
    assert argument in str(info.value) and type(value).__name__ in str(info.value)
    assert info.value.expected and info.value.expected in str(info.value)


@pytest.mark.parametrize("default", [None, "inbox"])
def test_the_empty_partition_is_the_default_partition_on_every_side(lake, default):
    repo = (el.Repository(lake) if default is None
            else el.Repository(lake, default_partition=default))
    name = default or el.repository.DEFAULT_PARTITION
    repo.init()
    events = [
        {"type": "set", "payload": {"target": "a", "value": 1}, "partition": ""},
        {"type": "set", "payload": {"target": "b", "value": 2}},
        {"type": "set", "payload": {"target": "c", "value": 3}, "partition": None},
        {"type": "set", "payload": {"target": "d", "value": 4}, "partition": "other"},
    ]
    for event in events:
        repo.add_event(event)
    mine = repo.get_events(partition="")
    assert [e["payload"]["target"] for e in mine] == ["a", "b", "c"]
    assert {e["partition"] for e in mine} == {name}
    assert repo.get_events(partition=name) == mine
    assert repo.get_partition_state("") == repo.get_partition_state(name) == fold(events[:3])
    assert len(repo.get_events(partition=None)) == 4


@pytest.mark.parametrize("partition", [0, False, 5, ["p"]])
def test_a_partition_that_is_no_name_is_refused_not_defaulted(lake, partition):
    repo = el.Repository(lake)
    repo.init()
    before = log_fingerprint(lake)
    with pytest.raises(el.InvalidEventError) as info:
        repo.add_event({"type": "set", "payload": {"target": "a", "value": 1},
                        "partition": partition})
    assert info.value.field == "partition"
    assert log_fingerprint(lake) == before


DEEP = 2_500  # well past Python's recursion limit (1,000 frames)


# Depth is the fold's and the view store's business, not the log layout's: one layout.
@pytest.mark.one_layout
def test_add_event_and_get_state_on_a_partition_thousands_of_levels_deep(lake):
    ids = [f"n{i}" for i in range(DEEP)]
    pushes = [{"type": "set", "payload": {"target": "lib", "value": {"tree": [], "items": {}}},
               "partition": "deep"}]
    parent = "_root"
    for node_id in ids:
        pushes.append({"type": "treePush", "partition": "deep", "payload": {
            "target": "lib", "value": {"id": node_id}, "options": {"parent": parent}}})
        parent = node_id
    lake.append([*pushes, {"type": "set", "payload": {"target": "x", "value": 1},
                           "partition": "shallow"}])
    repo = el.Repository(lake)
    repo.init()  # replays the whole chain
    expected = {"lib": {"tree": chain(ids), "items": {key: {} for key in ids}}, "x": 1}
    assert tokens(repo.get_state()) == tokens(expected)

    bottom = ids[-1]
    repo.add_event({"type": "treePush", "partition": "deep", "payload": {
        "target": "lib", "value": {"id": "leaf", "n": 1}, "options": {"parent": bottom}}})
    repo.add_event({"type": "treeUpdate", "partition": "deep", "payload": {
        "target": "lib", "value": {"w": 2}, "options": {"id": bottom}}})
    repo.add_event({"type": "treeMove", "partition": "deep", "payload": {
        "target": "lib", "options": {"id": ids[DEEP // 2], "parent": "_root",
                                     "position": "last"}}})
    repo.add_event({"type": "treeDelete", "partition": "deep", "payload": {
        "target": "lib", "options": {"id": ids[10]}}})
    with pytest.raises(el.InvalidEventError):  # refused by the deep state, nothing written
        repo.add_event({"type": "treePush", "partition": "deep", "payload": {
            "target": "lib.tree.0.children.0.nope", "value": {"id": "z"}}})

    # The moved half keeps its subtree, with the new leaf at its bottom; the delete cut the
    # rest of the chain below n9.
    tail = chain([*ids[DEEP // 2:], "leaf"])[0]
    items = {node_id: {} for node_id in ids[:10] + ids[DEEP // 2:]}
    items[bottom] = {"w": 2}
    items["leaf"] = {"n": 1}
    after = {"lib": {"tree": [*chain(ids[:10]), tail], "items": items}, "x": 1}
    state = repo.get_state()
    assert tokens(state) == tokens(after)
    # A private copy: scribbling over it changes nothing the repository holds.
    state["lib"]["tree"].clear()
    assert tokens(repo.get_state()) == tokens(after)
    # Checkpoints hold deep states too: an index before the new events replays from one.
    assert tokens(repo.get_state(DEEP + 2)) == tokens(expected)
    assert tokens(el.Repository(lake).get_state()) == tokens(after)
