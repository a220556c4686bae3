"""The `eventlake` command line (eventlake/cli/) and its settings (eventlake/config.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import eventlake as el
from eventlake.cli import COMMANDS, EXIT_ERROR, EXIT_OK, EXIT_USAGE, build_parser, main
from eventlake.config import load_views, resolve_lake, resolve_views
from eventlake.errors import InvalidEventError, ViewDefinitionError
from eventlake.ingest.files import check_file

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
SAMPLE_FILES = sorted(p for p in SAMPLES.iterdir() if p.suffix in {".jsonl", ".csv", ".parquet"})
HEAVY = ["polars", "deltalake", "duckdb", "pyarrow", "rich", "prefect"]


def sample_counts() -> dict[str, int]:
    return {p.name: check_file(p).read for p in SAMPLE_FILES}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    assert code == EXIT_OK, err
    return json.loads(out)


def subprocess_cli(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run([sys.executable, "-m", "eventlake.cli", *argv], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    # The repo's own pyproject (or a developer's env) must not pick the lake in these tests.
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def samples_lake(tmp_path, capsys) -> Path:
    root = tmp_path / "lake"
    code, _, err = run(capsys, "ingest", str(SAMPLES), "--lake", str(root))
    assert code == EXIT_OK, err
    return root


# -- help and start-up -----------------------------------------------------------------------


@pytest.mark.integration
def test_help_in_a_subprocess_is_light():
    result = subprocess_cli("--help")
    assert result.returncode == 0
    for text in ("init", "ingest", "events", "info", "exit codes", "130", "EVENTLAKE_LAKE"):
        assert text in result.stdout
    probe = ("import sys, eventlake.cli as c; c.build_parser().format_help(); "
             f"print(any(m in sys.modules for m in {HEAVY!r}))")
    checked = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "False"


def test_commands_are_registered_in_order():
    build_parser()
    assert list(COMMANDS)[:4] == ["init", "ingest", "events", "info"]


def test_usage_errors_exit_2(capsys):
    assert run(capsys, "frobnicate")[0] == EXIT_USAGE
    assert run(capsys, "events", "--limit", "many")[0] == EXIT_USAGE
    assert run(capsys, "ingest")[0] == EXIT_USAGE
    code, _, err = run(capsys)
    assert code == EXIT_USAGE and "usage:" in err
    assert run(capsys, "--help")[0] == EXIT_OK
    assert run(capsys, "--version")[0] == EXIT_OK


# -- init ------------------------------------------------------------------------------------


def test_init_creates_and_is_idempotent(tmp_path, capsys):
    root = tmp_path / "new-lake"
    code, out, _ = run(capsys, "init", str(root))
    assert code == EXIT_OK
    assert f"created lake at {root}" in out
    assert el.Lake.open(root, create=False).last_seq() == 0
    code, out, _ = run(capsys, "init", str(root))
    assert code == EXIT_OK and "already exists" in out
    layout = el.Lake.open(root, create=False).layout
    assert run_json(capsys, "init", str(root)) == {"root": str(root), "created": False,
                                                   "layout": layout.kind,
                                                   "buckets": layout.buckets}


# -- ingest ----------------------------------------------------------------------------------


def test_ingest_samples_then_again_is_all_duplicates(tmp_path, capsys):
    root = tmp_path / "lake"
    counts = sample_counts()
    first = run_json(capsys, "ingest", *map(str, SAMPLE_FILES), "--lake", str(root))
    assert [Path(f["file"]).name for f in first["files"]] == list(counts)
    assert [f["events"] for f in first["files"]] == list(counts.values())
    assert [f["records"] for f in first["files"]] == list(counts.values())
    assert not any(f["duplicate"] for f in first["files"])
    total = sum(counts.values())
    assert first["events"] == total and first["last_seq"] == total
    # Consecutive, gap-free seq ranges, one batch per file.
    seq = 1
    for result in first["files"]:
        assert result["first_seq"] == seq
        seq = result["last_seq"] + 1
        assert result["producer"] == "inbox"
        assert result["batch_no"].startswith(Path(result["file"]).name + "@")

    again = run_json(capsys, "ingest", str(SAMPLES), "--lake", str(root))
    assert all(f["duplicate"] and f["events"] == 0 for f in again["files"])
    assert again["events"] == 0 and again["last_seq"] == total
    lake = el.Lake.open(root, create=False)
    assert lake.info().events == total
    batches = lake.events().select("batch_id").unique().collect()["batch_id"].to_list()
    assert len(batches) == len(SAMPLE_FILES)


def test_ingest_human_output(tmp_path, capsys):
    code, out, _ = run(capsys, "ingest", str(SAMPLES), "--lake", str(tmp_path / "lake"))
    assert code == EXIT_OK
    assert "01-workspaces.jsonl: 578 events, seq 1..578" in out
    assert "ingested 1778 events from 4 file(s)" in out
    code, out, _ = run(capsys, "ingest", str(SAMPLES / "02-accounts.csv"),
                       "--lake", str(tmp_path / "lake"))
    assert "already ingested" in out and "duplicate" in out


def test_ingest_materialize_refreshes_the_views(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pyproject: the lake has the document view only
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    root = str(tmp_path / "lake")
    code, out, _ = run(capsys, "ingest", str(SAMPLES / "01-workspaces.jsonl"), "--lake", root)
    assert code == EXIT_OK
    lake = el.Lake.open(root, create=False)
    assert lake.freshness().max_lag_events == 578  # ingest alone leaves the views behind
    result = run_json(capsys, "ingest", str(SAMPLES / "02-accounts.csv"), "--lake", root,
                      "--materialize")
    [document] = result["materialized"]["views"]
    assert document["view"] == "document" and document["new_watermark"] == result["last_seq"]
    assert lake.freshness().max_lag_events == 0
    code, out, _ = run(capsys, "ingest", str(SAMPLES), "--lake", root, "--materialize")
    assert code == EXIT_OK and "ingested 700 events" in out and "1,078 → 1,778" in out
    assert lake.freshness().max_lag_events == 0


def test_append_materialize_refreshes_every_view(tmp_path):
    lake = el.Lake.open(tmp_path / "lake")
    lake.append([{"type": "set", "partition": "p", "payload": {"target": "a", "value": 1}}])
    assert lake.freshness().max_lag_events == 1
    lake.append([{"type": "set", "partition": "p", "payload": {"target": "b", "value": 2}}],
                materialize=True)
    assert lake.freshness().max_lag_events == 0
    assert lake.scan("document").collect()["state"].to_list() == ['{"a":1,"b":2}']


def test_ingest_with_producer(tmp_path, capsys):
    result = run_json(capsys, "ingest", str(SAMPLES / "02-accounts.csv"), "--producer", "crm",
                      "--lake", str(tmp_path / "lake"))
    (only,) = result["files"]
    assert only["producer"] == "crm" and only["batch_id"].startswith("crm/02-accounts.csv@")
    # Another producer is another batch: the same file lands again.
    again = run_json(capsys, "ingest", str(SAMPLES / "02-accounts.csv"),
                     "--lake", str(tmp_path / "lake"))
    assert again["files"][0]["duplicate"] is False


def write_bad_file(folder: Path) -> Path:
    path = folder / "orders.jsonl"
    lines = [
        json.dumps({"type": "deposit", "payload": {"amount": 1}, "partition": "acct-001"}),
        json.dumps({"type": "deposit", "payload": {"amount": 2}, "partition": "acct-002"}),
        json.dumps({"type": "deposit", "payload": "[1, 2]", "partition": "acct-003"}),
        "{oops",
        json.dumps({"type": "deposit", "payload": {"amount": 5}, "partition": "acct-005"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_file_fails_with_one_line_and_writes_nothing(samples_lake, tmp_path, capsys):
    before = el.Lake.open(samples_lake, create=False).info()
    bad = write_bad_file(tmp_path)
    code, _, err = run(capsys, "ingest", str(bad), "--lake", str(samples_lake))
    assert code == EXIT_ERROR
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{bad}, line 3" in err and "field 'payload'" in err
    assert "2 bad records" in err and "--quarantine" in err
    after = el.Lake.open(samples_lake, create=False).info()
    assert (after.events, after.last_seq, after.version) == (
        before.events, before.last_seq, before.version)
    assert not (samples_lake / "quarantine").exists()


def test_bad_file_stops_later_files(tmp_path, capsys):
    bad = write_bad_file(tmp_path)
    root = tmp_path / "lake"
    code, out, _ = run(capsys, "ingest", str(SAMPLES / "02-accounts.csv"), str(bad),
                         str(SAMPLES / "04-mixed.jsonl"), "--lake", str(root))
    assert code == EXIT_ERROR
    assert "02-accounts.csv: 500 events" in out
    assert el.Lake.open(root, create=False).info().events == 500


def test_quarantine_lands_good_records_and_writes_bad_ones(tmp_path, capsys):
    bad = write_bad_file(tmp_path)
    root = tmp_path / "lake"
    result = run_json(capsys, "ingest", str(bad), "--quarantine", "--lake", str(root))
    (only,) = result["files"]
    assert (only["records"], only["events"], only["quarantined"]) == (5, 3, 2)
    target = root / "quarantine" / "orders.jsonl.jsonl"
    assert only["quarantine_file"] == str(target)
    entries = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(e["file"], e["line"]) for e in entries] == [(str(bad), 3), (str(bad), 4)]
    assert entries[1]["raw"] == "{oops"
    assert all(e["reason"] for e in entries)
    lake = el.Lake.open(root, create=False)
    assert lake.events().collect()["partition_id"].to_list() == [
        "acct-001", "acct-002", "acct-005"]
    # A strict re-run of the same file is a duplicate, not a failure.
    again = run_json(capsys, "ingest", str(bad), "--lake", str(root))
    assert again["files"][0]["duplicate"] is True


def test_quarantine_of_an_unreadable_file(tmp_path, capsys):
    garbage = tmp_path / "blob.parquet"
    garbage.write_bytes(b"not parquet at all")
    folder = tmp_path / "q"
    result = run_json(capsys, "ingest", str(garbage), str(SAMPLES / "03-accounts.parquet"),
                      "--quarantine-dir", str(folder), "--lake", str(tmp_path / "lake"))
    assert [f["quarantined"] for f in result["files"]] == [1, 0]
    assert result["events"] == 400
    (entry,) = [json.loads(x) for x in (folder / "blob.parquet.jsonl").read_text().splitlines()]
    assert entry["line"] is None and str(garbage) in entry["reason"]


def test_unreadable_file_in_strict_mode(tmp_path, capsys):
    garbage = tmp_path / "blob.jsonl"
    garbage.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run(capsys, "ingest", str(garbage), "--lake", str(tmp_path / "lake"))
    assert code == EXIT_ERROR
    assert err.startswith(f"error: {garbage}: not UTF-8") and err.count("\n") == 1


def test_missing_input_file(tmp_path, capsys):
    code, _, err = run(capsys, "ingest", str(tmp_path / "nope.jsonl"), "--lake",
                       str(tmp_path / "lake"))
    assert code == EXIT_ERROR and "no such file or folder" in err


def test_debug_reraises_with_traceback(tmp_path, capsys):
    bad = write_bad_file(tmp_path)
    with pytest.raises(InvalidEventError, match="line 3"):
        main(["--debug", "ingest", str(bad), "--lake", str(tmp_path / "lake")])
    with pytest.raises(InvalidEventError):
        main(["ingest", str(bad), "--lake", str(tmp_path / "lake"), "--debug"])


# -- events ----------------------------------------------------------------------------------


def events_json(capsys, *argv: str) -> list[dict]:
    code, out, err = run(capsys, "events", *argv, "--json")
    assert code == EXIT_OK, err
    return [json.loads(line) for line in out.splitlines()]


def test_events_json_filters_and_order(samples_lake, capsys):
    lake = ["--lake", str(samples_lake)]
    rows = events_json(capsys, *lake)
    assert [r["seq"] for r in rows] == list(range(1, 21))
    assert isinstance(rows[0]["payload"], dict)
    assert set(rows[0]) == {"seq", "partition_id", "type", "payload", "event_id", "ts",
                            "ingested_at", "batch_id"}

    rows = events_json(capsys, *lake, "--partition", "acct-007", "--since", "1000",
                       "--limit", "5")
    assert len(rows) == 5
    assert all(r["partition_id"] == "acct-007" and r["seq"] > 1000 for r in rows)
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    expected = (el.Lake.open(samples_lake, create=False)
                .events(partition="acct-007", since_seq=1000).head(5).collect())
    assert seqs == expected["seq"].to_list()

    everything = events_json(capsys, *lake, "--limit", "0")
    assert [r["seq"] for r in everything] == list(range(1, 1779))
    two = events_json(capsys, *lake, "-p", "workspace-1", "-p", "acct-001", "--limit", "0")
    assert {r["partition_id"] for r in two} == {"workspace-1", "acct-001"}
    assert len(two) == sum(r["partition_id"] in {"workspace-1", "acct-001"} for r in everything)
    ranged = events_json(capsys, *lake, "--since", "10", "--until", "15", "--type", "treePush")
    assert all(10 < r["seq"] <= 15 and r["type"] == "treePush" for r in ranged)


def test_events_table(samples_lake, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "events", "--lake", str(samples_lake), "--limit", "3",
                       "--partition", "workspace-2")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert "seq" in lines[0] and "payload" in lines[0]
    assert "workspace-2" in out and "more events follow: --since" in out
    assert max(len(line) for line in lines) <= 100
    code, out, _ = run(capsys, "events", "--lake", str(samples_lake), "--since", "999999")
    assert code == EXIT_OK and "no events match" in out


def test_read_commands_on_a_missing_lake(tmp_path, capsys):
    for command in ("events", "info"):
        code, _, err = run(capsys, command, "--lake", str(tmp_path / "nothing"))
        assert code == EXIT_ERROR
        assert err.startswith(f"error: no lake at {tmp_path / 'nothing'}")
        assert "eventlake init" in err and err.count("\n") == 1
    assert not (tmp_path / "nothing").exists()


# -- info ------------------------------------------------------------------------------------


def test_info_json_matches_the_library(samples_lake, capsys):
    data = run_json(capsys, "info", "--lake", str(samples_lake))
    info = el.Lake.open(samples_lake, create=False).info()
    assert data == {"root": info.root, "events": info.events, "last_seq": info.last_seq,
                    "partitions": info.partitions, "version": info.version,
                    "files": info.files, "size_bytes": info.size_bytes,
                    "views": list(info.views), "layout": info.layout,
                    "buckets": info.buckets, "tail_files": info.tail_files,
                    "advice": info.advice}
    assert data["events"] == data["last_seq"] == sum(sample_counts().values())
    assert data["partitions"] == 46
    # Global options also work before the command.
    assert run_json(capsys, "--lake", str(samples_lake), "info") == data
    code, out, _ = run(capsys, "info", "--lake", str(samples_lake))
    assert code == EXIT_OK and "1,778" in out and "document" in out


# -- settings --------------------------------------------------------------------------------


def test_env_var_picks_the_lake(samples_lake, capsys, monkeypatch):
    monkeypatch.setenv("EVENTLAKE_LAKE", str(samples_lake))
    assert run_json(capsys, "info")["root"] == str(samples_lake)
    # An explicit --lake still wins.
    code, _, err = run(capsys, "info", "--lake", str(samples_lake.parent / "other"))
    assert code == EXIT_ERROR and "no lake at" in err


def test_pyproject_setting_is_relative_to_its_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.eventlake]\nlake = "store/lake"\nviews = "myviews"\n', encoding="utf-8")
    monkeypatch.chdir(project / "src" / "deep")
    setting = resolve_lake()
    assert setting.value == str(project / "store" / "lake")
    assert setting.source == str(project / "pyproject.toml")
    assert resolve_views().value == "myviews"
    monkeypatch.setenv("EVENTLAKE_LAKE", "/elsewhere")
    assert resolve_lake().value == "/elsewhere"
    assert resolve_lake("given").value == "given"
    assert resolve_lake(env={}, cwd=tmp_path).value == "data/lake"


def test_default_lake_is_data_lake(capsys):
    assert resolve_lake().value == "data/lake"
    code, _, err = run(capsys, "info")
    assert code == EXIT_ERROR and "data/lake" in err


def write_views_module(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(body, encoding="utf-8")


def test_load_views_from_a_module(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_views_module(tmp_path, "views_attrs", (
        "from eventlake.views import AggregateView, reducer_view\n"
        "totals = AggregateView('totals', 1, aggregates={'n': 'count'})\n"
        "@reducer_view('counter')\n"
        "def counter(state, event):\n"
        "    return {**state, 'n': state.get('n', 0) + 1}\n"
        "alias = totals\n"))
    assert [v.name for v in load_views("views_attrs")] == ["totals", "counter"]
    write_views_module(tmp_path, "views_list", (
        "from eventlake.views import AggregateView\n"
        "a = AggregateView('a', 1, aggregates={'n': 'count'})\n"
        "b = AggregateView('b', 1, aggregates={'n': 'count'})\n"
        "VIEWS = [b]\n"))
    assert [v.name for v in load_views("views_list")] == ["b"]
    assert [v.name for v in load_views(str(tmp_path / "views_list.py"))] == ["b"]


@pytest.mark.parametrize("body, message", [
    ("x = 1\n", "defines no views"),
    ("VIEWS = [1]\n", "not a ReducerView, AggregateView or SqlView"),
    ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
])
def test_load_views_errors(tmp_path, monkeypatch, body, message):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = f"views_bad_{abs(hash(body))}"
    write_views_module(tmp_path, name, body)
    with pytest.raises(ViewDefinitionError, match=message):
        load_views(name)


def test_missing_views_module_is_a_clean_cli_error(samples_lake, capsys):
    code, _, err = run(capsys, "info", "--lake", str(samples_lake), "--views", "no.such.mod")
    assert code == EXIT_ERROR
    assert err.startswith("error: cannot import views module 'no.such.mod'")


def test_views_module_registers_views(samples_lake, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_views_module(tmp_path, "cli_views", (
        "from eventlake.views import AggregateView\n"
        "totals = AggregateView('totals', 1, aggregates={'n': 'count'})\n"))
    monkeypatch.setenv("EVENTLAKE_VIEWS", "cli_views")
    assert run_json(capsys, "info", "--lake", str(samples_lake))["views"] == [
        "document", "totals"]


# -- end to end in a subprocess --------------------------------------------------------------


@pytest.mark.integration
def test_end_to_end_in_a_subprocess(tmp_path):
    root = tmp_path / "lake"
    env = {"EVENTLAKE_LAKE": str(root)}
    init = subprocess_cli("init", env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert str(root) in init.stdout
    ingest = subprocess_cli("ingest", str(SAMPLES), "--json", env=env, cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["events"] == sum(sample_counts().values())
    events = subprocess_cli("events", "--partition", "acct-001", "--limit", "3", "--json",
                            env=env, cwd=tmp_path)
    assert events.returncode == 0, events.stderr
    rows = [json.loads(line) for line in events.stdout.splitlines()]
    assert len(rows) == 3 and all(r["partition_id"] == "acct-001" for r in rows)
    bad = write_bad_file(tmp_path)
    failed = subprocess_cli("ingest", str(bad), env=env, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and failed.stderr.count("\n") == 1
    assert "line 3" in failed.stderr
    debug = subprocess_cli("ingest", str(bad), "--debug", env=env, cwd=tmp_path)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "InvalidEventError" in debug.stderr


def test_append_of_an_action_that_can_never_apply_names_record_and_field(tmp_path, capsys):
    path = tmp_path / "actions.jsonl"
    path.write_text("\n".join([
        json.dumps({"type": "set", "payload": {"target": "a", "value": 1}, "partition": "d"}),
        json.dumps({"type": "treeDelete", "payload": {"target": "t"}, "partition": "d"}),
    ]) + "\n", encoding="utf-8")
    root = tmp_path / "lake"
    code, _, err = run(capsys, "ingest", str(path), "--lake", str(root))
    assert code == EXIT_ERROR
    assert err.count("\n") == 1 and f"{path}, line 2" in err
    assert "field 'payload.options'" in err
    assert not root.exists() or el.Lake.open(root, create=False).info().events == 0
