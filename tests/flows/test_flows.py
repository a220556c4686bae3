"""The Prefect flows (flows/): wiring, exactly-once under retries, schedules, Dask, the CLI.

All flow runs share ONE temporary Prefect server (`prefect_harness`, session scoped); the
library logic behind them is tested without Prefect in test_inbox.py and test_maintenance.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_USAGE, main
from eventlake.config import load_views
from eventlake.errors import CommitConflictError, EventlakeError, InvalidEventError
from eventlake.flows.settings import (
    is_transient,
    make_task_runner,
    resolve_inbox,
    retry_if_transient,
)
from eventlake.ingest.inbox import inbox_files, ingest_files, read_quarantine
from eventlake.store.viewstore import ViewStore, logical_columns
from tests.engine.test_materialize import assert_views_exact
from tests.samples import REPO, SAMPLE_FILES, SAMPLES

SAMPLE_EVENTS = 1778

VIEWS_MODULE = '''
from eventlake.views import Agg, AggregateView, ReducerView


def _balance(state, event):
    payload = event["payload"]
    amount = payload.get("amount") if isinstance(payload, dict) else None
    if not isinstance(amount, int):
        return state
    sign = {"deposit": 1, "withdrawal": -1}.get(event["type"], 0)
    return {"balance": state["balance"] + sign * amount, "n": state["n"] + (sign != 0)}


BALANCES = ReducerView(name="balances", version=1,
                       initial_state=lambda: {"balance": 0, "n": 0}, reduce=_balance)
TOTALS = AggregateView(name="totals", version=1, group_by=["type"],
                       aggregates={"n": "count", "total": Agg("sum", "amount"),
                                   "last": Agg("last", "amount")})
VIEWS = [BALANCES, TOTALS]
'''


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def views_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("views") / "sample_views.py"
    path.write_text(VIEWS_MODULE, encoding="utf-8")
    return path


def copy_inbox(folder: Path, files=SAMPLE_FILES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copy(path, folder / path.name)
    return folder


def library_lake(root: Path, inbox: Path, views_file: Path, *, materialize: bool = True):
    """The same work done with the library directly: the reference the flows must match."""
    lake = el.Lake.open(root, views=load_views(str(views_file)))
    ingest_files(lake, inbox_files(inbox), quarantine_dir=root / "quarantine")
    if materialize:
        lake.materialize()
    return lake


def view_rows(lake, name: str) -> pl.DataFrame:
    view = lake.view(name)
    keys = ["partition_id", *getattr(view, "group_columns", ())]
    frame = lake.scan(name).collect()
    return frame.drop("updated_at").sort(keys, nulls_last=True)


def assert_same_lakes(got, want) -> None:
    """Same events (minus ingest-time columns) and same view rows (minus updated_at)."""
    ingest_time = ["ts", "ingested_at"]
    assert got.events().collect().drop(ingest_time).equals(
        want.events().collect().drop(ingest_time))
    assert set(got.views) == set(want.views)
    for name in want.views:
        assert view_rows(got, name).equals(view_rows(want, name)), name


# -- the pipeline ------------------------------------------------------------------------------


def test_pipeline_equals_the_library_and_lands_each_file_once(prefect_harness, tmp_path,
                                                              views_file):
    from eventlake.flows.pipeline import ARTIFACT_KEY, pipeline_flow

    inbox = copy_inbox(tmp_path / "inbox")
    root = tmp_path / "lake"
    summary = pipeline_flow(inbox=str(inbox), lake=str(root), views=str(views_file))
    assert (summary.files, summary.batches, summary.duplicates) == (4, 4, 0)
    assert summary.events == summary.records == SAMPLE_EVENTS
    assert (summary.quarantined, summary.unreadable) == (0, 0)
    assert summary.views == {"document": SAMPLE_EVENTS, "balances": SAMPLE_EVENTS,
                             "totals": SAMPLE_EVENTS}
    assert summary.last_seq == SAMPLE_EVENTS and summary.lag == {
        "document": 0, "balances": 0, "totals": 0}
    lake = el.Lake.open(root, views=load_views(str(views_file)))
    reference = library_lake(tmp_path / "reference", inbox, views_file)
    assert_same_lakes(lake, reference)
    assert_views_exact(lake)

    again = pipeline_flow(inbox=str(inbox), lake=str(root), views=str(views_file))
    assert (again.batches, again.duplicates, again.events) == (0, 4, 0)
    assert again.views == {"document": 0, "balances": 0, "totals": 0}
    assert lake.last_seq() == SAMPLE_EVENTS

    extra = inbox / "05-late.jsonl"
    extra.write_text("\n".join(json.dumps(
        {"type": "deposit", "payload": {"amount": 10 * i, "currency": "EUR"},
         "partition": "acct-001"}) for i in range(1, 4)) + "\n", encoding="utf-8")
    third = pipeline_flow(inbox=str(inbox), lake=str(root), views=str(views_file))
    assert (third.batches, third.duplicates, third.events) == (1, 4, 3)
    assert third.views["balances"] == 3 and third.max_lag == 0
    ingest_files(reference, [extra])
    reference.materialize()
    assert_same_lakes(lake, reference)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
    assert len(artifacts) >= 3 and artifacts[0].type == "table"
    assert "events ingested" in json.dumps(artifacts[0].data)
    for artifact in artifacts:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        rows = {row["metric"]: row["value"] for row in data}
        assert rows["freshness: balances"].startswith("current, watermark "), rows
    assert [v["view"] for v in third.freshness] == ["document", "balances", "totals"]
    assert all(v["lag_events"] == 0 and v["last_refresh_at"] for v in third.freshness)


POISONED_MODULE = '''
from eventlake.views import ReducerView


def _count(state, event):
    if event["partition"] == "acct-001":
        raise RuntimeError("poisoned partition")
    return {"n": state["n"] + 1}


VIEWS = [ReducerView(name="counts", version=1, initial_state=lambda: {"n": 0}, reduce=_count)]
'''


def test_the_summary_names_partitions_that_failed(prefect_harness, tmp_path):
    from eventlake.flows.pipeline import pipeline_flow

    module = tmp_path / "poisoned_views.py"
    module.write_text(POISONED_MODULE, encoding="utf-8")
    summary = pipeline_flow(inbox=str(copy_inbox(tmp_path / "inbox")),
                            lake=str(tmp_path / "lake"), views=str(module))
    assert summary.failed == {"document": 0, "counts": 1}
    rows = {row["metric"]: row["value"] for row in summary.table()}
    assert rows["partitions failed this run"] == "counts (1)"
    # Every other partition folded on: the view is current but for the poisoned one.
    lake = el.Lake.open(tmp_path / "lake", views=load_views(str(module)))
    assert [f.partition for f in lake.failed_partitions("counts")] == ["acct-001"]
    assert summary.lag["counts"] == 0


def test_bad_records_and_unreadable_files_are_quarantined(prefect_harness, tmp_path):
    from eventlake.flows.ingest import ingest_flow

    inbox = copy_inbox(tmp_path / "inbox", [SAMPLES / "02-accounts.csv"])
    lines = [json.dumps({"type": "deposit", "payload": {"amount": 1}, "partition": "a"}),
             json.dumps({"type": "deposit", "payload": "[1]", "partition": "b"}),
             "{oops",
             json.dumps({"type": "", "payload": {}, "partition": "c"}),
             json.dumps({"type": "deposit", "payload": {"amount": 2}, "partition": "d"})]
    (inbox / "01-orders.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (inbox / "00-blob.parquet").write_bytes(b"definitely not parquet")
    root = tmp_path / "lake"
    totals = ingest_flow(inbox=str(inbox), lake=str(root))
    assert (totals.files, totals.batches, totals.unreadable) == (3, 3, 1)
    assert totals.records == 5 + 500
    assert (totals.events, totals.quarantined) == (2 + 500, 3)
    assert totals.events + totals.quarantined == totals.records
    entries = read_quarantine(root / "quarantine")
    whole, *bad = entries
    assert whole["line"] is None and "Parquet" in whole["reason"]
    assert [e["line"] for e in bad] == [2, 3, 4] and all(e["reason"] for e in bad)
    assert el.Lake.open(root).last_seq() == 502


def test_a_file_lands_in_chunks_and_a_changed_file_is_refused_not_doubled(prefect_harness,
                                                                           tmp_path):
    from eventlake.flows.ingest import ingest_flow

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "orders.jsonl"
    lines = [json.dumps({"type": "deposit", "payload": {"i": i}, "partition": f"p{i % 3}"})
             for i in range(25)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = tmp_path / "lake"
    totals = ingest_flow(inbox=str(inbox), lake=str(root), chunk_events=10)
    assert (totals.files, totals.batches, totals.events, totals.refused) == (1, 1, 25, 0)
    batches = set(el.Lake.open(root).events().collect()["batch_id"])
    assert len(batches) == 3  # two chunks of 10 and the last, under the file's identity
    path.write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    again = ingest_flow(inbox=str(inbox), lake=str(root), chunk_events=10)
    assert (again.batches, again.events, again.refused) == (0, 0, 1)
    assert el.Lake.open(root).last_seq() == 25


def test_prepare_tasks_use_every_worker_and_land_as_one_task_per_file(prefect_harness,
                                                                     tmp_path, monkeypatch):
    """`prepare_tasks=True`: 100 inbox files read and checked on the flow's 3 task threads,
    each thread prepared some, and the log and quarantine equal one task per file."""
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from eventlake.flows.ingest import ingest_inbox

    monkeypatch.setenv("EVENTLAKE_FLOW_WORKERS", "3")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for n in range(100):
        lines = [json.dumps({"type": "deposit", "payload": {"n": n, "i": i},
                             "partition": f"p{(n + i) % 7}"}) for i in range(30)]
        lines[n % 30] = "{oops"
        (inbox / f"f{n:03d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def prepared(root: str, prepare: bool):
        return ingest_inbox(root, str(inbox), quarantine_dir=f"{root}-quarantine",
                            chunk_events=8, prepare_tasks=prepare)

    results = prepared(str(tmp_path / "lake"), True)
    serial = prepared(str(tmp_path / "serial"), False)
    assert len({r.prepared_by for r in results}) == 3
    assert [r.first_seq for r in results] == [r.first_seq for r in serial]
    ingest_time = ["ts", "ingested_at"]
    assert el.Lake.open(tmp_path / "lake").events().collect().drop(ingest_time).equals(
        el.Lake.open(tmp_path / "serial").events().collect().drop(ingest_time))
    got = [{**e, "file": None} for e in read_quarantine(f"{tmp_path / 'lake'}-quarantine")]
    want = [{**e, "file": None} for e in read_quarantine(f"{tmp_path / 'serial'}-quarantine")]
    assert got == want and len(got) == 100
    assert not (tmp_path / "lake" / "_staging").exists()


def test_pipeline_with_prepare_tasks_equals_the_library(prefect_harness, tmp_path,
                                                        views_file):
    from eventlake.flows.pipeline import pipeline_flow

    inbox = copy_inbox(tmp_path / "inbox")
    root = tmp_path / "lake"
    summary = pipeline_flow(inbox=str(inbox), lake=str(root), views=str(views_file),
                            prepare_tasks=True)
    assert (summary.files, summary.batches, summary.events) == (4, 4, SAMPLE_EVENTS)
    lake = el.Lake.open(root, views=load_views(str(views_file)))
    assert_same_lakes(lake, library_lake(tmp_path / "reference", inbox, views_file))
    again = pipeline_flow(inbox=str(inbox), lake=str(root), views=str(views_file),
                          prepare_tasks=True)
    assert (again.batches, again.duplicates, again.events) == (0, 4, 0)


# -- retries: transient only, and never twice ----------------------------------------------


class _Appends(list):
    original: Any = None


def lose_first_append(monkeypatch) -> _Appends:
    """`EventLog.append` loses its first commit race (injected); the calls are counted in
    the list returned, which holds the real append as `original`."""
    from eventlake.store.log import EventLog

    appends = _Appends()
    appends.original = original = EventLog.append

    def flaky_append(self, *args, **kwargs):
        appends.append(1)
        if len(appends) == 1:
            raise CommitConflictError("lost the commit race (injected)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EventLog, "append", flaky_append)
    return appends


def test_transient_failures_retry_and_land_exactly_once(prefect_harness, tmp_path, views_file,
                                                        monkeypatch):
    from eventlake.flows.ingest import ingest_flow
    from eventlake.flows.materialize import materialize_flow
    from eventlake.store.log import EventLog

    inbox = copy_inbox(tmp_path / "inbox", SAMPLE_FILES[:2])
    root = tmp_path / "lake"
    appends = lose_first_append(monkeypatch)
    totals = ingest_flow(inbox=str(inbox), lake=str(root), views=str(views_file))
    assert len(appends) == 3 and totals.events == 578 + 500
    monkeypatch.setattr(EventLog, "append", appends.original)

    # Views built once, then more events; the refresh commits and *then* fails once (the
    # acknowledgement is lost): the retry must not fold the same events twice.
    lake = el.Lake.open(root, views=load_views(str(views_file)))
    lake.materialize()
    ingest_files(lake, SAMPLE_FILES[2:])
    original_commit = ViewStore.commit_buckets
    commits = []

    def commit_then_fail(self, *args, **kwargs):
        original_commit(self, *args, **kwargs)
        commits.append(self.view.name)
        if commits.count(self.view.name) == 1:
            raise CommitConflictError("connection lost after commit (injected)")

    monkeypatch.setattr(ViewStore, "commit_buckets", commit_then_fail)
    results = materialize_flow(lake=str(root), views=str(views_file))
    assert set(commits) == {"document", "balances", "totals"}
    # Each view: the first attempt committed everything and failed; the retry found nothing.
    assert all(r["events"] == 0 for r in results.values())
    monkeypatch.setattr(ViewStore, "commit_buckets", original_commit)
    assert lake.last_seq() == SAMPLE_EVENTS
    events = lake.events().collect()
    assert events["event_id"].n_unique() == events.height == SAMPLE_EVENTS
    assert_views_exact(lake)
    assert_same_lakes(lake, library_lake(tmp_path / "reference", copy_inbox(
        tmp_path / "all"), views_file))


def test_prepare_tasks_landing_retries_a_transient_failure(prefect_harness, tmp_path,
                                                           monkeypatch):
    """With prepare tasks the flow lands the files itself: a commit race lost (injected, the
    first append) is retried as a task would be, and each file lands once."""
    from eventlake.flows.ingest import ingest_flow

    inbox = copy_inbox(tmp_path / "inbox", SAMPLE_FILES[:2])
    appends = lose_first_append(monkeypatch)
    totals = ingest_flow(inbox=str(inbox), lake=str(tmp_path / "lake"), prepare_tasks=True)
    assert len(appends) == 3 and totals.events == 578 + 500 and totals.batches == 2
    assert el.Lake.open(tmp_path / "lake").last_seq() == 578 + 500


def test_bad_input_is_not_retried(prefect_harness, tmp_path, monkeypatch):
    from eventlake.flows.ingest import ingest_flow
    from eventlake.ingest import inbox

    calls = []

    def invalid(*args, **kwargs):
        calls.append(1)
        raise InvalidEventError("bad record (injected)", field="type")

    monkeypatch.setattr(inbox, "ingest_file", invalid)
    folder = copy_inbox(tmp_path / "inbox", SAMPLE_FILES[:1])
    with pytest.raises(InvalidEventError, match="injected"):
        ingest_flow(inbox=str(folder), lake=str(tmp_path / "lake"))
    assert len(calls) == 1


def test_retry_policy():
    from deltalake.exceptions import CommitFailedError
    from prefect.states import Failed

    assert is_transient(CommitConflictError("race"))
    assert is_transient(CommitFailedError("version exists"))
    assert is_transient(OSError("connection reset")) and is_transient(TimeoutError())
    assert not is_transient(InvalidEventError("bad"))
    assert not is_transient(EventlakeError("terminal"))
    assert not is_transient(FileNotFoundError("gone")) and not is_transient(ValueError())
    assert not is_transient(el.LakeNotFoundError("no lake"))  # an OSError, but terminal
    assert retry_if_transient(None, None, Failed(data=CommitConflictError("x")))
    assert not retry_if_transient(None, None, Failed(data=InvalidEventError("x")))


# -- maintenance ----------------------------------------------------------------------------


def test_maintenance_flow_compacts_vacuums_and_keeps_views_exact(prefect_harness, tmp_path,
                                                                 views_file, make_events):
    from eventlake.flows.maintenance import maintenance_flow

    lake = el.Lake.open(tmp_path / "lake", views=load_views(str(views_file)))
    layout = lake.layout
    for seed in range(4):
        lake.append(make_events(30, partitions=3, seed=seed))
        if layout.kind == "buckets":
            # One file per bucket per batch, as one per partition on the partition_id layout.
            assert lake.log.compact_tail().files_removed == 1
    lake.materialize()
    late = make_events(5, partitions=3, seed=99)
    lake.append(late)  # not folded: left alone (a bucketed log sorts its tail file, once)
    before = lake.events().collect()
    report = maintenance_flow(lake=str(tmp_path / "lake"), views=str(views_file),
                              retention_hours=0)
    assert report["events"]["watermark"] == 120
    # Merged: each group's 4 folded files (partitions, or their buckets); on a bucketed log
    # also the late batch's tail file, sorted into its buckets.
    if layout.kind == "partition_id":
        groups, tail, tail_buckets, sorted_before = 3, 0, 0, 0
    else:
        groups = len(layout.buckets_for([f"acct-{k}" for k in range(3)]))
        tail, tail_buckets = 1, len(layout.buckets_for([e["partition"] for e in late]))
        sorted_before = 4  # the tail files sorted above
    assert report["events"]["files_removed"] == 4 * groups + tail
    assert report["events"]["files_added"] == groups + tail_buckets
    assert len(report["vacuumed"]["events"]) == 4 * groups + tail + sorted_before
    assert not report["dry_run"]
    assert report["checkpoints"][0] == "events"
    assert lake.events().collect().equals(before)
    lake.materialize()
    assert_views_exact(lake)


# -- task runners ---------------------------------------------------------------------------


@pytest.mark.integration
def test_dask_runner_gives_the_same_views_as_threads(prefect_harness, tmp_path, views_file):
    from eventlake.flows.materialize import materialize_flow

    inbox = copy_inbox(tmp_path / "inbox")
    threads = library_lake(tmp_path / "threads", inbox, views_file, materialize=False)
    dask = library_lake(tmp_path / "dask", inbox, views_file, materialize=False)
    materialize_flow(lake=threads.root, views=str(views_file))
    runner = make_task_runner("dask", workers=2)
    results = materialize_flow.with_options(task_runner=runner)(lake=dask.root,
                                                               views=str(views_file))
    assert {name: r["events"] for name, r in results.items()} == {
        "document": SAMPLE_EVENTS, "balances": SAMPLE_EVENTS, "totals": SAMPLE_EVENTS}
    for name in threads.views:
        assert view_rows(dask, name).equals(view_rows(threads, name)), name
    assert_views_exact(dask)


@pytest.mark.integration
def test_bucket_tasks_on_dask_retry_a_killed_worker(prefect_harness, tmp_path, views_file):
    """`bucket_tasks=True` maps each view's buckets over the Dask runner, the flow commits
    once per rebuild; a worker SIGKILLed after writing its files (before answering) costs a
    retry of its bucket task, and none of its files is referenced."""
    import distributed
    from prefect_dask import DaskTaskRunner

    from eventlake.flows.materialize import materialize_flow
    from tests.engine.test_buckettasks import _kill_after_writing

    inbox = copy_inbox(tmp_path / "inbox")
    want = library_lake(tmp_path / "threads", inbox, views_file)
    lake = library_lake(tmp_path / "dask", inbox, views_file, materialize=False)
    marker = str(tmp_path / "killed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        runner = DaskTaskRunner(address=cluster.scheduler_address)
        materialize_flow.with_options(task_runner=runner)(
            lake=lake.root, views=str(views_file), bucket_tasks=True)
        client.run(_kill_after_writing, marker)
        results = materialize_flow.with_options(task_runner=runner)(
            lake=lake.root, views=str(views_file), rebuild=True, bucket_tasks=True,
            names=["balances"])
    assert results["balances"]["rebuilt"] and results["balances"]["commits"] == 1
    killed = set(open(marker).read().split())
    assert killed
    referenced = set(ViewStore(lake.storage, lake.view("balances")).snapshot()
                     .add_actions().column("path").to_pylist())
    assert not killed & referenced
    for name in want.views:
        assert view_rows(lake, name).equals(view_rows(want, name)), name
    assert_views_exact(lake)


def test_task_runner_choice(monkeypatch):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    runner = make_task_runner("threads", workers=3)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3
    monkeypatch.setenv("EVENTLAKE_FLOW_WORKERS", "2")
    assert make_task_runner()._max_workers == 2
    local = make_task_runner("dask", workers=2)
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["n_workers"] == 2 and local.cluster_kwargs["processes"]
    remote = make_task_runner("dask", address="tcp://10.0.0.1:8786")
    assert remote.address == "tcp://10.0.0.1:8786"
    with pytest.raises(EventlakeError, match="unknown task runner"):
        make_task_runner("ray")  # type: ignore[arg-type]
    monkeypatch.setenv("EVENTLAKE_FLOW_WORKERS", "zero")
    with pytest.raises(EventlakeError, match="positive integer"):
        make_task_runner()


# -- deployments and schedules --------------------------------------------------------------


def test_deployment_schedules(tmp_path, views_file):
    from eventlake.flows.serve import DEFAULT_INTERVAL, DEFAULT_MAINTENANCE_CRON, deployments

    inbox = copy_inbox(tmp_path / "inbox", SAMPLE_FILES[:1])
    pipeline, upkeep = deployments(inbox=str(inbox), lake=str(tmp_path / "lake"),
                                   views=str(views_file))
    from eventlake.flows.serve import lake_key

    key = lake_key(str(tmp_path / "lake"))
    assert (pipeline.name, pipeline.flow_name) == (f"pipeline-{key}", "eventlake-pipeline")
    (every,) = pipeline.schedules
    assert every.schedule.interval == timedelta(seconds=DEFAULT_INTERVAL) == timedelta(minutes=1)
    assert pipeline.parameters == {"inbox": str(inbox), "lake": str(tmp_path / "lake"),
                                   "views": str(views_file)}
    assert (upkeep.name, upkeep.flow_name) == (f"maintenance-{key}", "eventlake-maintenance")
    (daily,) = upkeep.schedules
    assert daily.schedule.cron == DEFAULT_MAINTENANCE_CRON == "0 3 * * *"
    assert upkeep.parameters["retention_hours"] == 24
    # Recorded by module path, which loads from any folder and install (not a file path
    # relative to the serving process's folder).
    from prefect.flows import load_flow_from_entrypoint

    assert pipeline.entrypoint == "eventlake.flows.pipeline.pipeline_flow"
    assert upkeep.entrypoint == "eventlake.flows.maintenance.maintenance_flow"
    assert load_flow_from_entrypoint(upkeep.entrypoint).name == "eventlake-maintenance"
    custom, _ = deployments(inbox=str(inbox), lake=str(tmp_path / "lake"), interval=300,
                            maintenance_cron="30 1 * * 0")
    assert custom.schedules[0].schedule.interval == timedelta(minutes=5)


def test_serve_without_a_server_explains_what_to_do(monkeypatch, capsys, tmp_path):
    import eventlake.flows.serve

    monkeypatch.setattr(eventlake.flows.serve, "api_url", lambda: None)
    monkeypatch.setenv("EVENTLAKE_HOME", str(tmp_path))  # no server recorded there
    assert eventlake.flows.serve.main([]) == 1
    err = capsys.readouterr().err
    assert "prefect server start" in err and "PREFECT_API_URL" in err
    assert main(["serve", "--interval", "30"]) == EXIT_ERROR
    assert "prefect server start" in capsys.readouterr().err


# -- the command line -----------------------------------------------------------------------


def test_flow_commands_are_registered_and_check_their_options(tmp_path, capsys):
    assert main(["pipeline", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--inbox" in out and "--task-runner" in out and "--dask-address" in out
    assert main(["pipeline", "--task-runner", "ray"]) == EXIT_USAGE
    capsys.readouterr()
    assert main(["pipeline", "--workers", "0", "--lake", str(tmp_path)]) == EXIT_ERROR
    assert "--workers" in capsys.readouterr().err
    assert main(["pipeline", "--inbox", str(tmp_path / "nope")]) == EXIT_ERROR
    assert "is not a folder" in capsys.readouterr().err
    assert main(["serve", "--interval", "0"]) == EXIT_ERROR


def test_inbox_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("EVENTLAKE_INBOX", raising=False)
    assert resolve_inbox(cwd=REPO) == SAMPLES
    monkeypatch.setenv("EVENTLAKE_INBOX", str(tmp_path))
    assert resolve_inbox(cwd=REPO) == tmp_path.resolve()
    assert resolve_inbox("data/samples", cwd=REPO) == SAMPLES
    with pytest.raises(EventlakeError, match="sample inbox"):
        resolve_inbox(environ={}, cwd=tmp_path)


@pytest.mark.integration
def test_pipeline_command_runs_in_a_fresh_process(tmp_path):
    inbox = copy_inbox(tmp_path / "inbox")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(
        [sys.executable, "-m", "eventlake.cli", "pipeline", "--lake", str(tmp_path / "lake"),
         "--inbox", str(inbox)],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{SAMPLE_EVENTS:,} ingested" in done.stdout
    assert "4 new" in done.stdout and "lag by 0" in done.stdout
    assert 'eventlake sql "select partition_id, count(*) from events group by 1"' in done.stdout
    # Quiet: no tracebacks or Prefect log lines, only the one-line note about the server.
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr
    assert el.Lake.open(tmp_path / "lake", create=False).last_seq() == SAMPLE_EVENTS
    assert list(logical_columns(el.Lake.open(tmp_path / "lake").view("document")))
