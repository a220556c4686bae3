"""`eventlake server start|status|stop` and the record `eventlake pipeline` finds a running
server by (eventlake.flows.server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from eventlake.flows import server

# Serving, the server and the commands' exit codes do not depend on the event log's layout.
pytestmark = pytest.mark.one_layout


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "eventlake.cli", "server", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _record(home, **fields) -> None:
    home.mkdir(parents=True, exist_ok=True)
    data = {"pid": 1, "url": "http://127.0.0.1:9/api", "host": "127.0.0.1", "port": 9,
            "log": str(home / "prefect-server.log"), "started_at": "2026-01-01T00:00:00+00:00",
            "startup_seconds": 1.0, **fields}
    (home / server.RECORD_NAME).write_text(json.dumps(data), encoding="utf-8")


def test_a_record_of_a_process_that_is_gone_is_stale_and_never_reused(tmp_path):
    env = {server.ENV_HOME: str(tmp_path)}
    assert server.status(environ=env).state == "stopped"
    _record(tmp_path, pid=_dead_pid())
    found = server.status(environ=env)
    assert found.state == "stale" and "is gone" in found.reason
    assert server.reusable_api_url(env, wait=0) is None
    # A live pid that is not a Prefect server (this test process): stale too, never signalled.
    _record(tmp_path, pid=os.getpid())
    found = server.status(environ=env)
    assert found.state == "stale" and "another program" in found.reason
    assert server.stop(environ=env).state == "stale"
    assert not (tmp_path / server.RECORD_NAME).exists()
    # A record cut short by a crash is no record to trust either.
    (tmp_path / server.RECORD_NAME).write_text('{"pid": 12', encoding="utf-8")
    assert server.status(environ=env).state == "stale"


def test_status_and_stop_of_no_server(tmp_path):
    env = {**os.environ, server.ENV_HOME: str(tmp_path)}
    done = _cli("status", env=env)
    assert done.returncode == 1 and done.stdout.startswith("stopped: no server recorded")
    _record(tmp_path, pid=_dead_pid())
    done = _cli("status", "--json", env=env)
    assert done.returncode == 1 and json.loads(done.stdout)["state"] == "stale"
    done = _cli("stop", env=env)
    assert done.returncode == 0 and "removed the stale record" in done.stdout
    assert _cli("stop", "--port", "5", env=env).returncode == 1


@pytest.mark.integration
def test_start_status_stop_round_trip(tmp_path):
    # A server of its own (the session's `prefect_server` stays up for the other tests), on
    # a fresh database: this costs one more start-up (10-35 s).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update({server.ENV_HOME: str(tmp_path / "home"), "PREFECT_HOME": str(tmp_path / "prefect")})
    port = server.free_port()
    started = _cli("start", "--port", str(port), env=env)
    assert started.returncode == 0, started.stderr
    record = json.loads((tmp_path / "home" / server.RECORD_NAME).read_text(encoding="utf-8"))
    try:
        assert record["url"] == f"http://127.0.0.1:{port}/api" and record["startup_seconds"] > 0
        assert f"Prefect server started at {record['url']} (pid {record['pid']})" in (
            started.stdout)
        assert f"export PREFECT_API_URL={record['url']}" in started.stdout
        assert server.healthy(record["url"])
        status = _cli("status", "--json", env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "running"
        # Started again: the running one is reported, no second server.
        again = _cli("start", env=env)
        assert again.returncode == 0 and f"already running at {record['url']}" in again.stdout
        assert json.loads((tmp_path / "home" / server.RECORD_NAME).read_text())["pid"] == (
            record["pid"])
        # Another server's port is refused with a hint, not a second process on it.
        taken = _cli("start", "--port", str(port), env={
            **env, server.ENV_HOME: str(tmp_path / "other")})
        assert taken.returncode == 1 and f"port {port}" in taken.stderr
        stopped = _cli("stop", env=env)
        assert stopped.returncode == 0 and f"pid {record['pid']}" in stopped.stdout
        deadline = time.monotonic() + 10
        while server.healthy(record["url"], timeout=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not server.healthy(record["url"], timeout=1)
        with pytest.raises(ProcessLookupError):
            os.kill(record["pid"], 0)
        assert _cli("status", env=env).returncode == 1
    finally:
        server.stop(environ=env)
