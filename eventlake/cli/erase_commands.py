"""`eventlake erase PARTITION`: remove a partition end to end (see the README's "Erasing a
partition")."""

from __future__ import annotations

import argparse
import sys

from eventlake.cli._app import EXIT_ERROR, EXIT_OK, _open_existing, command
from eventlake.cli.output import print_json, say
from eventlake.errors import CommandError


def _erase_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("partition", metavar="PARTITION",
                        help="the exact partition name (a name that only looks alike is never "
                             "touched)")
    parser.add_argument("--reason", required=True, metavar="TEXT",
                        help="why it is erased; kept in the erasure record")
    parser.add_argument("--vacuum", action="store_true",
                        help="also delete the old files that still hold the partition (time "
                             "travel to versions before the erase then no longer shows it)")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="erase without asking (required when stdin is not a terminal)")


@command("erase", help="remove a partition's events and view rows (--vacuum: its old files "
                       "too)", configure=_erase_args)
def cmd_erase(args: argparse.Namespace) -> int:
    """Remove every event of PARTITION from the event log's files and its rows from every view
    table, one commit per table; other events keep their seq, and the erased seq ranges are
    recorded (eventlake doctor lists them). With --vacuum the old files that still hold the
    partition are deleted. Running it again finishes an erase that was interrupted. Asks for
    confirmation (--yes skips it; required when stdin is not a terminal). Stop appends to
    that partition first.
    """
    from eventlake.ops.erase import erase, preview

    lake = _open_existing(args)
    events, pending = preview(lake, args.partition, vacuum=args.vacuum)
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            raise CommandError("refusing to erase without confirmation: stdin is not a "
                               "terminal (or --json was given); pass --yes")
        what = "finish the unfinished erase of" if pending and not events else "erase"
        try:
            answer = input(f"{what} partition {args.partition!r} ({events:,} events)? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("erase cancelled; nothing was changed", file=sys.stderr)
            return EXIT_ERROR
    result = erase(lake, args.partition, reason=args.reason, vacuum=args.vacuum)
    if args.json:
        print_json({"root": lake.root, **result.to_json()})
        return EXIT_OK
    ranges = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in result.seq_ranges[:10])
    more = f" (+{len(result.seq_ranges) - 10} more)" if len(result.seq_ranges) > 10 else ""
    say(f"erased partition {result.partition!r}: {result.events:,} events, seq "
                  f"{ranges or '-'}{more}; views updated: {', '.join(result.views) or '-'}")
    for table in result.tables:
        if table.version is not None:
            say(f"  {table.table}: {len(table.files_removed)} files rewritten "
                          f"(version {table.version}), {table.rows_removed:,} rows removed")
    if args.vacuum:
        say(f"  vacuum: {len(result.vacuumed)} old files deleted")
    elif result.retained:
        say(f"  {len(result.retained)} old files still hold it (time travel, change "
                      "feed history) until `eventlake erase ... --vacuum` or a vacuum past its "
                      "retention deletes them")
    return EXIT_OK
