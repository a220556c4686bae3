"""`eventlake doctor`: check the lake's files against its Delta logs; `--fix` cleans up."""

from __future__ import annotations

import argparse
import sys

from eventlake.cli._app import EXIT_OK, EXIT_VERIFY_FAILED, _open_existing, command, number_at_least
from eventlake.cli.output import human_bytes, plural, print_json, say

_non_negative_seconds = number_at_least(0, kind=float, what="seconds >= 0")


def _doctor_args(parser: argparse.ArgumentParser) -> None:
    from eventlake.ops.doctor import DEFAULT_MIN_AGE_SECONDS

    parser.add_argument("--fix", action="store_true",
                        help="delete orphaned data files and temporary commit files (never a "
                             "file any commit references)")
    parser.add_argument("--min-age", type=_non_negative_seconds, metavar="SECONDS",
                        default=DEFAULT_MIN_AGE_SECONDS,
                        help="with --fix, leave files younger than this alone: a writer may be "
                             f"about to commit them (default {DEFAULT_MIN_AGE_SECONDS:.0f})")
    parser.add_argument("--quick", action="store_true",
                        help="check existence and sizes only (no Parquet footers, no seq scan)")
    parser.add_argument("--view", action="append", metavar="NAME", dest="view",
                        help="only this view's table besides the event log (repeat for several)")
    parser.add_argument("--verbose", action="store_true",
                        help="list every orphaned file, not only their count and size")


@command("doctor", help="check files against the Delta logs; --fix removes crash leftovers",
         configure=_doctor_args)
def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the event log and every view table: each file a table references exists, has the
    logged size and a readable Parquet footer with the logged row count; the Delta log parses
    and has no gap; the event log holds every seq once, but for the ranges an erase recorded
    (listed in a note), and no erase was left unfinished (--fix finishes it). Exits 3 if any
    of that is damaged.
    Orphaned files (written by a commit attempt that lost a race, or by a writer that stopped
    before its commit) and temporary commit files are harmless: a warning with their count
    and size, exit 0; --fix deletes those older than --min-age. A note suggests the buckets
    layout when a partition_id lake passes 10,000 partitions (exit code unchanged).
    """
    from eventlake.ops.doctor import doctor

    lake = _open_existing(args)
    report = doctor(lake, fix=args.fix, deep=not args.quick, min_age_seconds=args.min_age,
                    views=args.view)
    if args.json:
        print_json({"lake": lake.root, **report.to_json()})
        return EXIT_OK if report.ok else EXIT_VERIFY_FAILED
    removed = set(report.removed)
    for problem in report.problems:
        if problem.fixable and not args.verbose:
            continue
        shown = "" if problem.size is None else f" ({human_bytes(problem.size)})"
        state = " [removed]" if problem.path in removed else ""
        say(f"{problem.table}: {problem.kind}: {problem.path}{shown}: {problem.detail}{state}")
    for table, (files, size) in report.leftovers_by_table().items():
        print(f"warning: {table}: {files} orphaned {plural(files, 'file')} "
              f"({human_bytes(size)}) that no commit references, left by commit attempts that "
              "lost a race or by writers that stopped before committing; readers never see "
              "them", file=sys.stderr)
    freed = sum(p.size or 0 for p in report.orphans if p.path in removed)
    say(f"checked {report.files_checked} files in {len(report.tables)} tables: "
        f"{len(report.damage)} damaged, {len(report.leftovers)} orphaned "
        f"({human_bytes(report.leftover_bytes)})"
        + (f", {len(report.removed)} removed ({human_bytes(freed)})" if args.fix else ""))
    if report.leftovers:
        if report.skipped_young:
            hint = (f"{len(report.skipped_young)} of them are younger than "
                    f"{args.min_age:.0f} s and were left alone; if no writer is running, "
                    "`eventlake doctor --fix --min-age 0` deletes them")
        else:
            hint = ("`eventlake doctor --fix` deletes them (those older than --min-age), as "
                    "does `eventlake maintain` after its retention")
        print(f"warning: {hint}", file=sys.stderr)
    if report.erasures_finished:
        print(f"finished the unfinished erase of {', '.join(map(repr, report.erasures_finished))}",
              file=sys.stderr)
    if report.erased:
        shown = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in report.erased[:10])
        more = f" and {len(report.erased) - 10} more" if len(report.erased) > 10 else ""
        print(f"note: seq is gap-free except {len(report.erased)} erased ranges ({shown}{more})",
              file=sys.stderr)
    if report.advice:
        # A suggestion, not a finding: the exit code does not change.
        print(f"note: {report.advice}", file=sys.stderr)
    if report.ok:
        return EXIT_OK
    print("doctor found damage: see the README's Recovery section (restore a table version, "
          "rebuild views)", file=sys.stderr)
    return EXIT_VERIFY_FAILED
