"""`eventlake server start|stop|status`: a Prefect server that every `eventlake pipeline`
and `eventlake serve` of this user reuses (see `eventlake.flows.server`).

Prefect is not imported here: the server is another process, started with this
interpreter's `python -m prefect server start`.
"""

from __future__ import annotations

import argparse

from eventlake.cli._app import EXIT_ERROR, EXIT_OK, command
from eventlake.cli.flow_commands import _flows, _without_flows
from eventlake.cli.output import print_json, say
from eventlake.errors import CommandError


def _server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "status"),
                        help="start a server in the background (or report the running one), "
                             "stop it, or say whether it runs")
    parser.add_argument("--host", default=None, metavar="HOST",
                        help="address to listen on (start; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="port to listen on (start; default 4200)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="how long start waits for the server to answer (default 180)")


@command("server", help="start, stop or check a background Prefect server for the flows",
         configure=_server_args)
def cmd_server(args: argparse.Namespace) -> int:
    """Manage the Prefect server `eventlake pipeline` and `eventlake serve` reuse when
    PREFECT_API_URL is not set. `start` runs `prefect server start` in the background on
    loopback and records its pid and URL in $EVENTLAKE_HOME/prefect-server.json (default
    ~/.eventlake), its output in prefect-server.log beside it; with one already running it
    only reports it. `stop` ends the recorded server; `status` says whether it runs (exit 1
    when it does not, or its record is stale: its process is gone). Runs keep their logs and
    artifacts in the server's database (Prefect's, under $PREFECT_HOME).
    """
    if (code := _without_flows(args, "server")) is not None:
        return code
    server = _flows("server")
    if args.action != "start" and (args.host or args.port or args.timeout):
        raise CommandError("--host, --port and --timeout go with `eventlake server start`")
    if args.action == "start":
        if args.port is not None and not 0 < args.port < 65536:
            raise CommandError(f"--port must be 1..65535, got {args.port}")
        record, started = server.start(host=args.host or server.DEFAULT_HOST, port=args.port,
                                       timeout=args.timeout or server.DEFAULT_START_TIMEOUT)
        if args.json:
            from dataclasses import asdict

            print_json({"started": started, "server": asdict(record)})
            return EXIT_OK
        if started:
            say(f"Prefect server started at {record.url} (pid {record.pid}) in "
                f"{record.startup_seconds:.1f} s; log {record.log}")
        else:
            say(f"a Prefect server is already running at {record.url} (pid {record.pid})")
        say("eventlake pipeline and eventlake serve use it; other Prefect tools with:")
        say(f"  export PREFECT_API_URL={record.url}")
        return EXIT_OK
    if args.action == "stop":
        was = server.stop()
        if args.json:
            print_json({"stopped": was.state in ("running", "starting"), **was.to_json()})
        elif was.state in ("running", "starting") and was.record is not None:
            say(f"stopped the Prefect server at {was.record.url} (pid {was.record.pid})")
        elif was.state == "stale":
            say(f"no server was running ({was.reason}); removed the stale record {was.path}")
        else:
            say(f"no server was running ({was.reason})")
        return EXIT_OK
    found = server.status()
    if args.json:
        print_json(found.to_json())
    else:
        where = f" at {found.record.url} (pid {found.record.pid})" if found.record else ""
        say(f"{found.state}{where}: {found.reason}")
    return EXIT_OK if found.state == "running" else EXIT_ERROR
