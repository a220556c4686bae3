"""`eventlake bench`: ratios of eventlake against the raw libraries, measured in one run."""

from __future__ import annotations

import argparse

from eventlake.cli._app import EXIT_OK, command
from eventlake.cli.output import json_text, print_json, say
from eventlake.cli.progress import progress_display


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small",
                        help="data sizes (small: seconds, medium: minutes, large: long)")
    parser.add_argument("--json-file", "--json-out", dest="json_file", metavar="FILE",
                        help="also write the numbers, with stable keys, to FILE")
    parser.add_argument("--only", metavar="STEP[,STEP]",
                        help="run only these steps: ingest, ingest-jsonl, ingest-parallel, "
                             "scale-ingest, small-batches, refresh, refresh-buckets, growth, "
                             "age, fold, fold-reducer, many-partitions, rss, actions, "
                             "repository, layout")


_STATUS = {"met": "met", "missed": "MISSED", "report": "reported", "skipped": "skipped"}


@command("bench", help="benchmark eventlake against the raw libraries (ratios)",
         configure=_bench_args)
def cmd_bench(args: argparse.Namespace) -> int:
    from eventlake.bench import run_bench
    from eventlake.model.progress import Progress
    from eventlake.store.atomicfile import atomic_write

    only = None if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    # The bench names each step it starts (a label, no counts): a spinner on a terminal.
    with progress_display() as progress:
        progress(Progress("benchmarking"))
        report = run_bench(args.scale, only=only,
                           progress=lambda label: progress(Progress(f"benchmarking: {label}")))
    payload = report.to_json()
    if args.json_file:
        with atomic_write(args.json_file) as handle:
            handle.write(json_text(payload, indent=2) + "\n")
    if args.json:
        print_json(payload)
        return EXIT_OK
    # Plain lines, not tables: names and numbers never get cut at any width.
    say(f"eventlake bench --scale {report.scale} (case, median s, min s, max s, runs; what was "
        "timed)", style="bold")
    for case in report.cases:
        say(f"{case.name:<38} {case.median:>9.4f} {min(case.times):>9.4f} "
            f"{max(case.times):>9.4f} {len(case.times):>4}  {case.detail}")
    say()
    say("keys and goals (key, value, goal, verdict; what it measures)", style="bold")
    for name, row in payload["goals"].items():
        value = row["value"]
        shown = "-" if value is None else f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        verdict = _STATUS.get(row["status"], row["status"])
        if row["note"]:
            verdict = f"{verdict} ({row['note']})"
        goal = (row["goal"] or "-").replace("<=", "≤").replace(">=", "≥")
        say(f"{name:<38} {shown:>9}  {goal:<7} {verdict}")
        if row["meaning"]:
            say(f"    {row['meaning']}", style="dim")
    for note in report.notes:
        say(f"note: {note}")
    for name, value in report.figures.items():
        say(f"{name}: {value:,.3f}" if abs(value) < 100 else f"{name}: {value:,.0f}")
    return EXIT_OK
