"""The CLI never shows a traceback for an eventlake failure: every subcommand, driven into an
error (a missing or damaged lake, a bad option value, an unknown view, a bad file), exits 1
with exactly one line on stderr that names the problem; `--debug` re-raises instead.

The commands come from the parser, so a new one fails `test_every_command_has_a_failure_case`
until it gets cases here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import eventlake as el
from eventlake.cli import EXIT_ERROR, EXIT_OK, build_parser, main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


@dataclass(frozen=True)
class Lakes:
    """The places a case names: a good lake, a damaged copy, a root with no lake, and a folder
    of its own for files a case writes."""

    good: str
    damaged: str
    missing: str
    scratch: Path


# Each case: the arguments after the command, and text its one error line must hold.
Case = Callable[[Lakes], tuple[list[str], str]]


def _bad_record_file(lakes: Lakes) -> str:
    path = lakes.scratch / "bad.jsonl"
    path.write_text('{"type": "deposit", "payload": {"amount": 1}, "partition": "p"}\n'
                    '{"type": "", "payload": {}, "partition": "p"}\n')
    return str(path)


def _other_layout() -> str:
    return "partition_id" if os.environ["EVENTLAKE_LAYOUT"].startswith("buckets") else "buckets"


FAILURES: dict[str, list[Case]] = {
    "init": [
        lambda x: ([str(x.scratch / "new"), "--layout", "partition_id", "--buckets", "4"],
                   "a bucket count is only for the 'buckets' layout"),
        lambda x: ([x.good, "--layout", _other_layout()], "already exists with the"),
    ],
    "ingest": [
        lambda x: ([str(x.scratch / "no-such.jsonl"), "--lake", x.good],
                   "no such file or folder"),
        lambda x: ([_bad_record_file(x), "--lake", x.good], "line 2: field 'type'"),
    ],
    "quarantine": [
        lambda x: (["list", "--lake", x.missing], "no lake at"),
        lambda x: (["replay", "nope.jsonl", "--lake", x.good], "no quarantine file nope.jsonl"),
        lambda x: (["replay", "--lake", x.good], "needs the quarantine FILE"),
    ],
    "events": [
        lambda x: (["--lake", x.missing], "no lake at"),
        lambda x: (["--lake", x.good, "--limit", "-1"], "--limit must be 0 (all) or positive"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "info": [
        lambda x: (["--lake", x.missing], "no lake at"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "restore": [
        lambda x: (["--lake", x.good, "--version", "999", "--yes"], "nothing to restore"),
        lambda x: (["--lake", x.damaged, "--version", "1", "--yes"], "damaged Delta log"),
    ],
    "erase": [
        # A name that only looks like the sample's "acct-001" is never taken for it.
        lambda x: (["acct-001 ", "--reason", "test", "--lake", x.good, "--yes"],
                   "no partition 'acct-001 ' in the event log"),
        lambda x: (["acct-001", "--reason", "test", "--lake", x.good],
                   "refusing to erase without confirmation"),
        lambda x: (["acct-001", "--reason", " ", "--lake", x.good, "--yes"],
                   "reason must be a non-empty text"),
        lambda x: (["acct-001", "--reason", "test", "--lake", x.missing, "--yes"],
                   "no lake at"),
        lambda x: (["acct-001", "--reason", "test", "--lake", x.damaged, "--yes"],
                   "damaged Delta log"),
    ],
    "sql": [
        lambda x: (["selec 1", "--lake", x.good], "SQL failed: Parser Error"),
        lambda x: (["select union_value(k := 1) as u", "--lake", x.good,
                    "--output", str(x.scratch / "u.parquet")],
                   "cannot write the result as parquet"),
        lambda x: (["select count(*) from events", "--lake", x.damaged], "damaged Delta log"),
    ],
    "duckdb": [
        lambda x: (["--lake", x.good, "--output", str(x.scratch / "no" / "dir" / "init.sql")],
                   "No such file or directory"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "materialize": [
        lambda x: (["--lake", x.good, "--view", "nope"], "no view named 'nope'"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "state": [
        lambda x: (["acct-001", "--lake", x.good, "--view", "nope"], "no view named 'nope'"),
        lambda x: (["acct-001", "--lake", x.damaged], "damaged Delta log"),
    ],
    "views": [
        lambda x: (["--lake", x.good, "--views", "no_such_views_module"],
                   "cannot import views module 'no_such_views_module'"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "verify": [
        lambda x: (["--lake", x.good, "--view", "nope"], "no view named 'nope'"),
        lambda x: (["--lake", x.missing], "no lake at"),
    ],
    "pipeline": [
        lambda x: (["--lake", x.good, "--inbox", str(x.scratch / "nowhere")], "is not a folder"),
        lambda x: (["--lake", x.good, "--workers", "0"], "--workers must be at least 1"),
    ],
    "serve": [
        lambda x: (["--lake", x.good, "--interval", "0"], "--interval must be positive"),
    ],
    "server": [
        lambda x: (["stop", "--port", "4200"], "--host, --port and --timeout go with"),
        lambda x: (["start", "--port", "0"], "--port must be 1..65535"),
    ],
    "maintain": [
        lambda x: (["--lake", x.good, "--vacuum-hours", "-1"], "--vacuum-hours must be 0"),
        lambda x: (["--lake", x.good, "--buckets", "4"], "--buckets goes with --relayout"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "doctor": [
        lambda x: (["--lake", x.missing], "no lake at"),
    ],
    "changes": [
        lambda x: (["nope", "--lake", x.good], "no view named 'nope'"),
        lambda x: (["document", "--lake", x.good, "--commit"], "--commit goes with --cursor"),
        lambda x: (["document", "--lake", x.missing], "no lake at"),
    ],
    "status": [
        lambda x: (["--lake", x.missing], "no lake at"),
        lambda x: (["nope", "--lake", x.good], "no view named 'nope'"),
        lambda x: (["--lake", x.damaged], "damaged Delta log"),
    ],
    "bench": [
        lambda x: (["--only", "no-such-step"], "a bench step must be one of"),
    ],
}


def subcommands() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


_LAKES: dict[str, Lakes] = {}


@pytest.fixture
def lakes(tmp_path_factory, lake_layout, monkeypatch, capsys) -> Lakes:
    """One good and one damaged lake per layout, shared by the cases (each only fails)."""
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # no pyproject picks the lake
    if lake_layout not in _LAKES:
        base = tmp_path_factory.mktemp("lakes")
        good = base / "good"
        assert main(["ingest", str(SAMPLES), "--lake", str(good)]) == EXIT_OK
        damaged = base / "damaged"
        shutil.copytree(good, damaged)
        # The newest commit of the event log gets a line that is not JSON.
        last = sorted((damaged / "events" / "_delta_log").glob("*.json"))[-1]
        with last.open("a") as handle:
            handle.write('{"add": {broken\n')
        capsys.readouterr()
        _LAKES[lake_layout] = Lakes(str(good), str(damaged), str(base / "missing"), base)
    found = _LAKES[lake_layout]
    scratch = tmp_path_factory.mktemp("scratch")
    return Lakes(found.good, found.damaged, found.missing, scratch)


def test_every_command_has_a_failure_case():
    assert set(FAILURES) == set(subcommands())
    assert all(FAILURES.values())


def _one_error_line(err: str, expected: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert expected in lines[0], err
    return lines[0]


@pytest.mark.parametrize("command, number", [
    (command, number) for command, cases in FAILURES.items() for number in range(len(cases))])
def test_a_failing_command_says_so_on_one_line(command, number, lakes, capsys):
    argv, expected = FAILURES[command][number](lakes)
    before = el.Lake.open(lakes.good, create=False).info()
    code = main([command, *argv])
    _, err = capsys.readouterr()
    assert code == EXIT_ERROR, err
    _one_error_line(err, expected)
    # A command that failed changed nothing.
    assert el.Lake.open(lakes.good, create=False).info() == before


@pytest.mark.parametrize("command, number", [
    (command, number) for command, cases in FAILURES.items() for number in range(len(cases))])
def test_with_json_the_error_is_one_json_object_on_stderr(command, number, lakes, capsys):
    argv, expected = FAILURES[command][number](lakes)
    code = main([command, *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_ERROR, err
    assert out == ""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    report = json.loads(lines[0])
    assert expected in report["error"], report
    assert report["exit_code"] == EXIT_ERROR
    assert report["type"].endswith(("Error", "Exception")), report


def test_debug_shows_the_traceback_instead(lakes, capsys):
    with pytest.raises(el.LakeNotFoundError):
        main(["info", "--lake", lakes.missing, "--debug"])
    with pytest.raises(el.UnknownViewError):
        main(["state", "acct-001", "--lake", lakes.good, "--view", "nope", "--debug"])


def _python_m_eventlake(*argv: str, env: dict[str, str], cwd: Path
                        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "eventlake", *argv], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=180)


@pytest.mark.integration
def test_a_real_process_prints_one_line_for_a_damaged_lake_and_a_missing_server(lakes):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "EVENTLAKE_LAKE", "EVENTLAKE_VIEWS"))}
    env["PREFECT_HOME"] = str(lakes.scratch / "prefect")  # no profile names a server
    env["PREFECT_PROFILES_PATH"] = str(lakes.scratch / "prefect" / "profiles.toml")
    env["EVENTLAKE_HOME"] = str(lakes.scratch / "home")  # nor a server `eventlake server` started
    damaged = _python_m_eventlake("events", "--lake", lakes.damaged, env=env, cwd=lakes.scratch)
    assert damaged.returncode == EXIT_ERROR
    assert damaged.stdout == ""
    _one_error_line(damaged.stderr, "damaged Delta log")
    serve = _python_m_eventlake("serve", "--lake", lakes.good, env=env, cwd=lakes.scratch)
    assert serve.returncode == EXIT_ERROR
    _one_error_line(serve.stderr, "needs a running Prefect server: PREFECT_API_URL is not set")


# The program around `main`: a KeyboardInterrupt outside main's own handler still exits 130,
# and once the exit code is 130 a further Ctrl-C cannot turn it into death by SIGINT (-2).
PROGRAM = """
import os, signal, sys, threading, time
import eventlake.cli._app as app

def interrupted_main():
    if sys.argv[1] == "raise":
        raise KeyboardInterrupt
    return app.EXIT_INTERRUPTED

def ctrl_c_while_exiting():
    # SIGINT reaches the main thread while it is in sys.exit(130).
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGINT)

app.main = interrupted_main
if sys.argv[1] == "late":
    threading.Thread(target=ctrl_c_while_exiting).start()
app.run()
"""


@pytest.mark.parametrize("case", ["raise", "late"])
def test_the_program_exits_130_however_the_ctrl_c_comes(case):
    done = subprocess.run([sys.executable, "-c", PROGRAM, case], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.one_layout
def test_an_error_raised_while_a_ctrl_c_unwinds_is_the_interrupt(monkeypatch, capsys):
    """A Ctrl-C landing inside a lock's bookkeeping (`Condition.wait` of a thread pool) can
    surface as a `RuntimeError` raised while its KeyboardInterrupt unwinds: exit 130, one
    line, as for the interrupt itself (it was exit 1 and a traceback)."""
    from dataclasses import replace

    from eventlake.cli import _app

    _app._load_commands()

    def unwinding(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("cannot release un-acquired lock") from None

    monkeypatch.setitem(_app.COMMANDS, "info", replace(_app.COMMANDS["info"], run=unwinding))
    assert _app.main(["info"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "interrupted"
