"""Bucket tasks: a view's rebuild spread over executors gives exactly the sequential rows.

The executors are the real ones: thread pools, a spawn `ProcessPoolExecutor` and a Dask
`LocalCluster` of worker processes. A worker is killed with SIGKILL in the middle of a task
(after it wrote its files, before it answered): the task runs again and the files of the
killed attempt are never referenced.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

import eventlake as el
from eventlake.engine.buckettasks import Workers
from eventlake.engine.materialize import materialize_views
from eventlake.model.views import Agg, AggregateView, ReducerView
from eventlake.ops.doctor import doctor
from eventlake.store.viewstore import ViewStore
from tests.engine.test_materialize import assert_views_exact, streams


def _start() -> dict:
    return {"balance": 0, "n": 0}


def _balance(state, event):
    amount = event["payload"].get("amount", 0) if event["type"] in ("deposit",
                                                                    "withdrawal") else 0
    sign = -1 if event["type"] == "withdrawal" else 1
    return {"balance": state["balance"] + sign * amount, "n": state["n"] + 1}


# Top-level functions: a worker process unpickles the view by importing this module.
BALANCES = ReducerView(name="balances", version=1, initial_state=_start, reduce=_balance)
TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "total": Agg("sum", "amount"),
                                   "last_ref": Agg("last", "ref")})
VIEWS = [BALANCES, TOTALS]


def _rows(lake: el.Lake) -> dict[str, pl.DataFrame]:
    out = {}
    for name, view in lake.views.items():
        keys = ["partition_id", *getattr(view, "group_columns", ())]
        out[name] = lake.scan(name).collect().drop("updated_at").sort(keys, nulls_last=True)
    return out


def _watermarks(lake: el.Lake) -> dict[str, int]:
    return {name: ViewStore(lake.storage, view).watermark() for name, view in lake.views.items()}


def _workers(lake: el.Lake, executor) -> Workers:
    opener = partial(el.Lake.open, lake.root, create=False,
                     storage_options=lake.storage.options)
    return Workers(executor, opener, min_events=0)


def _same(got: dict[str, pl.DataFrame], want: dict[str, pl.DataFrame], name: str) -> None:
    for view in want:
        assert got[view].equals(want[view]), (name, view, got[view], want[view])


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def spawn_pool():
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.mark.integration
def test_rebuild_on_any_executor_equals_the_sequential_one(tmp_path, dask_client, spawn_pool):
    examples = iter(range(10**6))
    threads_1, threads_4 = ThreadPoolExecutor(1), ThreadPoolExecutor(4)
    executors = {"threads-1": threads_1, "threads-4": threads_4, "processes-2": spawn_pool,
                 "dask-2": dask_client.get_executor()}

    @settings(max_examples=6, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(batches=streams())
    def check(batches):
        example = next(examples)
        lake = el.Lake.open(tmp_path / f"lake{example}", views=VIEWS)
        spread = {name: el.Lake.open(tmp_path / f"lake{example}-{name}", views=VIEWS)
                  for name in executors}
        for number, (batch, refresh) in enumerate(batches):
            for target in (lake, *spread.values()):
                target.append(batch, producer="gen", batch_no=number)
            if refresh:
                lake.materialize(chunk_events=9)
                # Refresh steps as bucket tasks too, however small the step.
                for name, other in spread.items():
                    materialize_views(other, list(other.views.values()), chunk_events=9,
                                      workers=_workers(other, executors[name]))
        lake.materialize()
        want, marks = _rows(lake), _watermarks(lake)
        for name, other in spread.items():
            materialize_views(other, list(other.views.values()),
                              workers=_workers(other, executors[name]))
            assert _watermarks(other) == marks, name
            _same(_rows(other), want, name)
            results = other.materialize(rebuild=True, executor=executors[name],
                                        chunk_events=20)
            assert all(r.rebuilt for r in results.values()), name
            assert _watermarks(other) == marks, name
            _same(_rows(other), want, name)
        assert_views_exact(lake)

    try:
        check()
    finally:
        threads_1.shutdown()
        threads_4.shutdown()


def _kill_after_writing(marker: str) -> None:
    """On a worker: the first bucket task to write its files dies right after (SIGKILL), as
    if its machine went away before it answered."""
    from eventlake.store.viewstore import ViewStore

    write = ViewStore.write_buckets

    def write_then_die(self, *args, **kwargs):
        files = write(self, *args, **kwargs)
        try:
            descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return files
        os.write(descriptor, "\n".join(f.action.path for f in files).encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)
        return files

    ViewStore.write_buckets = write_then_die  # type: ignore[method-assign]


@pytest.mark.integration
def test_a_worker_killed_mid_rebuild_is_retried_and_its_files_never_referenced(tmp_path):
    distributed = pytest.importorskip("distributed")
    lake = el.Lake.open(tmp_path / "lake", views=VIEWS)
    for number in range(6):
        lake.append([{"type": "deposit", "payload": {"amount": i, "ref": i},
                      "partition": f"acct-{(number * 37 + i) % 40}"} for i in range(50)])
    lake.materialize()
    marker = str(tmp_path / "killed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        client.run(_kill_after_writing, marker)
        result = lake.materialize(["balances"], rebuild=True, executor=client.get_executor())
    assert result["balances"].rebuilt
    assert os.path.exists(marker)  # a worker did die with files written
    killed = set(open(marker).read().split())
    assert killed
    store = ViewStore(lake.storage, BALANCES)
    referenced = set(store.snapshot().add_actions().column("path").to_pylist())
    assert not killed & referenced
    assert_views_exact(lake, ["balances"])
    # The killed attempt's files are orphans, which doctor --fix deletes.
    report = doctor(lake, fix=True, min_age_seconds=0)
    assert report.ok
    assert killed <= {p.path.split("views/balances/", 1)[1] for p in report.orphans}
    assert not any(os.path.exists(lake.storage.local_path("views/balances", path))
                   for path in killed)


def test_bucket_tasks_on_each_backend(backend, spawn_pool):
    """Workers need only the lake's URI and storage options: on S3 too, spawned processes
    rebuild and refresh to the rows of one process."""
    lake = backend.open(views=VIEWS)
    alone = el.Lake.open(backend.folder / "alone", views=VIEWS)
    for number in range(4):
        batch = [{"type": "deposit" if i % 3 else "withdrawal",
                  "payload": {"amount": i + number, "ref": i},
                  "partition": f"acct-{(number * 7 + i) % 23}"} for i in range(30)]
        for target in (lake, alone):
            target.append(batch, producer="gen", batch_no=number)
        alone.materialize()
        materialize_views(lake, list(lake.views.values()),
                          workers=_workers(lake, spawn_pool))
    _same(_rows(lake), _rows(alone), backend.name)
    assert _watermarks(lake) == _watermarks(alone)
    lake.materialize(rebuild=True, executor=spawn_pool)
    _same(_rows(lake), _rows(alone), backend.name)
    assert _watermarks(lake) == _watermarks(alone)


def _rates_start() -> dict:
    return {"n": 0, "sum": 0}


def _rates(state, event):
    # Down while the variable is set (read in the worker: a spawned one inherits it).
    if event["payload"].get("poison") and os.environ.get("EVENTLAKE_TEST_RATES_DOWN"):
        raise ConnectionError("the rates service did not answer")
    if event["payload"].get("broken"):
        raise ZeroDivisionError("a bug no retry fixes")
    return {"n": state["n"] + 1, "sum": state["sum"] + event["payload"]["amount"]}


RATES = ReducerView(name="rates", version=1, initial_state=_rates_start, reduce=_rates)


@pytest.mark.one_layout
@pytest.mark.parametrize("runner", ["threads", "spawn"])
def test_retry_failed_on_bucket_tasks_equals_the_sequential_retry(tmp_path, monkeypatch,
                                                                  runner):
    """`retry_failed` with an executor folds the failed partitions in bucket tasks, one
    commit: the rows, the recovered and the failed-again partitions are the serial retry's,
    and equal a fold from scratch."""
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("EVENTLAKE_TEST_RATES_DOWN", "1")
    partitions = [f"p-{i:03d}" for i in range(60)]
    lakes = {}
    for name in ("serial", "tasks"):
        lake = el.Lake.open(tmp_path / name, views=[RATES])
        lake.append([{"type": "deposit", "payload": {"amount": 1 + i % 5}, "partition": p}
                     for i, p in enumerate(partitions)])
        lake.append([{"type": "deposit", "payload": {"amount": 0, "poison": True},
                      "partition": p} for p in partitions[::7]]
                    + [{"type": "deposit", "payload": {"amount": 0, "broken": True},
                        "partition": "p-005"}])
        lake.append([{"type": "deposit", "payload": {"amount": 2}, "partition": p}
                     for p in partitions])
        lake.materialize()
        assert len(lake.failed_partitions("rates")) == 10
        lakes[name] = lake
    monkeypatch.delenv("EVENTLAKE_TEST_RATES_DOWN")
    serial = lakes["serial"].materialize(retry_failed=True)["rates"]
    pool = ThreadPoolExecutor(2) if runner == "threads" else ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        spread = lakes["tasks"].materialize(retry_failed=True, executor=pool)["rates"]
    assert spread.recovered == serial.recovered == tuple(partitions[::7])
    assert spread.failed == serial.failed == ("p-005",)
    # Events read depend on how partitions are grouped (a group reads from its oldest stop).
    assert spread.events >= 10 and spread.commits == 1 and serial.commits > 1
    _same(_rows(lakes["tasks"]), _rows(lakes["serial"]), runner)
    assert [f.partition for f in lakes["tasks"].failed_partitions("rates")] == ["p-005"]
    assert_views_exact(lakes["tasks"])
