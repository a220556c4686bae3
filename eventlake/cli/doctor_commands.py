"""`eventlake doctor`: check the lake's files against its Delta logs; `--fix` cleans up."""

from __future__ import annotations

import argparse
import sys

from eventlake.cli._app import (
    EXIT_OK,
    EXIT_VERIFY_FAILED,
    _console,
    _human_bytes,
    _open_existing,
    _print_json,
    command,
    number_at_least,
)

_non_negative_seconds = number_at_least(0, kind=float, what="seconds >= 0")


def _doctor_args(parser: argparse.ArgumentParser) -> None:
    from eventlake.doctor import DEFAULT_MIN_AGE_SECONDS

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


@command("doctor", help="check files against the Delta logs; --fix removes crash leftovers",
         configure=_doctor_args,
         description="Check the event log and every view table: each file a table references "
                     "exists, has the logged size and a readable Parquet footer with the "
                     "logged row count; the Delta log parses and has no gap; the event log "
                     "holds every seq once. Reports orphaned files (written by a writer that "
                     "crashed before its commit) and temporary commit files; --fix deletes "
                     "those (older than --min-age). Exits 3 if problems remain.")
def cmd_doctor(args: argparse.Namespace) -> int:
    from eventlake.doctor import doctor

    lake = _open_existing(args)
    report = doctor(lake, fix=args.fix, deep=not args.quick, min_age_seconds=args.min_age,
                    views=args.view)
    if args.json:
        _print_json({"lake": lake.root, **report.to_json()})
        return EXIT_OK if report.ok else EXIT_VERIFY_FAILED
    console = _console()
    removed = set(report.removed)
    for problem in report.problems:
        size = "" if problem.size is None else f" ({_human_bytes(problem.size)})"
        state = " [removed]" if problem.path in removed else ""
        console.print(f"{problem.table}: {problem.kind}: {problem.path}{size}: "
                      f"{problem.detail}{state}", markup=False)
    orphans = len(report.orphans)
    console.print(f"checked {report.files_checked} files in {len(report.tables)} tables: "
                  f"{len(report.damage)} damaged, {orphans} orphaned"
                  + (f", {len(report.removed)} removed" if args.fix else ""), markup=False)
    if report.skipped_young:
        console.print(f"{len(report.skipped_young)} orphaned files are younger than "
                      f"{args.min_age:.0f} s and were left alone (--min-age)", markup=False)
    if report.ok:
        return EXIT_OK
    hints = []
    if report.damage:
        hints.append("damaged files: see the README's Recovery section (restore a table "
                     "version, rebuild views)")
    if report.skipped_young:
        hints.append("young orphaned files: if no writer is running, `eventlake doctor --fix "
                     "--min-age 0` deletes them")
    elif any(p.fixable for p in report.remaining):
        hints.append("orphaned files: `eventlake doctor --fix` deletes them")
    print("doctor found problems: " + "; ".join(hints), file=sys.stderr)
    return EXIT_VERIFY_FAILED
