"""`eventlake status`: each view's freshness, for people, schedulers and Prometheus."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from eventlake.cli._app import EXIT_OK, _open_existing, command, number_at_least
from eventlake.cli.output import print_json, say

# The exit code of a lake whose lag is over `--fail-if-lag-over` (like `verify`'s failed
# check, a finding rather than an error: the command itself worked).
EXIT_LAGGING = 3


def _status_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("only_views", nargs="*", metavar="VIEW",
                        help="only these views (default: every registered view)")
    parser.add_argument("--fail-if-lag-over", type=number_at_least(0), metavar="N",
                        help=f"exit {EXIT_LAGGING} when any view is more than N events behind "
                             "the log (0: any lag), for health checks and schedulers")
    parser.add_argument("--format", choices=("text", "json", "prometheus"), default=None,
                        help="output format (default text; --json is --format json; "
                             "prometheus: the text exposition format, for scraping)")
    parser.add_argument("--partitions", type=number_at_least(0), default=5, metavar="K",
                        help="name up to K partitions with the oldest unfolded events "
                             "(default 5)")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@command("status", help="how far behind the event log each view is (freshness)",
         configure=_status_args)
def cmd_status(args: argparse.Namespace) -> int:
    """Per view: watermark, lag in events, how old the oldest unfolded event is in event time and
    in ingest time, the partitions with the oldest unfolded events, the last refresh (when,
    how long) and the last error. --fail-if-lag-over N exits 3 when a view is more than N
    events behind.
    """
    lake = _open_existing(args)
    report = lake.freshness(args.only_views or None, partitions=args.partitions)
    shape = args.format or ("json" if args.json else "text")
    if shape == "json":
        print_json(report.to_json())
    elif shape == "prometheus":
        sys.stdout.write(report.prometheus())
    else:
        say(f"{lake.root}: log at seq {report.last_seq:,}")
        for view in report.views:
            state = "current" if view.current else f"{view.lag_events:,} events behind"
            if view.failing:
                state += ", last refresh FAILED"
            say(f"  {view.view} v{view.version}: watermark {view.watermark:,}, {state}")
            if not view.current:
                say(f"    oldest unfolded: ingested {_ago(view.ingest_time_lag_seconds)} "
                          f"ago, event time {_ago(view.event_time_lag_seconds)} ago")
                names = ", ".join(f"{p.partition} (from seq {p.first_unfolded_seq:,})"
                                  for p in view.lagging_partitions)
                if names:
                    say(f"    oldest lagging partitions: {names}")
            duration = ("" if view.last_refresh_seconds is None
                        else f", took {view.last_refresh_seconds:.2f} s")
            say(f"    last refresh: {_when(view.last_refresh_at)}{duration}")
            if view.last_error is not None:
                say(f"    last error ({_when(view.last_error_at)}): {view.last_error}")
    if args.fail_if_lag_over is not None and report.lagging(args.fail_if_lag_over):
        if shape == "text":
            names = ", ".join(v.view for v in report.lagging(args.fail_if_lag_over))
            say(f"lagging: {names} more than {args.fail_if_lag_over} events behind",
                stderr=True)
        return EXIT_LAGGING
    return EXIT_OK
