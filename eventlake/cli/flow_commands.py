"""Commands that run the Prefect flows: pipeline, serve, maintain.

`eventlake.flows` (and so Prefect) is imported inside the command functions only; the library
never imports Prefect, and `eventlake --help` stays fast. Without the `flows` extra, `pipeline`
and `serve` say so on one line and exit 2 (`EXIT_USAGE`: the installation, not the lake, is
what to fix).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from eventlake.cli._app import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _open_existing,
    _report,
    _storage_options,
    command,
    number_at_least,
)
from eventlake.cli.log_commands import chosen_layout, layout_options
from eventlake.cli.output import human_bytes, print_json, print_pairs, say
from eventlake.cli.progress import progress_display
from eventlake.cli.view_commands import EXIT_PARTITIONS_FAILED
from eventlake.config import resolve_lake
from eventlake.errors import CommandError

if TYPE_CHECKING:
    from types import ModuleType

    from eventlake.lake import Lake

# `pipeline --fail-on-quarantine`: the run landed what it could, but records or whole files
# went to quarantine (3 is `status --fail-if-lag-over`, 4 failed partitions).
EXIT_QUARANTINED = 5
FLOWS_EXTRA_HINT = "pip install 'eventlake[flows]'"


def missing_flows_extra(command_name: str) -> str | None:
    """Why `eventlake <command_name>` cannot run here (Prefect is not installed), or None.
    Found without
    importing Prefect: it reads its settings once, on import, and the commands set some
    first (`quiet_prefect`, the server's `PREFECT_API_URL`)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("prefect") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (f"`eventlake {command_name}` needs the 'flows' extra (prefect is not installed): "
            f"{FLOWS_EXTRA_HINT}")


def _without_flows(args: argparse.Namespace, command_name: str) -> int | None:
    """EXIT_USAGE, with its one line on stderr (a JSON object with --json), when the flows
    extra is missing."""
    problem = missing_flows_extra(command_name)
    if problem is None:
        return None
    _report(args, problem, kind="MissingExtra", code=EXIT_USAGE)
    return EXIT_USAGE


def _flows(name: str) -> ModuleType:
    """Import `eventlake.flows.<name>`, saying how to install Prefect when it is missing."""
    import importlib

    try:
        return importlib.import_module(f"eventlake.flows.{name}")
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise CommandError(
            f"the Prefect flows need the 'flows' extra ({missing} is missing): "
            f"{FLOWS_EXTRA_HINT}") from exc


def prefect_api(*, use_recorded: bool = True) -> tuple[str | None, str]:
    """The Prefect server this process will use, and where that came from, set in the
    environment before Prefect reads its settings: `$PREFECT_API_URL`, else the server
    `eventlake server start` recorded (when it answers), else the Prefect profile's, else
    (None) a temporary server of this process."""
    given = os.environ.get("PREFECT_API_URL", "").strip()
    if given:
        return given, "PREFECT_API_URL"
    server = _flows("server")
    if use_recorded:
        recorded = server.reusable_api_url()
        if recorded:
            os.environ["PREFECT_API_URL"] = recorded
            return recorded, f"eventlake server ({server.record_path()})"
    profile = _flows("serve").api_url()
    return (profile, "the Prefect profile") if profile else (None, "temporary")


# -- pipeline --------------------------------------------------------------------------------


def _pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inbox", metavar="DIR",
                        help="folder of JSON Lines / CSV / Parquet files to ingest (default: "
                             "$EVENTLAKE_INBOX, pyproject [tool.eventlake] inbox, or the "
                             "sample inbox data/samples)")
    parser.add_argument("--task-runner", choices=("threads", "dask"), default="threads",
                        help="where view refreshes run: a bounded thread pool (default) or "
                             "Dask worker processes")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="threads, or Dask worker processes (default: "
                             "$EVENTLAKE_FLOW_WORKERS, pyproject [tool.eventlake] workers, "
                             "or min(4, CPUs))")
    parser.add_argument("--dask-address", metavar="ADDR",
                        help="scheduler address of an existing Dask cluster (implies "
                             "--task-runner dask); --task-runner dask without it takes "
                             "$EVENTLAKE_DASK_ADDRESS, pyproject [tool.eventlake] "
                             "dask_address, else a local cluster")
    parser.add_argument("--fail-on-quarantine", action="store_true",
                        help=f"exit {EXIT_QUARANTINED} when any record or file went to "
                             "quarantine (the good records still land)")
    parser.add_argument("--prepare-tasks", action="store_true",
                        help="read and check the inbox files as tasks on the task runner, "
                             "several at a time, while the flow lands them in name order "
                             "(the same batches and seq order)")
    parser.add_argument("--temporary-server", action="store_true",
                        help="run on a temporary Prefect server of this process even when "
                             "`eventlake server start` recorded one")


@command("pipeline", help="run the Prefect pipeline once: ingest the inbox, refresh the views",
         configure=_pipeline_args)
def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run the pipeline flow once: every new file of the inbox lands as one batch (bad records
    go to <lake>/quarantine/), then every view is refreshed, and a summary is printed.
    The Prefect server is $PREFECT_API_URL, else the one `eventlake server start` started,
    else the profile's; without any, a temporary one of this process (its start-up takes
    tens of seconds, and its logs and artifacts go with it). Exit 4 when partitions failed,
    5 with --fail-on-quarantine when anything was quarantined.
    """
    started = time.perf_counter()
    if (code := _without_flows(args, "pipeline")) is not None:
        return code
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {args.workers}")
    settings = _flows("settings")
    settings.quiet_prefect(debug=args.debug)
    inbox = settings.resolve_inbox(args.inbox)
    lake = resolve_lake(args.lake)
    kind = "dask" if args.dask_address else args.task_runner
    url, source = prefect_api(use_recorded=not args.temporary_server)
    if not args.json:
        if url is None:
            note = ("running on a temporary Prefect server (start-up takes tens of seconds; "
                    "`eventlake server start` keeps one running for every run)...")
            if kind == "dask" and not args.dask_address:
                note += ("\nwith Dask and no PREFECT_API_URL every worker process starts its "
                         "own temporary server too, which takes tens of seconds each")
        else:
            note = f"Prefect server {url} (from {source})"
        say(note, stderr=True, style="dim")
    pipeline = _flows("pipeline")
    flow_started = time.perf_counter()
    summary = pipeline.run_pipeline(str(inbox), lake=lake.value, views=args.views,
                                    task_runner=kind, workers=args.workers,
                                    address=args.dask_address,
                                    storage_options=_storage_options(args) or None,
                                    prepare_tasks=args.prepare_tasks)
    elapsed = time.perf_counter() - started
    # What Prefect cost around the flow's own work: the server's start-up (a temporary
    # one's, or none), creating the run, its task runner, reporting its states.
    overhead = max(0.0, time.perf_counter() - flow_started - summary.seconds)
    code = pipeline_exit_code(summary, fail_on_quarantine=args.fail_on_quarantine)
    if args.json:
        print_json({**summary.to_json(), "total_seconds": round(elapsed, 3),
                    "prefect_seconds": round(overhead, 3),
                    "prefect_server": url or "temporary", "exit_code": code})
        return code
    _print_summary(summary, elapsed, overhead, server=url or "temporary",
                   explicit_lake=lake.source != "default")
    if code == EXIT_QUARANTINED:
        say(f"error: {_quarantined_text(summary)} (--fail-on-quarantine)", stderr=True)
    elif code == EXIT_PARTITIONS_FAILED:
        failed = ", ".join(f"{name} ({n})" for name, n in summary.failed.items() if n)
        say(f"warning: failed partitions in {failed}; see `eventlake views`, then "
            "`eventlake materialize --retry-failed`", stderr=True)
    return code


def pipeline_exit_code(summary: Any, *, fail_on_quarantine: bool) -> int:
    """4 when a view has failed partitions (as `materialize`), else 5 when something was
    quarantined and that should fail the run, else 0."""
    if any(summary.failed.values()):
        return EXIT_PARTITIONS_FAILED
    if fail_on_quarantine and (summary.quarantined or summary.unreadable):
        return EXIT_QUARANTINED
    return EXIT_OK


def _quarantined_text(summary: Any) -> str:
    text = f"{summary.quarantined} bad record(s)"
    if summary.unreadable:
        text += f", {summary.unreadable} unreadable file(s)"
    if (summary.quarantined or summary.unreadable) and summary.quarantine_dir:
        text += f" -> {summary.quarantine_dir}"
    return text


def _print_summary(summary: Any, elapsed: float, overhead: float, *, server: str,
                   explicit_lake: bool) -> None:
    say(f"pipeline: {summary.inbox} -> {summary.lake}", style="bold")
    views = ", ".join(f"{name} (+{n:,} events)" for name, n in summary.views.items())
    print_pairs([
        ("files", f"{summary.files} in inbox: {summary.batches} new, "
                  f"{summary.duplicates} already ingested"),
        ("events", f"{summary.events:,} ingested from {summary.records:,} records read"),
        ("quarantined", _quarantined_text(summary)),
        ("views", views or "-"),
        ("last seq", f"{summary.last_seq:,}, views lag by {summary.max_lag:,}"),
        ("time", f"{elapsed:.1f} s (flow {summary.seconds:.1f} s, Prefect start-up and "
                 f"overhead {overhead:.1f} s, {server} server)"),
    ], indent="  ")
    lake_flag = f" --lake {summary.lake}" if explicit_lake else ""
    say()
    say("query it:")
    say(f'  eventlake sql "select partition_id, count(*) from events group by 1"{lake_flag}')
    say(f"  eventlake events --limit 5{lake_flag}")


# -- serve -----------------------------------------------------------------------------------


def _serve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inbox", metavar="DIR",
                        help="inbox folder of the pipeline deployment (default: "
                             "$EVENTLAKE_INBOX, pyproject [tool.eventlake] inbox, or "
                             "data/samples)")
    parser.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between pipeline runs (default 60)")
    parser.add_argument("--maintenance-cron", default="0 3 * * *", metavar="CRON",
                        help="cron schedule of the maintenance flow (default '0 3 * * *', "
                             "daily at 03:00)")


@command("serve", help="serve the pipeline and maintenance deployments on their schedules",
         configure=_serve_args)
def cmd_serve(args: argparse.Namespace) -> int:
    """Register and serve two deployments of the lake with a running Prefect server: the
    pipeline every --interval seconds and maintenance on --maintenance-cron, each one run at
    a time (a pipeline run due while one runs is cancelled by the server and says so). The
    server is $PREFECT_API_URL, else the one `eventlake server start` started, else the
    profile's. Runs until Ctrl-C (exit 130) or SIGTERM (exit 143): runs in flight are
    cancelled, the schedules paused.
    """
    if (code := _without_flows(args, "serve")) is not None:
        return code
    if args.interval <= 0:
        raise CommandError(f"--interval must be positive, got {args.interval:g}")
    _flows("settings").privacy_defaults()
    url, source = prefect_api()
    if url is None:
        # `flows.serve` explains this on several lines; an error of the CLI is one line.
        raise CommandError(
            "eventlake serve needs a running Prefect server: PREFECT_API_URL is not set and "
            "`eventlake server start` started none; run `eventlake server start` (or "
            "`prefect server start` and `export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api`); to run the pipeline once without a "
            "server: eventlake pipeline")
    say(f"Prefect server {url} (from {source})", stderr=True, style="dim")
    code = _flows("serve").serve(inbox=args.inbox, lake=args.lake, views=args.views,
                                 interval=args.interval,
                                 maintenance_cron=args.maintenance_cron)
    # 130 (EXIT_INTERRUPTED) after Ctrl-C, 143 after SIGTERM: the shell's convention.
    return code if code == EXIT_OK or code >= EXIT_INTERRUPTED else EXIT_ERROR


# -- maintain --------------------------------------------------------------------------------


def _maintain_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vacuum-hours", type=float, default=None, metavar="H",
                        help="delete unreferenced files older than H hours (default 24)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only report what would be compacted and vacuumed (or moved, "
                             "with --relayout)")
    group = parser.add_argument_group("relayout (instead of the maintenance pass)")
    layout_options(group,  # type: ignore[arg-type]
                   flag="--relayout",
                   what="rewrite the event log into this layout in one atomic commit, every "
                        "seq, event id, batch key and view watermark kept (stop writers "
                        "first on object storage); only that, no compaction or vacuum")
    group.add_argument("--chunk-events", type=number_at_least(1, what="a count >= 1"),
                       metavar="N", default=None,
                       help="events read and written at a time, in whole partitions (default "
                            "1,000,000): bounds the relayout's memory")


@command("maintain", help="compact small files, checkpoint and vacuum the lake; or relayout "
                          "the event log",
         configure=_maintain_args)
def cmd_maintain(args: argparse.Namespace) -> int:
    """One maintenance pass, the same as the scheduled maintenance flow: compact small event
    files that every view has folded, compact view tables, write Delta checkpoints, and
    delete files that no table version of the last --vacuum-hours references. Runs in this
    process (no Prefect server needed). With --relayout it moves the event log to the other
    layout (or another bucket count) instead: readers see the old layout until its one
    commit, a crash leaves the old layout, and an append that lands meanwhile makes it fail
    with nothing changed (run it again).
    """
    from eventlake.ops.maintenance import DEFAULT_VACUUM_HOURS, maintain

    hours = DEFAULT_VACUUM_HOURS if args.vacuum_hours is None else args.vacuum_hours
    if hours < 0:
        raise CommandError(f"--vacuum-hours must be 0 or more, got {hours:g}")
    if args.layout is None and args.buckets is not None:
        raise CommandError("--buckets goes with --relayout buckets")
    if args.layout is None and args.chunk_events is not None:
        raise CommandError("--chunk-events goes with --relayout")
    if args.layout is not None and args.vacuum_hours is not None:
        raise CommandError("--relayout runs instead of the maintenance pass: --vacuum-hours "
                           "goes with a plain `eventlake maintain`")
    lake = _open_existing(args)
    if args.layout is not None:
        return _relayout(args, lake)
    result = maintain(lake, retention_hours=hours, dry_run=args.dry_run)
    events = result.events
    vacuumed = {name: list(r.files) for name, r in result.vacuumed.items()}
    if args.json:
        from dataclasses import asdict

        print_json({"lake": lake.root, "dry_run": args.dry_run, "retention_hours": hours,
                    "events": asdict(events), "views": result.views,
                    "checkpoints": list(result.checkpoints), "vacuumed": vacuumed})
        return EXIT_OK
    would = "would " if args.dry_run else ""
    say(f"maintenance of {lake.root}{' (dry run)' if args.dry_run else ''}", style="bold")
    say(f"  events: {would}compact {events.files_removed} file(s) of {events.partitions} "
        f"partition(s) into {events.files_added} ({events.rows:,} rows, all views folded up "
        f"to seq {events.watermark:,})")
    for name, metrics in result.views.items():
        say(f"  view {name}: {metrics.get('numFilesRemoved', 0)} file(s) compacted")
    if result.checkpoints:
        say(f"  checkpoints: {', '.join(result.checkpoints)}")
    for name, files in vacuumed.items():
        say(f"  vacuum {name}: {would}delete {len(files)} file(s) older than {hours:g} h")
    info = lake.info()
    say(f"  now {info.files:,} event file(s), {human_bytes(info.size_bytes)}")
    return EXIT_OK


def _relayout(args: argparse.Namespace, lake: Lake) -> int:
    """`maintain --relayout`: progress on stderr, one summary line (or JSON) on stdout."""
    from dataclasses import asdict

    from eventlake.engine.relayout import DEFAULT_RELAYOUT_CHUNK, RelayoutResult, relayout

    target = chosen_layout(args)
    assert target is not None
    current = lake.layout
    head = f"relayout of {lake.root}{' (dry run)' if args.dry_run else ''}"
    if current == target or args.dry_run:
        # Nothing to do, or only to say what would move: the figures of the log as it is.
        info = None if current == target else lake.info()
        result = RelayoutResult(current.describe(), target.describe(),
                                0 if info is None else info.events,
                                0 if info is None else info.files, 0, None, 0.0)
        if info is None:
            summary = f"the event log already has the {current.describe()} layout; nothing to do"
        else:
            summary = (f"would move {result.events:,} events in {result.files_removed:,} "
                       f"file(s) from {result.before} to {result.after}")
    else:
        chunk = args.chunk_events or DEFAULT_RELAYOUT_CHUNK
        say(f"{head}: {current.describe()} -> {target.describe()}, {chunk:,} events at a time",
            stderr=True, style="dim")
        # A line per chunk, on a terminal or in a log: a relayout of a big log takes a while.
        with progress_display(lines=lambda p: f"  {p.done}/{p.total} chunk(s) written"
                              ) as progress:
            result = relayout(lake.log, target, chunk_events=chunk, progress=progress)
        summary = (f"{result.before} -> {result.after}: {result.events:,} events moved from "
                   f"{result.files_removed:,} file(s) into {result.files_added:,} in "
                   f"{result.seconds:.1f} s (event log version {result.version}); the old "
                   "files stay for time travel until a vacuum past its retention")
    if args.json:
        print_json({"lake": lake.root, "dry_run": args.dry_run, "changed": result.changed,
                    **asdict(result)})
    else:
        say(f"{head}: {summary}")
    return EXIT_OK
