"""A Prefect server that outlives one command: `eventlake server start|stop|status`.

`eventlake pipeline` without `PREFECT_API_URL` would otherwise start Prefect's temporary
server for every run (tens of seconds on a small machine, see README "Prefect flows") and
stop it at exit, taking the run's logs and artifacts with it. `start` runs
`prefect server start --host 127.0.0.1 --port N` in the background, in its own session (a
Ctrl-C in the terminal that started it does not reach it), its output in `server.log`, and
records what it started in `<home>/prefect-server.json`:

    {"pid": 4242, "url": "http://127.0.0.1:4200/api", "host": "127.0.0.1", "port": 4200,
     "log": "<home>/prefect-server.log", "started_at": "2026-...Z", "startup_seconds": 9.8}

`<home>` is `$EVENTLAKE_HOME`, else `~/.eventlake`. Commands that need a server find it there
(`reusable_api_url`); a record whose process is gone, or whose pid now belongs to another
program, is stale: `status` says so, `start` replaces it and `stop` removes it. Only the
process recorded there is ever signalled.

No Prefect import here: the server is another process, reached over HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from eventlake.errors import CommandError

from .settings import privacy_defaults

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ENV_HOME",
    "RECORD_NAME",
    "ServerRecord",
    "ServerStatus",
    "eventlake_home",
    "free_port",
    "healthy",
    "record_path",
    "reusable_api_url",
    "start",
    "status",
    "stop",
]

ENV_HOME = "EVENTLAKE_HOME"
RECORD_NAME = "prefect-server.json"
LOG_NAME = "prefect-server.log"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200
# A first start creates and migrates the database: 20 s on a busy 2-core machine; later
# starts about 8 s.
DEFAULT_START_TIMEOUT = 180.0
DEFAULT_STOP_TIMEOUT = 20.0

State = Literal["running", "starting", "stale", "stopped"]


@dataclass(frozen=True, kw_only=True)
class ServerRecord:
    """What `start` started: the process, its API and where its output goes."""

    pid: int
    url: str
    host: str
    port: int
    log: str
    started_at: str
    startup_seconds: float

    @classmethod
    def read(cls, path: Path) -> ServerRecord | None:
        """The record at `path`; None when there is none or it is unreadable (a record cut
        short by a crash counts as none: nothing in it can be trusted to signal)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, kw_only=True)
class ServerStatus:
    """`state`: running (the recorded process answers its health check), starting (alive,
    not answering yet), stale (the record's process is gone, or its pid is another
    program's now), stopped (no record). `reason` says why, in words."""

    state: State
    record: ServerRecord | None
    reason: str
    path: str

    def to_json(self) -> dict[str, object]:
        return {"state": self.state, "reason": self.reason, "record_file": self.path,
                **({"server": asdict(self.record)} if self.record else {})}


def eventlake_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    chosen = (env.get(ENV_HOME) or "").strip()
    return Path(chosen).expanduser() if chosen else Path.home() / ".eventlake"


def record_path(environ: Mapping[str, str] | None = None) -> Path:
    return eventlake_home(environ) / RECORD_NAME


def healthy(url: str, *, timeout: float = 5.0) -> bool:
    """Whether the Prefect API at `url` (ending in /api) answers its health check."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as answer:
            return bool(answer.status == 200 and json.loads(answer.read() or b"null"))
    except (OSError, ValueError, http.client.HTTPException):
        # Refused, timed out, or something that is not a Prefect API answered the port.
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours
        return True
    return True


def _is_prefect_server(pid: int) -> bool | None:
    """Whether `pid` runs `prefect server start`; None where the command line cannot be
    read (no /proc): then the health check decides."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    text = b" ".join(words)
    return b"prefect" in text and b"server" in text


def status(*, environ: Mapping[str, str] | None = None) -> ServerStatus:
    """The recorded server's state, without changing anything."""
    path = record_path(environ)
    record = ServerRecord.read(path)
    if record is None:
        reason = ("no server recorded" if not path.exists()
                  else "the record is unreadable (cut short?)")
        return ServerStatus(state="stopped" if not path.exists() else "stale", record=None,
                            reason=reason, path=str(path))
    if not _alive(record.pid):
        return ServerStatus(state="stale", record=record, path=str(path),
                            reason=f"process {record.pid} is gone (the server exited or "
                                   "the machine restarted)")
    if _is_prefect_server(record.pid) is False:
        return ServerStatus(state="stale", record=record, path=str(path),
                            reason=f"pid {record.pid} now belongs to another program")
    if not healthy(record.url):
        return ServerStatus(state="starting", record=record, path=str(path),
                            reason=f"process {record.pid} is alive but {record.url} does not "
                                   f"answer yet (see {record.log})")
    return ServerStatus(state="running", record=record, path=str(path),
                        reason=f"process {record.pid} answers at {record.url}")


def reusable_api_url(environ: Mapping[str, str] | None = None, *,
                     wait: float = 20.0) -> str | None:
    """The API URL of the recorded server when it is running, else None. A recorded process
    that is alive but slow to answer (still starting, or busy) gets `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = status(environ=environ)
        if found.state == "running" and found.record:
            return found.record.url
        if found.state != "starting" or time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def _prefect_command() -> list[str]:
    # The `prefect` of this interpreter's environment, not whichever is first on PATH.
    return [sys.executable, "-m", "prefect"]


def start(*, host: str = DEFAULT_HOST, port: int | None = None,
          timeout: float = DEFAULT_START_TIMEOUT,
          environ: Mapping[str, str] | None = None,
          server_env: Mapping[str, str] | None = None) -> tuple[ServerRecord, bool]:
    """Start a Prefect server in the background and wait until it answers; returns its
    record and True, or the running one's record and False when one is already running.
    `port` None: the default 4200. `server_env` adds to the server process's environment."""
    found = status(environ=environ)
    if found.state == "running" and found.record is not None:
        return found.record, False
    if found.state == "starting" and found.record is not None:
        raise CommandError(f"a Prefect server is recorded in {found.path} but does not "
                           f"answer: {found.reason}; `eventlake server stop` ends it")
    chosen = DEFAULT_PORT if port is None else port
    if _port_taken(host, chosen):
        raise CommandError(f"port {chosen} on {host} is taken (another Prefect server? then "
                           f"export PREFECT_API_URL=http://{host}:{chosen}/api instead); or "
                           "pick another with --port")
    path = record_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.parent / LOG_NAME
    env = dict(os.environ if environ is None else environ)
    privacy_defaults(env)
    env.update(server_env or {})
    url = f"http://{host}:{chosen}/api"
    began = time.monotonic()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*_prefect_command(), "server", "start", "--host", host, "--port", str(chosen)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
    record = ServerRecord(pid=process.pid, url=url, host=host, port=chosen, log=str(log),
                          started_at=datetime.now(UTC).isoformat(), startup_seconds=0.0)
    # Recorded before it answers, so `stop` finds it if this wait is interrupted.
    _write(path, record)
    try:
        while not healthy(url, timeout=1.0):
            if process.poll() is not None:
                raise CommandError(f"the Prefect server exited with code {process.returncode} "
                                   f"before it answered; last lines of {log}:\n"
                                   f"{_tail(log)}")
            if time.monotonic() - began > timeout:
                raise CommandError(f"the Prefect server did not answer at {url} within "
                                   f"{timeout:g} s; see {log}")
            time.sleep(0.25)
    except BaseException:
        _terminate(process.pid, DEFAULT_STOP_TIMEOUT)
        process.wait()
        path.unlink(missing_ok=True)
        raise
    record = ServerRecord(**{**asdict(record),
                             "startup_seconds": round(time.monotonic() - began, 2)})
    _write(path, record)
    return record, True


def stop(*, timeout: float = DEFAULT_STOP_TIMEOUT,
         environ: Mapping[str, str] | None = None) -> ServerStatus:
    """Stop the recorded server (SIGTERM to its process group, SIGKILL after `timeout`)
    and remove the record; returns the status it had. A stale record is only removed."""
    found = status(environ=environ)
    path = Path(found.path)
    if found.state in ("running", "starting") and found.record is not None:
        _terminate(found.record.pid, timeout)
    if found.state != "stopped":
        path.unlink(missing_ok=True)
    return found


def _terminate(pid: int, timeout: float) -> None:
    """End the server and its children (uvicorn workers, services): it leads its own
    session, so its process group is exactly what `start` started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid) or _reaped(pid):
                return
            time.sleep(0.1)


def _reaped(pid: int) -> bool:
    """Reap `pid` if it is our exited child (a zombie still answers `kill(pid, 0)`)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _write(path: Path, record: ServerRecord) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")
    partial.replace(path)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
