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


TARGETS = {
    "ingest_ratio": ("≥ 0.7", "eventlake append speed / bare write_deltalake speed"),
    "ingest_jsonl_ratio": ("", "JSON Lines ingest speed / polars.read_ndjson + bare write"),
    "refresh_speedup_aggregate": ("≥ 20", "full rebuild time / refresh after a 1% batch"),
    "refresh_speedup_document": ("", "full rebuild time / refresh after a 1% batch"),
    "refresh_growth": ("≤ 1.5", "refresh time (fixed batch) at 5x history / at 1x"),
    "fold_overhead": ("≤ 2.0", "document view rebuild / bare apply_action loop in memory"),
    "state_read_ratio": ("≤ 5", "lake.state(p) / polars read of the partition's view file"),
    "rebuild_rss_growth": ("≤ 1.3", "peak RSS of a rebuild at 4x history / at 1x"),
}


@command("bench", help="benchmark eventlake against the raw libraries (ratios)",
         configure=_bench_args)
def cmd_bench(args: argparse.Namespace) -> int:
    from rich.table import Table

    from eventlake.bench import run_bench

    console = _console(stderr=True)
    with console.status("benchmarking", spinner="dots") as status:
        report = run_bench(args.scale, progress=lambda label: status.update(
            f"benchmarking: {label}"))
    payload = report.to_json()
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(payload, indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return EXIT_OK
    out = _console()
    cases = Table(title=f"eventlake bench --scale {report.scale}")
    for column in ("case", "median s", "min s", "max s", "runs", "detail"):
        cases.add_column(column, justify="right" if column.endswith(("s", "runs")) else "left")
    for case in report.cases:
        cases.add_row(case.name, f"{case.median:.3f}", f"{min(case.times):.3f}",
                      f"{max(case.times):.3f}", str(len(case.times)), case.detail)
    out.print(cases)
    ratios = Table(title="ratios")
    for column in ("ratio", "value", "target", "meaning"):
        ratios.add_column(column)
    for name, value in report.ratios.items():
        target, meaning = TARGETS.get(name, ("", ""))
        ratios.add_row(name, f"{value:.2f}", target, meaning)
    out.print(ratios)
    for name, value in report.figures.items():
        out.print(f"{name}: {value:,.0f}")
    return EXIT_OK
