"""A real Prefect server for the tests that need one (served deployments, logs and artifacts
read back from its API, `eventlake server`): started ONCE per test session, by
`eventlake.flows.server.start` on loopback at a free port, and stopped (killed if need be) at
the end. Starting one costs 10-20 s on a small machine, so every test shares it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class RealServer:
    url: str
    pid: int
    home: Path  # $EVENTLAKE_HOME holding the server's record

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process that should find this server the way a user's
        command does: through the record in $EVENTLAKE_HOME, with no PREFECT_API_URL."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        env.update(EVENTLAKE_HOME=str(self.home), PREFECT_HOME=str(self.home / "client"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
        env.update(extra)
        return env

    def client(self):
        """A sync Prefect client of this server, whatever the process's own settings say."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.url)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> RealServer:
    from eventlake.flows import server

    home = tmp_path_factory.mktemp("eventlake-home")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    environ[server.ENV_HOME] = str(home)
    record, started = server.start(
        port=server.free_port(), environ=environ,
        server_env={"PREFECT_HOME": str(home / "server"),
                    # Served deployments get their first runs scheduled within seconds.
                    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"})
    assert started
    try:
        yield RealServer(url=record.url, pid=record.pid, home=home)
    finally:
        server.stop(environ=environ)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
            pytest.fail(f"the test Prefect server (pid {record.pid}) outlived server.stop")
