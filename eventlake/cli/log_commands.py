"""Commands on the event log: init, ingest, events, info, restore."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlake.cli._app import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    _open_existing,
    _open_lake,
    _storage_options,
    command,
    number_at_least,
)
from eventlake.cli.output import (
    Column,
    console,
    human_bytes,
    plural,
    print_json,
    print_pairs,
    print_table,
    say,
)
from eventlake.cli.progress import progress_display
from eventlake.config import resolve_lake
from eventlake.errors import CommandError, LakeNotFoundError

if TYPE_CHECKING:
    from eventlake.ingest.inbox import FileIngestResult
    from eventlake.lake import Lake
    from eventlake.model.layout import Layout
    from eventlake.model.progress import ProgressSink
    from eventlake.ops.restore import RestorePlan


# -- init ------------------------------------------------------------------------------------


# `eventlake.layout` imports numpy and pyarrow, which the parser must not load (`--help` stays
# fast): its names and limits are repeated here, and tests/engine/test_relayout.py checks
# they agree.
LAYOUT_CHOICES = ("partition_id", "buckets")
DEFAULT_LOG_BUCKETS = 64
MAX_BUCKETS = 65_536


def layout_options(parser: argparse.ArgumentParser, *, flag: str, what: str) -> None:
    """`<flag> partition_id|buckets` and `--buckets N` (init and maintain --relayout)."""
    parser.add_argument(flag, choices=LAYOUT_CHOICES, default=None, dest="layout",
                        help=what)
    parser.add_argument("--buckets", type=number_at_least(1, what="a bucket count >= 1"),
                        metavar="N", default=None,
                        help=f"bucket count of the buckets layout (default "
                             f"{DEFAULT_LOG_BUCKETS}, at most {MAX_BUCKETS:,}; implies "
                             "buckets)")


def chosen_layout(args: argparse.Namespace) -> Layout | None:
    """The layout `--layout`/`--relayout` and `--buckets` name; None when neither is given."""
    from eventlake.model.layout import Layout

    if args.layout is None and args.buckets is None:
        return None
    return Layout.named(args.layout or "buckets", buckets=args.buckets)


def _init_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH",
                        help="where to create the lake (default: --lake or the settings)")
    layout_options(parser, flag="--layout",
                   what="physical layout of the event log: partition_id (one folder per "
                        "partition; up to ~10k partitions) or buckets (hash buckets of "
                        "partition_id; many partitions, small batches). Default: "
                        "$EVENTLAKE_LAYOUT, else partition_id; see the README's Layouts")


@command("init", help="create an empty lake", configure=_init_args)
def cmd_init(args: argparse.Namespace) -> int:
    """Create an empty lake (the event log table) at PATH with the chosen layout; an existing
    lake is left as it is (naming another layout for it is an error: move it with `eventlake
    maintain --relayout`).
    """
    root = args.path if args.path is not None else resolve_lake(args.lake).value
    layout = chosen_layout(args)
    try:
        lake = _open_lake(args, root, create=False)
        created = False
    except LakeNotFoundError:
        _create_log(args, root, layout)
        lake = _open_lake(args, root, create=False)
        created = True
    current = lake.layout
    if layout is not None and layout != current:
        count = f" --buckets {layout.buckets}" if layout.buckets is not None else ""
        raise CommandError(
            f"the lake at {lake.root} already exists with the {current.describe()} layout, "
            f"not {layout.describe()}: move it with `eventlake maintain --relayout "
            f"{layout.kind}{count}`")
    if args.json:
        print_json({"root": lake.root, "created": created, "layout": current.kind,
                    "buckets": current.buckets})
    elif created:
        say(f"created lake at {lake.root} (layout {current.describe()})")
        say(f"next: eventlake ingest FILE... --lake {lake.root}")
    else:
        say(f"lake already exists at {lake.root} ({lake.last_seq()} events, layout "
            f"{current.describe()})")
    return EXIT_OK


def _create_log(args: argparse.Namespace, root: str | None, layout: Layout | None) -> None:
    """Create the lake's event log with `layout` (None: the default layout)."""
    from eventlake.config import resolve_storage_options
    from eventlake.lake import Lake

    assert root is not None
    Lake.open(root, storage_options=resolve_storage_options(_storage_options(args)),
              create=True, layout=None if layout is None else layout.kind,
              buckets=None if layout is None else layout.buckets)


# -- ingest ----------------------------------------------------------------------------------


def _ingest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="JSON Lines (.jsonl/.ndjson/.json), CSV (.csv, JSON payload "
                             "column) or Parquet (.parquet) files; a folder means its files "
                             "of those types, in name order, except names starting with '.' "
                             "or '_' (files still being written), as the inbox flow lists them")
    parser.add_argument("--producer", metavar="NAME",
                        help="producer name of the batches (default: inbox); each file's "
                             "batch number is its name and content hash")
    parser.add_argument("--materialize", action="store_true",
                        help="refresh every view after the files landed, as `eventlake "
                             "materialize` does (and exit as it does: 4 while a partition is "
                             "failed, 1 when a view could not refresh)")
    parser.add_argument("--quarantine", action="store_true",
                        help="land the good records of a file and write the bad ones to "
                             "<lake>/quarantine/<file>.jsonl (default: a bad record fails the "
                             "file and nothing of it is written)")
    parser.add_argument("--quarantine-dir", metavar="DIR",
                        help="folder for quarantine files (implies --quarantine; default "
                             "<lake>/quarantine, or data/quarantine/<bucket>/<prefix> under the "
                             "working folder for a lake on object storage)")
    parser.add_argument("--chunk-events", type=number_at_least(1, what="a positive integer"),
                        metavar="N", default=None,
                        help="land each file in chunks of N records (default 50,000): memory "
                             "follows the chunk; an ingest stopped midway resumes at the next "
                             "chunk (with the chunk size it started with)")
    parser.add_argument("--workers", type=number_at_least(1, what="a positive integer"),
                        metavar="N", default=None,
                        help="read and check the files on N spawned processes, several files "
                             "at a time, while this process lands them in order (the same "
                             "batches, seq order and quarantine files as without it)")
    parser.add_argument("--as-new", action="store_true",
                        help="land a file whose name already landed with other content as a "
                             "new file (default: refuse; replay corrected quarantined records "
                             "with `eventlake quarantine replay`)")


def _input_files(names: Sequence[str]) -> list[Path]:
    from eventlake.ingest.files import FORMATS, inbox_files

    found: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            # The inbox's own listing: a `.name` or `_name` file is still being written.
            found.extend(inbox_files(path))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"no such file or folder: {name}")
    if not found:
        raise CommandError(f"no input files (looked for {', '.join(FORMATS)} files in "
                           f"{', '.join(names)})")
    return found


def _quarantine_dir(args: argparse.Namespace, lake: Lake) -> Path | None:
    if args.quarantine_dir is not None:
        return Path(args.quarantine_dir)
    if not args.quarantine:
        return None
    from eventlake.ingest.inbox import default_quarantine_dir

    return default_quarantine_dir(lake)


def _describe_ingest(result: dict[str, Any]) -> str:
    name = Path(result["file"]).name
    if result["duplicate"]:
        text = f"{name}: already ingested as batch {result['batch_id']} (duplicate, skipped)"
    elif result["records"] is None:
        text = f"{name}: unreadable, nothing written"
    elif result["events"]:
        text = f"{name}: {result['events']} events, seq {result['first_seq']}..{result['last_seq']}"
    else:
        text = f"{name}: no events"
    if result.get("resumed_chunks"):
        text += f" (resumed: {result['resumed_chunks']} chunk(s) had landed before)"
    if result["quarantined"]:
        text += (f"; {result['quarantined']} bad record(s) quarantined to "
                 f"{result['quarantine_file']}")
    return text


def _describe_stop(result: dict[str, Any]) -> str:
    name = Path(result["file"]).name
    return (f"{name}: stopped after chunk {result['chunks']} ({result['records']:,} records "
            f"read, {result['events']:,} events landed in this run, last seq "
            f"{result['last_seq']}); the file is not complete: run the same command again "
            "to resume at the next chunk")


@command("ingest", help="append JSON Lines / CSV / Parquet files as batches",
         configure=_ingest_args)
def cmd_ingest(args: argparse.Namespace) -> int:
    """Append each file exactly once, in chunks of --chunk-events records (memory follows the
    chunk). A file's batch identity is its name plus a hash of its content, so ingesting the
    same file again is a no-op (reported as duplicate); a name that landed with other content
    is refused (see --as-new and `eventlake quarantine`). By default a file with any bad
    record fails with the first problem (file, line, field) and nothing of it is written;
    files before it have landed, and a re-run skips them. With --materialize the views are
    refreshed once the files landed.

    Ctrl-C stops at the next chunk boundary: what landed is reported and the exit code is
    130 (a re-run resumes); a Ctrl-C once everything landed reports it and exits as if none
    came. A second Ctrl-C stops at once (a re-run still lands each record once).
    """
    from eventlake.ingest.files import DEFAULT_PRODUCER

    files = _input_files(args.files)
    root = resolve_lake(args.lake).value
    lake = _open_lake(args, root, create=True)
    quarantine = _quarantine_dir(args, lake)
    producer = args.producer or DEFAULT_PRODUCER
    with deferred_interrupt() as interrupt:
        return _ingest_files(args, lake, files, quarantine, producer, interrupt)


def _ingest_files(args: argparse.Namespace, lake: Lake, files: list[Path],
                  quarantine: Path | None, producer: str, interrupt: _Interrupt) -> int:
    from eventlake.model.progress import Progress

    results: list[dict[str, Any]] = []
    stopped: dict[str, Any] | None = None
    with progress_display(quiet=args.json) as progress:
        landing = _landing(args, lake, files, quarantine, producer, progress, interrupt)
        for done, landed in enumerate(landing, start=1):
            result = landed.to_json()
            results.append(result)
            if not result["complete"]:
                stopped = result
                break
            if not args.json:
                say(_describe_ingest(result))
            if len(files) > 1:
                progress(Progress("files", done, len(files), "files"))
            if interrupt.requested():
                break
        landing.close()  # stops the workers (if any) before the report
    total = sum(r["events"] for r in results)
    last_seq = lake.last_seq()
    unfinished = [str(p) for p in files[len(results) - (stopped is not None):]]
    if unfinished:  # only a Ctrl-C leaves files behind
        if args.json:
            print_json({"lake": lake.root, "files": results, "events": total,
                        "last_seq": last_seq, "interrupted": True, "not_ingested": unfinished})
        else:
            if stopped is not None:
                say(_describe_stop(stopped))
            say(f"interrupted: {total} events landed from {len(results)} file(s) "
                f"(last seq {last_seq}); not complete: {len(unfinished)} file(s); run the "
                "same command again to go on, nothing lands twice", stderr=True)
        return EXIT_INTERRUPTED
    refresh = None
    if args.materialize:
        from eventlake.cli.view_commands import refresh_views

        # Once for all the files: the views end where a refresh after each would leave them.
        # A Ctrl-C now stops the refresh at once (each view commit is atomic on its own).
        try:
            with interrupt.immediate():
                refresh = refresh_views(lake, list(lake.views.values()), quiet=args.json)
        except KeyboardInterrupt:
            say(f"ingested {total} events from {len(files)} file(s) into {lake.root} "
                f"(last seq {last_seq}); interrupted while refreshing the views: the next "
                "`eventlake materialize` catches up", stderr=True)
            return EXIT_INTERRUPTED
    if args.json:
        print_json({"lake": lake.root, "files": results, "events": total,
                    "quarantined": sum(r["quarantined"] for r in results),
                    "last_seq": last_seq,
                    **({"materialized": refresh.to_json()} if refresh is not None else {})})
    else:
        say(f"ingested {total} events from {len(files)} file(s) into {lake.root} "
            f"(last seq {last_seq})")
        if interrupt.requested():
            say("(Ctrl-C came once everything had landed: nothing was cut short)",
                stderr=True)
        if refresh is not None:
            refresh.report()
    return EXIT_OK if refresh is None else refresh.exit_code


def _landing(args: argparse.Namespace, lake: Lake, files: list[Path], quarantine: Path | None,
             producer: str, progress: ProgressSink, interrupt: _Interrupt
             ) -> Generator[FileIngestResult, None, None]:
    """Each file's result as it lands: `ingest_file` one file after another, or with
    `--workers` the files prepared on spawned processes (`eventlake.ingest.parallel`)."""
    from eventlake.ingest.inbox import DEFAULT_CHUNK_EVENTS
    from eventlake.ingest.parallel import IngestOptions, iter_ingest_on

    # The quarantine file keeps the CLI's historical name `<file name>.jsonl`.
    options = IngestOptions(producer, quarantine, quarantine is not None,
                            lambda path: f"{path.name}.jsonl",
                            args.chunk_events or DEFAULT_CHUNK_EVENTS, args.as_new, progress,
                            interrupt.requested)
    if not args.workers:
        for path in files:
            yield options.serial(lake, path)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # The workers ignore Ctrl-C (the terminal sends it to them too): the first one stops
    # this process at a chunk boundary, which then stops them.
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_ignore_interrupts) as pool:
        try:
            yield from iter_ingest_on(lake, files, executor=pool, options=options)
        except KeyboardInterrupt:
            # A second Ctrl-C stops at once: the workers commit nothing, so they are ended
            # rather than waited for (what they staged is for `doctor --fix`).
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Interrupt:
    """Ctrl-Cs seen while `deferred_interrupt` holds; `immediate()` makes the first raise."""

    def __init__(self) -> None:
        self.count = 0
        self.raising = False

    def requested(self) -> bool:
        return self.count > 0

    @contextmanager
    def immediate(self) -> Iterator[None]:
        self.raising = True
        try:
            yield
        finally:
            self.raising = False


@contextmanager
def deferred_interrupt() -> Iterator[_Interrupt]:
    """While ingesting, the first Ctrl-C only asks to stop: the chunk being read or committed
    finishes and lands, then the ingest stops at that boundary and says how far it got (a
    KeyboardInterrupt between a commit and its report would hide what landed). A second
    Ctrl-C raises KeyboardInterrupt at once. Outside the main thread nothing changes."""
    import signal
    import threading

    state = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: object) -> None:
        state.count += 1
        if state.count > 1 or state.raising:
            raise KeyboardInterrupt
        print("stopping after the chunk being landed (Ctrl-C again to stop at once)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


# -- events ----------------------------------------------------------------------------------


def _events_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partition", "-p", action="append", metavar="P",
                        help="only this partition (repeat for several)")
    parser.add_argument("--type", "-t", action="append", metavar="TYPE", dest="types",
                        help="only events of this type (repeat for several)")
    parser.add_argument("--since", type=int, metavar="SEQ",
                        help="only events with seq greater than SEQ")
    parser.add_argument("--until", type=int, metavar="SEQ",
                        help="only events with seq up to and including SEQ")
    parser.add_argument("--limit", "-n", type=int, default=20, metavar="N",
                        help="at most N events (default 20; 0 means all)")


_PAYLOAD_MIN = 24


@command("events", help="list events in seq order", configure=_events_args)
def cmd_events(args: argparse.Namespace) -> int:
    """List events in seq order, as a table or (--json) as JSON Lines with the payload as a JSON
    object.
    """
    import polars as pl

    if args.limit < 0:
        raise CommandError(f"--limit must be 0 (all) or positive, got {args.limit}")
    lake = _open_existing(args)
    frame = lake.events(partition=args.partition, since_seq=args.since, until_seq=args.until)
    if args.types:
        frame = frame.filter(pl.col("type").is_in(args.types))
    # One row more than asked says whether more follow, without counting the whole log.
    rows = (frame.head(args.limit + 1) if args.limit else frame).collect()
    more = bool(args.limit) and rows.height > args.limit
    if more:
        rows = rows.head(args.limit)
    if args.json:
        from eventlake.model import jsoncodec

        for row in rows.iter_rows(named=True):
            row["payload"] = jsoncodec.loads(row["payload"])
            print_json(row)
        return EXIT_OK
    if not rows.height:
        say("no events match")
    else:
        _print_events(rows.iter_rows(named=True))
    if more:
        last = rows["seq"][-1]
        say(f"more events follow: --since {last} for the next page, --limit 0 for all")
    return EXIT_OK


def _print_events(rows: Iterable[dict[str, Any]]) -> None:
    cells: list[list[str]] = []
    for row in rows:
        ts = row["ts"].strftime("%Y-%m-%d %H:%M:%S") if row["ts"] is not None else ""
        cells.append([str(row["seq"]), row["partition_id"], row["type"], ts, row["payload"]])
    headers = ["seq", "partition", "type", "ts", "payload"]
    widths = [max([len(headers[i]), *(len(c[i]) for c in cells)]) for i in range(4)]
    # The payload gets what the other columns leave of the terminal, so they never squeeze.
    out = console()
    room = max(_PAYLOAD_MIN, out.width - sum(widths) - 3 * len(headers))
    for cell in cells:
        if len(cell[4]) > room:
            cell[4] = cell[4][: room - 1] + "…"
    columns = [*(Column(header, right=index == 0, wrap=False, min_width=widths[index])
                 for index, header in enumerate(headers[:4])),
               Column("payload", wrap=False)]
    print_table(columns, cells, out=out)


# -- info ------------------------------------------------------------------------------------


@command("info", help="summary of the lake: layout, events, last seq, partitions, size")
def cmd_info(args: argparse.Namespace) -> int:
    """Summary of the lake: the event log's layout (bucket count and tail files of a bucketed
    log), event count, last seq, partitions, Delta table version, data files, size and
    registered views; and advice when the layout no longer fits the lake (past 10,000
    partitions, the partition_id layout).
    """
    lake = _open_existing(args)
    info = lake.info()
    data: dict[str, Any] = {
        "root": info.root, "events": info.events, "last_seq": info.last_seq,
        "partitions": info.partitions, "version": info.version, "files": info.files,
        "size_bytes": info.size_bytes, "views": list(info.views), "layout": info.layout,
        "buckets": info.buckets, "tail_files": info.tail_files, "advice": info.advice}
    from eventlake.store.storage_options import redacted

    options = redacted(lake.storage.options)
    if options:  # a lake on object storage: how it is reached, credentials masked
        data["storage_options"] = options
    if args.json:
        print_json(data)
        return EXIT_OK
    layout = info.layout if info.buckets is None else (
        f"{info.layout} ({info.buckets:,} buckets, {info.tail_files:,} tail "
        f"{plural(info.tail_files, 'file')})")
    rows = [
        ("lake", info.root),
        ("layout", layout),
        ("events", f"{info.events:,}"),
        ("last seq", f"{info.last_seq:,}"),
        ("partitions", f"{info.partitions:,}"),
        ("table version", str(info.version)),
        ("data files", f"{info.files:,}"),
        ("size", human_bytes(info.size_bytes)),
        ("views", ", ".join(info.views) or "-"),
    ]
    if options:
        rows.append(("storage options",
                     ", ".join(f"{k}={v}" for k, v in sorted(options.items()))))
    print_pairs(rows)
    if info.advice:
        say(f"advice: {info.advice}")
    return EXIT_OK


# -- restore ---------------------------------------------------------------------------------


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2025-01-31T12:00:00Z, got {text!r}") from None


def _restore_args(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", dest="target_version", type=number_at_least(0),
                        metavar="N",
                        help="the event log's Delta table version to go back to (`eventlake "
                             "info` shows the current one)")
    target.add_argument("--timestamp", type=_timestamp, metavar="ISO",
                        help="go back to the newest version committed at or before this time "
                             "(UTC unless it names a zone)")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="restore without asking (required when stdin is not a terminal)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only show what the restore would remove")


_SHOWN_BATCHES = 20


def _describe_plan(plan: RestorePlan) -> None:
    say(f"event log at {plan.root}: restore version {plan.to_version} (now at version "
        f"{plan.from_version})")
    say(f"  events removed: {plan.events_removed:,} (last seq {plan.last_seq_before:,} -> "
        f"{plan.last_seq_after:,})")
    say(f"  batches removed: {len(plan.batches):,}")
    for batch in plan.batches[:_SHOWN_BATCHES]:
        span = (f", seq {batch.first_seq}..{batch.first_seq + batch.count - 1}"
                if batch.first_seq is not None else "")
        say(f"    {batch.batch_id}: {batch.count} events{span} (version {batch.version})")
    if len(plan.batches) > _SHOWN_BATCHES:
        say(f"    ... and {len(plan.batches) - _SHOWN_BATCHES:,} more")
    if plan.batch_keys_revoked:
        say(f"  batch keys revoked (these batches can be appended again): "
            f"{len(plan.batch_keys_revoked):,}")
    views = ", ".join(plan.views) or "-"
    say(f"  views reset (rebuilt by the next `eventlake materialize`): {views}")


def _confirmed(plan: RestorePlan) -> bool:
    try:
        answer = input(f"restore the event log to version {plan.to_version}, removing "
                       f"{plan.events_removed:,} events? [y/N] ")
    except EOFError:  # the terminal closed its input: no answer is no
        return False
    return answer.strip().lower() in ("y", "yes")


@command("restore", help="go back to an earlier version of the event log (seq, batch keys and "
                         "views follow)", configure=_restore_args)
def cmd_restore(args: argparse.Namespace) -> int:
    """Restore the event log to an earlier Delta version in one commit that also rewinds the seq
    counter and revokes the keys of the batches it removes (they can be appended again);
    every view table is reset first and rebuilt by the next `eventlake materialize`. Shows
    what will be removed and asks for confirmation (--yes skips it; required when stdin is
    not a terminal). Stop writers and materializers first.
    """
    from eventlake.ops.restore import plan_restore, restore_log

    lake = _open_existing(args)
    plan = plan_restore(lake, version=args.target_version, timestamp=args.timestamp)
    if args.dry_run:
        if args.json:
            print_json({"dry_run": True, **plan.to_json()})
        else:
            _describe_plan(plan)
        return EXIT_OK
    if not args.json:
        _describe_plan(plan)
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            raise CommandError("refusing to restore without confirmation: stdin is not a "
                               "terminal (or --json was given); pass --yes, or --dry-run to "
                               "only see what would be removed")
        if not _confirmed(plan):
            print("restore cancelled; nothing was changed", file=sys.stderr)
            return EXIT_ERROR
    result = restore_log(lake, version=plan.to_version, expected_version=plan.from_version)
    if args.json:
        print_json({"root": lake.root, **result.to_json()})
        return EXIT_OK
    say(f"restored the event log to version {result.to_version} (commit {result.new_version}): "
        f"{result.events_removed:,} events removed, last seq {result.last_seq_after:,}")
    if result.views_reset:
        say("next: eventlake materialize (rebuilds the reset views)")
    return EXIT_OK
