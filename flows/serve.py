"""Deployments with schedules, served by this process: `python -m eventlake.flows.serve` or
`eventlake serve`.

    eventlake-pipeline/pipeline-<lake>        every 60 s (interval)   pipeline_flow
    eventlake-maintenance/maintenance-<lake>  daily at 03:00 (cron)   maintenance_flow

`<lake>` (`lake_key`) is the lake folder's name and a hash of its absolute root, so two
lakes served from one Prefect server get deployments of their own. Each deployment carries a
Prefect deployment concurrency limit of 1: the server lets one run of it run at a time. A
pipeline run that comes due while the previous one still runs is cancelled by the server
("Deployment concurrency limit reached."; the next run folds whatever it missed), a
maintenance run waits for the slot ("AwaitingConcurrencySlot").

Schedules fire only against a real Prefect server: start one (`eventlake server start`, or
`prefect server start` and `export PREFECT_API_URL=http://127.0.0.1:4200/api`) and serve.
Without one Prefect would use a temporary server that lives as long as this process and never
runs schedules, so `main` refuses with an explanation instead.

SIGINT or SIGTERM stops serving: runs in flight are cancelled (every write is atomic and
idempotent, so the next run redoes what a cancelled one left), the schedules are paused, and
`serve` returns 130 (143 for SIGTERM) within a few seconds; a second signal stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eventlake.errors import InvalidArgumentError

from .settings import privacy_defaults, resolve_inbox, resolve_target

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.runner import Runner

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_MAINTENANCE_CRON",
    "NO_SERVER_MESSAGE",
    "STOP_SECONDS",
    "api_url",
    "deployments",
    "lake_key",
    "main",
    "serve",
]

DEFAULT_INTERVAL = 60
DEFAULT_MAINTENANCE_CRON = "0 3 * * *"
# How long a stop waits for runs in flight to be cancelled and the schedules paused before
# it gives up on a clean shutdown (Prefect checks a killed run's process every 3 s).
STOP_SECONDS = 15.0
NO_SERVER_MESSAGE = """\
eventlake serve needs a running Prefect server: PREFECT_API_URL is not set, and the temporary
server Prefect would start instead lives only as long as this process and never runs schedules.

  1. start a server:                  eventlake server start
     (or `prefect server start` in another terminal, then
      export PREFECT_API_URL=http://127.0.0.1:4200/api)
  2. serve the deployments:           eventlake serve

(or `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` to keep it in your profile)
To run the pipeline once without a server: eventlake pipeline"""


def api_url() -> str | None:
    """The Prefect API this process talks to (environment or profile), None when unset."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def _use_recorded_server() -> None:
    """Without `PREFECT_API_URL`, the server `eventlake server start` recorded, if it runs;
    set before Prefect reads its settings (it reads them once, on import)."""
    if os.environ.get("PREFECT_API_URL", "").strip():
        return
    from .server import reusable_api_url

    url = reusable_api_url()
    if url:
        os.environ["PREFECT_API_URL"] = url


def lake_key(root: str) -> str:
    """A short name of the lake at `root` for deployment names: the folder's name and a hash
    of the whole root, the same in every process (`root` is absolute, see `resolve_target`)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.rstrip("/").rsplit("/", 1)[-1]).strip("-.")
    digest = hashlib.sha256(root.encode("utf-8")).hexdigest()[:8]
    return f"{(name or 'lake')[:40]}-{digest}"


def deployments(*, inbox: str | None = None, lake: str | None = None,
                views: str | None = None, interval: float = DEFAULT_INTERVAL,
                maintenance_cron: str = DEFAULT_MAINTENANCE_CRON,
                retention_hours: float | None = None) -> list[RunnerDeployment]:
    """The pipeline (every `interval` seconds) and maintenance (`maintenance_cron`)
    deployments of one lake, one run of each at a time, with the inbox, lake and views
    resolved now to absolute paths."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import RunnerDeployment
    from prefect.types.entrypoint import EntrypointType

    from eventlake.ops.maintenance import DEFAULT_VACUUM_HOURS

    from .maintenance import maintenance_flow
    from .pipeline import pipeline_flow

    if interval <= 0:
        raise InvalidArgumentError("interval", interval, "a positive number of seconds")
    root, module = resolve_target(lake, views)
    folder = str(resolve_inbox(inbox))
    key = lake_key(root)
    # Recorded as `eventlake.flows.pipeline.pipeline_flow`, which imports the same from any
    # folder and any install; a file path would be relative to this process's folder.
    by_module = EntrypointType.MODULE_PATH
    # A pipeline run that would overlap the running one is dropped, not queued: queued runs
    # of a pipeline slower than its interval would pile up without end, and the next run
    # catches up on everything a dropped one would have done.
    pipeline = pipeline_flow.to_deployment(
        name=f"pipeline-{key}", interval=interval,
        parameters={"inbox": folder, "lake": root, "views": module},
        description=f"Ingest new inbox files into {root}, then refresh every view.",
        tags=["eventlake", f"lake:{key}"], entrypoint_type=by_module,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW))
    # A daily run waits for the slot instead: dropping it would skip a day's upkeep.
    upkeep = maintenance_flow.to_deployment(
        name=f"maintenance-{key}", cron=maintenance_cron,
        parameters={"lake": root, "views": module,
                    "retention_hours": (DEFAULT_VACUUM_HOURS if retention_hours is None
                                        else retention_hours)},
        description=f"Compact small files, checkpoint and vacuum {root}.",
        tags=["eventlake", f"lake:{key}"], entrypoint_type=by_module,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE))
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
    """Serve the deployments until SIGINT (returns 130) or SIGTERM (143); 1 (with a
    message) when no server is set."""
    privacy_defaults()
    _use_recorded_server()
    if api_url() is None:
        print(NO_SERVER_MESSAGE, file=sys.stderr)
        return 1
    from prefect.runner import Runner

    chosen = deployments(inbox=inbox, lake=lake, views=views, interval=interval,
                         maintenance_cron=maintenance_cron)
    # Polled as often as the pipeline comes due (Prefect's default is every 10 s).
    runner = Runner(name=f"eventlake-serve-{chosen[0].name.removeprefix('pipeline-')}",
                    query_seconds=min(10.0, max(1.0, interval)))
    for deployment in chosen:
        runner.add_deployment(deployment)
    for deployment in chosen:
        print(f"serving {deployment.flow_name}/{deployment.name} ({_when(deployment)}, one "
              "run at a time)", file=sys.stderr, flush=True)
    print("stop with Ctrl-C", file=sys.stderr, flush=True)
    return asyncio.run(_run_until_signal(runner))


def _when(deployment: RunnerDeployment) -> str:
    schedule = deployment.schedules[0].schedule if deployment.schedules else None
    interval = getattr(schedule, "interval", None)
    if interval is not None:
        return f"every {interval.total_seconds():g} s"
    return f"cron {getattr(schedule, 'cron', None)!r}"


async def _run_until_signal(runner: Runner) -> int:
    """Run `runner` until a signal; returns 128 + the signal's number.

    The signals are the event loop's, not Python's KeyboardInterrupt: an interrupt raised
    anywhere inside the runner's task groups would leave their tasks half-cancelled (the
    tracebacks of a second Ctrl-C). A first signal stops the runner, which cancels the runs
    in flight and pauses the schedules; a second one, or `STOP_SECONDS`, cancels it outright.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []
    stopping = asyncio.Event()
    running = asyncio.ensure_future(runner.start())

    def on_signal(number: int) -> None:
        received.append(number)
        if stopping.is_set():
            running.cancel()
        stopping.set()

    # One turn of the loop: `Runner.start` sets its own SIGTERM handler first, ours replaces it.
    await asyncio.sleep(0)
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, int(number))
    waiting = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.is_set():
        waiting.cancel()
        running.result()  # the runner ended by itself: its error, if any
        return 0
    print("stopping: cancelling runs in flight...", file=sys.stderr, flush=True)
    try:
        async with asyncio.timeout(STOP_SECONDS):
            if runner.started:
                await runner.astop()
            else:  # still connecting: nothing runs yet, nothing to wait for
                running.cancel()
            await asyncio.shield(running)
    except (TimeoutError, asyncio.CancelledError):
        running.cancel()
    with contextlib.suppress(BaseException):
        await running
    print("stopped", file=sys.stderr, flush=True)
    return 128 + received[0]


if __name__ == "__main__":
    raise SystemExit(main())
