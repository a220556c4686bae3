"""The `eventlake` command line.

Each subcommand is one function registered with `@command(...)`; adding a subcommand means
writing a function `(args) -> exit code` and, when it takes options, a `configure(parser)`.
Nothing heavy is imported at module level (ruff bans it here): polars, deltalake, duckdb,
pyarrow and rich load inside the command that needs them, so `eventlake --help` stays fast.

Only this module turns an `EventlakeError` into a one-line `error: ...` and an exit code;
`--debug` re-raises instead, with the full traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlake.config import ENV_LAKE, ENV_VIEWS, open_lake, resolve_lake
from eventlake.errors import EventlakeError, InvalidEventError, LakeNotFoundError

if TYPE_CHECKING:
    from rich.console import Console

    from eventlake.lake import Lake

__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_VERIFY_FAILED",
    "Command",
    "build_parser",
    "command",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 3
EXIT_INTERRUPTED = 130

Runner = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]

EPILOG = f"""\
global options (--lake, --views, --json, --debug) go before or after the command.

settings:
  lake   --lake PATH > ${ENV_LAKE} > [tool.eventlake] lake in pyproject.toml > data/lake
  views  --views MODULE > ${ENV_VIEWS} > [tool.eventlake] views in pyproject.toml

exit codes:
  0    success
  1    error (bad input, missing lake, failed commit, ...): one line on stderr
  2    usage error (unknown command or option)
  3    verification failed
  130  interrupted (Ctrl-C)

examples:
  eventlake init data/lake
  eventlake ingest data/samples
  eventlake events --partition acct-001 --since 100 --limit 5
  eventlake info --json
"""


class CommandError(EventlakeError):
    """A command cannot run as asked (for example an input file does not exist)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, help line, option setup and the function that runs it."""

    name: str
    run: Runner
    help: str
    description: str = ""
    configure: Configure | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, description: str = "",
            configure: Configure | None = None) -> Callable[[Runner], Runner]:
    """Register `run(args) -> exit code` as subcommand `name` (in registration order)."""

    def register(run: Runner) -> Runner:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        COMMANDS[name] = Command(name, run, help, description or help, configure)
        return run

    return register


# -- parser ----------------------------------------------------------------------------------


def _global_options(*, on_subcommand: bool) -> argparse.ArgumentParser:
    # The same options exist on the main parser and on every subcommand, so they may come
    # before or after the command. On subcommands their default is SUPPRESS: an option not
    # given after the command then leaves the value given before it untouched.
    def default(value: object) -> object:
        return argparse.SUPPRESS if on_subcommand else value

    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options")
    group.add_argument("--lake", metavar="PATH", default=default(None),
                       help=f"lake root folder or URI (default: ${ENV_LAKE}, pyproject "
                            "[tool.eventlake] lake, or data/lake)")
    group.add_argument("--views", metavar="MODULE", default=default(None),
                       help="module (or .py file) defining your views (default: "
                            f"${ENV_VIEWS} or pyproject [tool.eventlake] views)")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="machine-readable JSON output on stdout")
    group.add_argument("--debug", action="store_true", default=default(False),
                       help="on error, show the full traceback instead of one line")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventlake",
        description="eventlake: an event-sourced lakehouse on Delta Lake.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options(on_subcommand=False)],
    )
    from eventlake import __version__

    parser.add_argument("--version", action="version", version=f"eventlake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _global_options(on_subcommand=True)
    for spec in COMMANDS.values():
        child = sub.add_parser(spec.name, help=spec.help, description=spec.description,
                               parents=[common],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        if spec.configure is not None:
            spec.configure(child)
        child.set_defaults(run=spec.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see `EPILOG`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` and friends: stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_OK
    except (EventlakeError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, EventlakeError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# -- shared helpers --------------------------------------------------------------------------


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _open_existing(args: argparse.Namespace) -> Lake:
    """Open the lake for a read command; a missing lake says how to create one."""
    root = resolve_lake(args.lake).value
    try:
        return open_lake(root, args.views, create=False)
    except LakeNotFoundError:
        raise LakeNotFoundError(
            f"no lake at {_display(root)} (create one with `eventlake init {root}` or ingest "
            "files)") from None


def _display(root: str | None) -> str:
    if root is None:
        return "?"
    return root if "://" in root else os.path.abspath(root)


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# -- init ------------------------------------------------------------------------------------


def _init_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH",
                        help="where to create the lake (default: --lake or the settings)")


@command("init", help="create an empty lake", configure=_init_args,
         description="Create an empty lake (the event log table) at PATH; an existing lake is "
                     "left as it is.")
def cmd_init(args: argparse.Namespace) -> int:
    root = args.path if args.path is not None else resolve_lake(args.lake).value
    try:
        lake = open_lake(root, args.views, create=False)
        created = False
    except LakeNotFoundError:
        lake = open_lake(root, args.views, create=True)
        created = True
    if args.json:
        _print_json({"root": lake.root, "created": created})
        return EXIT_OK
    console = _console()
    if created:
        console.print(f"created lake at {lake.root}", markup=False)
        console.print(f"next: eventlake ingest FILE... --lake {lake.root}", markup=False)
    else:
        console.print(f"lake already exists at {lake.root} ({lake.last_seq()} events)",
                      markup=False)
    return EXIT_OK


# -- ingest ----------------------------------------------------------------------------------


def _ingest_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="JSON Lines (.jsonl/.ndjson/.json), CSV (.csv, JSON payload "
                             "column) or Parquet (.parquet) files; a folder means its files "
                             "of those types, in name order")
    parser.add_argument("--producer", metavar="NAME",
                        help="producer name of the batches (default: inbox); each file's "
                             "batch number is its name and content hash")
    parser.add_argument("--quarantine", action="store_true",
                        help="land the good records of a file and write the bad ones to "
                             "<lake>/quarantine/<file>.jsonl (default: a bad record fails the "
                             "file and nothing of it is written)")
    parser.add_argument("--quarantine-dir", metavar="DIR",
                        help="folder for quarantine files (implies --quarantine; needed when "
                             "the lake is not a local folder)")


def _input_files(names: Sequence[str]) -> list[Path]:
    from eventlake.files import FORMATS

    found: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in FORMATS))
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
    if not lake.storage.is_local:
        raise CommandError(f"the lake {lake.root} is not a local folder; give --quarantine-dir")
    return Path(lake.storage.local_path("quarantine"))


def _write_quarantine(folder: Path, source: Path, entries: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{source.name}.jsonl"
    # Written whole, then renamed: a crash never leaves half a quarantine file behind, and an
    # ingest retry rewrites the same content.
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    partial.replace(target)
    return target


def _ingest_one(lake: Lake, path: Path, *, producer: str, quarantine: Path | None
                ) -> dict[str, Any]:
    from eventlake.files import check_file, file_batch_identity
    from eventlake.log import batch_app_id

    producer, batch_no = file_batch_identity(path, producer=producer)
    result: dict[str, Any] = {"file": str(path), "producer": producer, "batch_no": batch_no,
                              "batch_id": f"{producer}/{batch_no}", "records": None,
                              "events": 0, "first_seq": None, "last_seq": None,
                              "duplicate": False, "quarantined": 0, "quarantine_file": None}
    # A file that already landed is not read again: it may even hold records that were
    # quarantined then, which must not fail a strict re-run.
    landed = lake.log.snapshot().transaction_version(batch_app_id(producer, batch_no))
    if landed is not None:
        result.update(duplicate=True, last_seq=landed)
        return result
    try:
        checked = check_file(path)
    except InvalidEventError as exc:
        if quarantine is None:
            raise
        entry = {"file": str(path), "line": None, "field": None, "reason": str(exc), "raw": None}
        result.update(quarantined=1,
                      quarantine_file=str(_write_quarantine(quarantine, path, [entry])))
        return result
    result["records"] = checked.read
    if checked.problems:
        if quarantine is None:
            count = len(checked.problems)
            note = (f"{count} bad record{'s' if count != 1 else ''} in this file, nothing of it "
                    "written; --quarantine lands the good ones")
            raise checked.problems[0].to_error(note=note)
        target = _write_quarantine(quarantine, path,
                                   [p.to_json() for p in checked.problems])
        result.update(quarantined=len(checked.problems), quarantine_file=str(target))
    if not checked.good:
        return result
    appended = lake.append(checked.events, producer=producer, batch_no=batch_no)
    result.update(events=appended.count, first_seq=appended.first_seq,
                  last_seq=appended.last_seq, duplicate=appended.duplicate)
    return result


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
    if result["quarantined"]:
        text += (f"; {result['quarantined']} bad record(s) quarantined to "
                 f"{result['quarantine_file']}")
    return text



@contextmanager
def _progress(console: Console, total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A transient progress bar; yields the function that advances it by one file."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("ingest", total=total)
        yield lambda: progress.advance(task)


@command("ingest", help="append JSON Lines / CSV / Parquet files as batches",
         configure=_ingest_args,
         description="Append each file as one batch. A file's batch identity is its name plus "
                     "a hash of its content, so ingesting the same file again is a no-op "
                     "(reported as duplicate). By default a file with any bad record fails "
                     "with the first problem (file, line, field) and nothing of it is written; "
                     "files before it have landed, and a re-run skips them.")
def cmd_ingest(args: argparse.Namespace) -> int:
    from eventlake.files import DEFAULT_PRODUCER

    files = _input_files(args.files)
    root = resolve_lake(args.lake).value
    lake = open_lake(root, args.views, create=True)
    quarantine = _quarantine_dir(args, lake)
    producer = args.producer or DEFAULT_PRODUCER
    console = _console()
    show_bar = len(files) > 1 and not args.json and sys.stdout.isatty()
    results: list[dict[str, Any]] = []
    with _progress(console, len(files), show_bar) as advance:
        for path in files:
            result = _ingest_one(lake, path, producer=producer, quarantine=quarantine)
            results.append(result)
            if not args.json:
                console.print(_describe_ingest(result), markup=False)
            advance()
    total = sum(r["events"] for r in results)
    last_seq = lake.last_seq()
    if args.json:
        _print_json({"lake": lake.root, "files": results, "events": total,
                     "quarantined": sum(r["quarantined"] for r in results),
                     "last_seq": last_seq})
    else:
        console.print(f"ingested {total} events from {len(files)} file(s) into {lake.root} "
                      f"(last seq {last_seq})", markup=False)
    return EXIT_OK


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


@command("events", help="list events in seq order", configure=_events_args,
         description="List events in seq order, as a table or (--json) as JSON Lines with the "
                     "payload as a JSON object.")
def cmd_events(args: argparse.Namespace) -> int:
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
        for row in rows.iter_rows(named=True):
            row["payload"] = json.loads(row["payload"])
            _print_json(row)
        return EXIT_OK
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    cells: list[list[str]] = []
    for row in rows.iter_rows(named=True):
        ts = row["ts"].strftime("%Y-%m-%d %H:%M:%S") if row["ts"] is not None else ""
        cells.append([str(row["seq"]), row["partition_id"], row["type"], ts, row["payload"]])
    headers = ["seq", "partition", "type", "ts", "payload"]
    widths = [max([len(headers[i]), *(len(c[i]) for c in cells)]) for i in range(4)]
    # The payload gets what the other columns leave of the terminal, so they never squeeze.
    room = max(_PAYLOAD_MIN, console.width - sum(widths) - 3 * len(headers))
    table = Table(show_edge=False, header_style="bold")
    for index, header in enumerate(headers[:4]):
        table.add_column(header, justify="right" if index == 0 else "left", no_wrap=True,
                         min_width=widths[index])
    table.add_column("payload", no_wrap=True, overflow="ellipsis")
    for seq, partition, kind, ts, payload in cells:
        if len(payload) > room:
            payload = payload[: room - 1] + "…"
        # Cells are data: escaped so a payload holding "[red]" is shown, not rendered.
        table.add_row(seq, escape(partition), escape(kind), ts, escape(payload))
    if rows.height:
        console.print(table)
    else:
        console.print("no events match", markup=False)
    if more:
        last = rows["seq"][-1]
        console.print(f"more events follow: --since {last} for the next page, --limit 0 for all",
                      markup=False)
    return EXIT_OK


# -- info ------------------------------------------------------------------------------------


@command("info", help="summary of the lake: events, last seq, partitions, size",
         description="Summary of the lake: event count, last seq, partitions, Delta table "
                     "version, data files, size and registered views.")
def cmd_info(args: argparse.Namespace) -> int:
    lake = _open_existing(args)
    info = lake.info()
    data = {"root": info.root, "events": info.events, "last_seq": info.last_seq,
            "partitions": info.partitions, "version": info.version, "files": info.files,
            "size_bytes": info.size_bytes, "views": list(info.views)}
    if args.json:
        _print_json(data)
        return EXIT_OK
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    rows = [
        ("lake", info.root),
        ("events", f"{info.events:,}"),
        ("last seq", f"{info.last_seq:,}"),
        ("partitions", f"{info.partitions:,}"),
        ("table version", str(info.version)),
        ("data files", f"{info.files:,}"),
        ("size", _human_bytes(info.size_bytes)),
        ("views", ", ".join(info.views) or "-"),
    ]
    from rich.markup import escape

    for key, value in rows:
        table.add_row(key, escape(value))
    _console().print(table)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
