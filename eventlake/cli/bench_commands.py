"""`eventlake bench`: ratios of eventlake against the raw libraries, measured in one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eventlake.cli._app import EXIT_OK, _console, command


def _bench_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=("small", "medium", "large"), default="small",
                        help="data sizes (small: seconds, medium: minutes, large: long)")
    parser.add_argument("--json-file", "--json-out", dest="json_file", metavar="FILE",
                        help="also write the numbers, with stable keys, to FILE")
    parser.add_argument("--only", metavar="STEP[,STEP]",
                        help="run only these steps: ingest, ingest-jsonl, scale-ingest, "
                             "small-batches, refresh, refresh-buckets, growth, age, fold, "
                             "fold-reducer, many-partitions, rss, actions, repository, layout")


_STATUS = {"met": "met", "missed": "MISSED", "report": "reported", "skipped": "skipped"}


@command("bench", help="benchmark eventlake against the raw libraries (ratios)",
         configure=_bench_args)
def cmd_bench(args: argparse.Namespace) -> int:
    from eventlake.bench import run_bench

    console = _console(stderr=True)
    with console.status("benchmarking", spinner="dots") as status:
        only = None if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
        report = run_bench(args.scale, only=only, progress=lambda label: status.update(
            f"benchmarking: {label}"))
    payload = report.to_json()
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(payload, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return EXIT_OK
    out = _console()
    # Plain lines, not tables: names and numbers never get cut at any width.
    out.print(f"[bold]eventlake bench --scale {report.scale}[/bold] (case, median s, min s, "
              "max s, runs; what was timed)")
    for case in report.cases:
        out.print(f"{case.name:<38} {case.median:>9.4f} {min(case.times):>9.4f} "
                  f"{max(case.times):>9.4f} {len(case.times):>4}  {case.detail}", markup=False)
    out.print("\n[bold]keys and goals[/bold] (key, value, goal, verdict; what it measures)")
    for name, row in payload["goals"].items():
        value = row["value"]
        shown = "-" if value is None else f"{value:.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        verdict = _STATUS.get(row["status"], row["status"])
        if row["note"]:
            verdict = f"{verdict} ({row['note']})"
        goal = (row["goal"] or "-").replace("<=", "≤").replace(">=", "≥")
        out.print(f"{name:<38} {shown:>9}  {goal:<7} {verdict}", markup=False)
        if row["meaning"]:
            out.print(f"    {row['meaning']}", style="dim", markup=False)
    for note in report.notes:
        out.print(f"note: {note}")
    for name, value in report.figures.items():
        out.print(f"{name}: {value:,.3f}" if abs(value) < 100 else f"{name}: {value:,.0f}")
    return EXIT_OK
