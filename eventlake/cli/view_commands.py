"""Commands on views: materialize, state, views, verify."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventlake.cli._app import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    _open_existing,
    command,
    number_at_least,
)
from eventlake.cli.output import Column, plural, print_json, print_table, say
from eventlake.cli.progress import progress_display

if TYPE_CHECKING:
    from eventlake.engine.buckettasks import Workers
    from eventlake.engine.materialize import MaterializeResult, PartitionFailure
    from eventlake.lake import Lake
    from eventlake.model.views import View
    from eventlake.ops.verify import VerifyReport


def _view_option(parser: argparse.ArgumentParser, *, many: bool, help: str) -> None:
    if many:
        parser.add_argument("--view", action="append", metavar="NAME", dest="view", help=help)
    else:
        parser.add_argument("--view", metavar="NAME", default="document", help=help)


def _chosen_views(lake: Lake, names: Sequence[str] | None) -> list[View]:
    """The named views (unknown names fail with the list of registered ones), or all."""
    if not names:
        return list(lake.views.values())
    chosen: list[View] = []
    for name in names:
        view = lake.view(name)
        if not any(view is seen for seen in chosen):
            chosen.append(view)
    return chosen


_positive = number_at_least(1, what="a positive integer")
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30,
          "GB": 2**30}


def _byte_size(text: str) -> int:
    """An argparse `type=`: a positive size in bytes, `256MB`, `64M`, `1G` or plain bytes
    (units are binary: MB is 2**20)."""
    cleaned = text.strip().upper()
    if cleaned.endswith("IB"):  # MiB and MB are the same here
        cleaned = cleaned[:-2] + "B"
    digits = cleaned.rstrip("KMGB")
    unit = cleaned[len(digits):]
    try:
        value = float(digits) * _UNITS[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a size such as 256MB, 64M or 1G, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)
_non_negative = number_at_least(0, what="an integer >= 0")
# `materialize` committed every view it could, but some partitions are failed (listed on
# stderr): not an error of the command, yet something a scheduler should see.
EXIT_PARTITIONS_FAILED = 4
_SHOWN = 5  # failed partitions named per view; the rest are counted


def _accept_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accept-changed-definition", action="store_true", dest="accept",
        help="a view whose definition changed without a version bump: record the new "
             "definition and use its rows as they are (no rebuild)")


# -- materialize -----------------------------------------------------------------------------


def _materialize_args(parser: argparse.ArgumentParser) -> None:
    _view_option(parser, many=True, help="only this view (repeat for several; default: all)")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the views from the whole log instead of refreshing them")
    parser.add_argument("--chunk-events", type=_positive, metavar="N",
                        help="read at most N events per step (default 100000)")
    parser.add_argument("--chunk-bytes", type=_byte_size, metavar="SIZE",
                        help="read at most SIZE of decoded events per step, e.g. 256MB "
                             "(default 16MB; bounds memory: the step stops at whichever "
                             "limit comes first)")
    parser.add_argument("--workers", type=_positive, metavar="N",
                        help="run each view's rebuild and large refresh steps as bucket tasks "
                             "on N spawned processes, committed once per step")
    parser.add_argument("--retry-failed", action="store_true",
                        help="fold the failed partitions again from the event they failed at "
                             "(after fixing the reducer, or for a transient error)")
    _accept_option(parser)


def _result_json(result: MaterializeResult) -> dict[str, Any]:
    return {"view": result.view, "version": result.version, "partitions": result.partitions,
            "events": result.events, "old_watermark": result.old_watermark,
            "new_watermark": result.new_watermark, "seconds": round(result.seconds, 3),
            "rebuilt": result.rebuilt, "commits": result.commits,
            "newly_failed": list(result.failed), "recovered": list(result.recovered),
            "nulls": result.nulls}


def _failure_json(failure: PartitionFailure) -> dict[str, Any]:
    return {"partition": failure.partition, "seq": failure.seq, "type": failure.event_type,
            "error": failure.error, "last_seq": failure.last_seq}


def _failed_line(view: str, failed: Sequence[PartitionFailure]) -> str:
    """One warning line naming a view's failed partitions (the first few in full)."""
    count = len(failed)
    shown = "; ".join(f"{f.partition!r} at seq {f.seq} ({f.event_type}): {f.error}"
                      for f in failed[:_SHOWN])
    more = f"; and {count - _SHOWN} more (eventlake views --json)" if count > _SHOWN else ""
    return (f"warning: view {view!r}: {count} failed {plural(count, 'partition')}: "
            f"{shown}{more}; fix it, then `eventlake materialize --retry-failed`")


def _print_results(results: Sequence[MaterializeResult],
                   failed: dict[str, list[PartitionFailure]]) -> None:
    # Names stay whole on a narrow terminal; the numbers give way first.
    columns = [Column("view", wrap=False, min_width=max(len(r.view) for r in results)),
               *(Column(header, right=header != "watermark", wrap=False)
                 for header in ("partitions", "events folded", "watermark", "seconds",
                                "rebuilt", "failed"))]
    print_table(columns, ([r.view, f"{r.partitions:,}", f"{r.events:,}",
                           f"{r.old_watermark:,} → {r.new_watermark:,}", f"{r.seconds:.2f}",
                           "yes" if r.rebuilt else "no", f"{len(failed.get(r.view, ())):,}"]
                          for r in results))


@command("materialize", help="bring views up to date with the event log",
         configure=_materialize_args)
def cmd_materialize(args: argparse.Namespace) -> int:
    """Fold the events above each view's watermark into the view (only the partitions they
    touch), committing rows and watermark together. A view whose version changed, or
    --rebuild, is rebuilt from the whole log. A partition whose reducer fails stops at that
    event and the others fold on: the command commits, names it on stderr and exits 4 while
    any partition is failed (--retry-failed folds them again). A view that cannot refresh
    (its definition changed under the same version) does not stop the others; the command
    then exits 1.
    """
    lake = _open_existing(args)
    with _process_workers(lake, args.views, args.workers) as workers:
        refresh = refresh_views(lake, _chosen_views(lake, args.view), rebuild=args.rebuild,
                                chunk_events=args.chunk_events, chunk_bytes=args.chunk_bytes,
                                retry_failed=args.retry_failed, accept=args.accept,
                                quiet=args.json, workers=workers)
    if args.json:
        print_json({"lake": lake.root, "last_seq": lake.last_seq(), **refresh.to_json()})
    else:
        refresh.report()
    return refresh.exit_code


@contextmanager
def _process_workers(lake: Lake, views: str | None, count: int | None
                     ) -> Iterator[Workers | None]:
    """`count` spawned worker processes for bucket tasks (none without `count`). They open
    the lake and load the views module themselves, and take each view by name."""
    if not count:
        yield None
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from eventlake.config import open_lake, resolve_views
    from eventlake.engine.buckettasks import Workers

    source = resolve_views(views).value
    if source is not None and os.path.exists(source):
        source = os.path.abspath(source)
    opener = partial(open_lake, lake.root, source, create=False,
                     storage_options=lake.storage.options)
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield Workers(pool, opener, by_name=True, workers=count)


@dataclass(frozen=True)
class Refresh:
    """What one `materialize` (or `ingest --materialize`) did to the views, as the CLI shows
    it: the results, the failed partitions per view, the views that could not refresh."""

    done: list[MaterializeResult]
    failed: dict[str, list[PartitionFailure]]
    failures: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"views": [_result_json(r) for r in self.done], "failures": self.failures,
                "failed_partitions": {name: [_failure_json(f) for f in found]
                                      for name, found in self.failed.items()}}

    def report(self) -> None:
        if self.done:
            _print_results(self.done, self.failed)
        for name, found in self.failed.items():
            print(_failed_line(name, found), file=sys.stderr)
        for name, message in self.failures.items():
            print(f"error: view {name!r} was not refreshed: {message}", file=sys.stderr)

    @property
    def exit_code(self) -> int:
        if self.failures:
            return EXIT_ERROR
        return EXIT_PARTITIONS_FAILED if self.failed else EXIT_OK


def refresh_views(lake: Lake, views: list[View], *, rebuild: bool = False,
                  chunk_events: int | None = None, chunk_bytes: int | None = None,
                  retry_failed: bool = False, accept: bool = False, quiet: bool = False,
                  workers: Workers | None = None) -> Refresh:
    """Refresh `views` with a progress display (none when `quiet`); a view that cannot
    refresh is reported, not raised, so the others' results still show."""
    from eventlake.engine.materialize import MaterializeError, failed_partitions, materialize_views

    failures: dict[str, str] = {}
    with progress_display(quiet=quiet) as progress:
        try:
            results = materialize_views(lake, views, rebuild=rebuild, chunk_events=chunk_events,
                                        chunk_bytes=chunk_bytes, progress=progress,
                                        retry_failed=retry_failed, workers=workers,
                                        accept_changed_definition=accept)
        except MaterializeError as exc:
            results = exc.results
            failures = {name: str(error) for name, error in exc.failures.items()}
    done = [results[v.name] for v in views if v.name in results]
    failed = {r.view: failed_partitions(lake, lake.view(r.view)) for r in done}
    return Refresh(done, {name: found for name, found in failed.items() if found}, failures)


# -- state -----------------------------------------------------------------------------------


def _state_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("partition", metavar="PARTITION", help="the partition id")
    _view_option(parser, many=False, help="a reducer view (default: document)")
    parser.add_argument("--as-of", type=_non_negative, metavar="SEQ", dest="as_of",
                        help="the state as it was after event SEQ (default: now)")
    _accept_option(parser)


@command("state", help="the state of one partition, as JSON", configure=_state_args)
def cmd_state(args: argparse.Namespace) -> int:
    """Print the exact state of one partition in a view (the stored row plus any newer events),
    or as it was after --as-of SEQ; for an aggregate view, its rows (one per group). Pretty
    JSON on a terminal, one line when piped; --json wraps it with its context. A partition
    failed at an event is an error naming that event.
    """
    lake = _open_existing(args)
    state = lake.state(args.partition, view=args.view, as_of_seq=args.as_of,
                       accept_changed_definition=args.accept)
    if args.json:
        print_json({"partition": args.partition, "view": args.view, "as_of_seq": args.as_of,
                    "state": state})
    else:
        # Pretty on a terminal, one line for a pipe.
        print_json(state, indent=2 if sys.stdout.isatty() else None)
    return EXIT_OK


# -- views -----------------------------------------------------------------------------------


def _view_status(lake: Lake, view: View, last_seq: int, *, accept: bool) -> dict[str, Any]:
    import polars as pl

    from eventlake.engine.materialize import failed_partitions
    from eventlake.errors import ViewChangedError
    from eventlake.ops.restore import RESET_VERSION
    from eventlake.store.viewstore import ViewStore

    store = ViewStore(lake.storage, view)
    row: dict[str, Any] = {"name": view.name, "kind": view.kind, "version": view.version,
                           "status": "not built", "table_version": None, "watermark": 0,
                           "lag": last_seq, "rows": 0, "partitions": 0, "failed": 0,
                           "failed_partitions": [], "error": None}
    if getattr(view, "strategy", None):  # a SQL view's refresh: merge or recompute-touched
        row["strategy"] = view.strategy  # type: ignore[union-attr]
    if not store.exists():
        return row
    snap = store.snapshot()
    try:
        snap = store.check_definition(snap, accept=accept)
    except ViewChangedError as exc:
        row["status"] = "changed since built: bump its version" + (
            " or --accept-changed-definition" if exc.acceptable else "")
        row["error"] = str(exc)
        row["table_version"] = snap.version
        return row
    marks = store.marks(snap)
    row["table_version"] = snap.version
    if marks.active is None:
        row["status"] = "building" if marks.building else "not built"
    elif marks.active_version == RESET_VERSION:
        row["status"] = "not built (reset by a restore)"
    elif marks.active_version != view.version:
        row["status"] = f"stale (built for v{marks.active_version})"
    else:
        row["status"] = "rebuilding" if marks.building else "ok"
    row["watermark"] = store.watermark(snap)
    row["lag"] = max(0, last_seq - row["watermark"])
    counts = lake.scan(view.name).select(
        pl.len().alias("rows"), pl.col("partition_id").n_unique().alias("partitions")
    ).collect()
    row["rows"] = int(counts["rows"][0])
    row["partitions"] = int(counts["partitions"][0])
    failed = failed_partitions(lake, view)
    row["failed"] = len(failed)
    row["failed_partitions"] = [f.partition for f in failed]
    if failed and row["status"] == "ok":
        row["status"] = f"ok, {len(failed)} {plural(len(failed), 'partition')} failed"
    return row


def _views_args(parser: argparse.ArgumentParser) -> None:
    _accept_option(parser)


@command("views", help="registered views: version, watermark, lag, rows, failed partitions",
         configure=_views_args)
def cmd_views(args: argparse.Namespace) -> int:
    """List the registered views with their version, watermark (last seq folded), lag (events
    not folded yet), rows, partitions and failed partitions (--json names them). A view whose
    definition changed without a version bump is shown as such and the command exits 1.
    """
    lake = _open_existing(args)
    last_seq = lake.last_seq()
    rows = [_view_status(lake, view, last_seq, accept=args.accept)
            for view in lake.views.values()]
    changed = [row["error"] for row in rows if row["error"]]
    if args.json:
        print_json({"lake": lake.root, "last_seq": last_seq, "views": rows})
        return EXIT_ERROR if changed else EXIT_OK
    columns = [Column("view", wrap=False), Column("kind", wrap=False),
               *(Column(header, right=True, wrap=False) for header in
                 ("version", "watermark", "lag", "rows", "partitions", "failed")),
               Column("status")]
    print_table(columns, ([row["name"],
                           row["kind"] + (f" ({row['strategy']})" if row.get("strategy") else ""),
                           str(row["version"]),
                           *(f"{row[key]:,}" for key in
                             ("watermark", "lag", "rows", "partitions", "failed")),
                           row["status"]] for row in rows))
    say(f"event log: last seq {last_seq:,}")
    for row in rows:
        if row["failed"]:
            names = ", ".join(repr(p) for p in row["failed_partitions"][:_SHOWN])
            more = (f" and {row['failed'] - _SHOWN} more" if row["failed"] > _SHOWN else "")
            say(f"{row['name']}: failed partitions {names}{more} (`eventlake state "
                f"PARTITION --view {row['name']}` shows why)")
    for message in changed:
        print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR if changed else EXIT_OK


# -- verify ----------------------------------------------------------------------------------


def _verify_args(parser: argparse.ArgumentParser) -> None:
    _view_option(parser, many=True, help="only this view (repeat for several; default: all)")
    parser.add_argument("--sample", type=_positive, metavar="N",
                        help="check N partitions chosen at random (default: every partition)")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed for --sample")
    parser.add_argument("--show", type=_positive, default=20, metavar="N",
                        help="print at most N differences per view (default 20)")


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {"view": report.view, "ok": report.ok, "built": report.built,
            "watermark": report.watermark,
            "partitions_checked": report.partitions_checked,
            "differences": [{"partition": d.partition, "group": list(d.group), "field": d.field,
                             "stored": d.stored, "expected": d.expected}
                            for d in report.differences]}


@command("verify", help="refold partitions from scratch and compare with the views",
         configure=_verify_args)
def cmd_verify(args: argparse.Namespace) -> int:
    """Refold every partition (or a --sample) from its full history up to the view's watermark
    and compare with the stored rows. Prints each difference with its partition and field;
    exits 3 if any is found.
    """
    from eventlake.ops.verify import verify_view

    lake = _open_existing(args)
    views = _chosen_views(lake, args.view)
    reports = [verify_view(lake, view, sample=args.sample, seed=args.seed) for view in views]
    ok = all(r.ok for r in reports)
    if args.json:
        print_json({"lake": lake.root, "ok": ok, "views": [_report_json(r) for r in reports]})
        return EXIT_OK if ok else EXIT_VERIFY_FAILED
    for report in reports:
        if not report.built:
            say(f"{report.view}: not built, nothing to verify (`eventlake materialize` builds "
                "it)")
            continue
        if report.ok:
            say(f"{report.view}: ok ({report.partitions_checked} partitions, up to seq "
                f"{report.watermark})")
            continue
        count = len(report.differences)
        say(f"{report.view}: {count} {plural(count, 'difference')} in "
            f"{report.partitions_checked} partitions checked (up to seq {report.watermark})")
        for difference in report.differences[: args.show]:
            say(f"  {difference}")
        if count > args.show:
            say(f"  ... and {count - args.show} more (--show N, or --json for all)")
    if not ok:
        print("verify failed: stored views differ from a refold of the log; "
              "`eventlake materialize --rebuild --view NAME` rebuilds a view", file=sys.stderr)
    return EXIT_OK if ok else EXIT_VERIFY_FAILED
