"""Deployments with schedules, served by this process: `python -m eventlake.flows.serve` or
`eventlake serve`.

    eventlake-pipeline/pipeline        every 60 s (interval)      pipeline_flow
    eventlake-maintenance/maintenance  daily at 03:00 (cron)      maintenance_flow

Schedules fire only against a real Prefect server: start one (`prefect server start`), point
this process at it (`export PREFECT_API_URL=http://127.0.0.1:4200/api`) and serve. Without
`PREFECT_API_URL` Prefect would use a temporary server that lives as long as this process and
never runs schedules, so `main` refuses with an explanation instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventlake.errors import InvalidArgumentError

from .settings import privacy_defaults, resolve_inbox, resolve_target

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAINTENANCE_CRON",
    "NO_SERVER_MESSAGE",
    "api_url",
    "deployments",
    "main",
]

DEFAULT_INTERVAL = 60
DEFAULT_MAINTENANCE_CRON = "0 3 * * *"
NO_SERVER_MESSAGE = """\
eventlake serve needs a running Prefect server: PREFECT_API_URL is not set, and the temporary
server Prefect would start instead lives only as long as this process and never runs schedules.

  1. start a server (in another terminal):   prefect server start
  2. point eventlake at it:                  export PREFECT_API_URL=http://127.0.0.1:4200/api
  3. serve the deployments:                  eventlake serve

(or `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` to keep it in your profile)
To run the pipeline once without a server: eventlake pipeline"""


def api_url() -> str | None:
    """The Prefect API this process talks to (environment or profile), None when unset."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def deployments(*, inbox: str | None = None, lake: str | None = None,
                views: str | None = None, interval: float = DEFAULT_INTERVAL,
                maintenance_cron: str = DEFAULT_MAINTENANCE_CRON,
                retention_hours: float | None = None) -> list[RunnerDeployment]:
    """The pipeline (every `interval` seconds) and maintenance (`maintenance_cron`)
    deployments, with the inbox, lake and views resolved now to absolute paths."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.types.entrypoint import EntrypointType

    from eventlake.ops.maintenance import DEFAULT_VACUUM_HOURS

    from .maintenance import maintenance_flow
    from .pipeline import pipeline_flow

    if interval <= 0:
        raise InvalidArgumentError("interval", interval, "a positive number of seconds")
    root, module = resolve_target(lake, views)
    folder = str(resolve_inbox(inbox))
    # Recorded as `eventlake.flows.pipeline.pipeline_flow`, which imports the same from any
    # folder and any install; a file path would be relative to this process's folder.
    by_module = EntrypointType.MODULE_PATH
    pipeline = pipeline_flow.to_deployment(
        name="pipeline", interval=interval,
        parameters={"inbox": folder, "lake": root, "views": module},
        description="Ingest new inbox files, then refresh every view.",
        tags=["eventlake"], entrypoint_type=by_module)
    upkeep = maintenance_flow.to_deployment(
        name="maintenance", cron=maintenance_cron,
        parameters={"lake": root, "views": module,
                    "retention_hours": (DEFAULT_VACUUM_HOURS if retention_hours is None
                                        else retention_hours)},
        description="Compact small files, checkpoint and vacuum the lake.",
        tags=["eventlake"], entrypoint_type=by_module)
    # `to_deployment` returns a coroutine only when called from async code.
    assert isinstance(pipeline, RunnerDeployment) and isinstance(upkeep, RunnerDeployment)
    return [pipeline, upkeep]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eventlake.flows.serve",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--inbox", help="inbox folder (default: data/samples)")
    parser.add_argument("--lake", help="lake root (default: settings, or data/lake)")
    parser.add_argument("--views", help="module defining your views")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help=f"seconds between pipeline runs (default {DEFAULT_INTERVAL})")
    parser.add_argument("--maintenance-cron", default=DEFAULT_MAINTENANCE_CRON,
                        help=f"cron of the maintenance run (default {DEFAULT_MAINTENANCE_CRON!r})")
    args = parser.parse_args(argv)
    return serve(inbox=args.inbox, lake=args.lake, views=args.views, interval=args.interval,
                 maintenance_cron=args.maintenance_cron)


def serve(*, inbox: str | None = None, lake: str | None = None, views: str | None = None,
          interval: float = DEFAULT_INTERVAL,
          maintenance_cron: str = DEFAULT_MAINTENANCE_CRON) -> int:
    """Serve the deployments until interrupted; 1 (with a message) when no server is set."""
    privacy_defaults()
    if api_url() is None:
        print(NO_SERVER_MESSAGE, file=sys.stderr)
        return 1
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(inbox=inbox, lake=lake, views=views, interval=interval,
                               maintenance_cron=maintenance_cron))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
