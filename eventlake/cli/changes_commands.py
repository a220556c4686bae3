"""`eventlake changes`: the row changes of a view between two versions of its table."""

from __future__ import annotations

import argparse
import sys

from eventlake.cli._app import EXIT_OK, _open_existing, command, number_at_least
from eventlake.cli.output import json_text, print_json, say


def _changes_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("view", help="the view whose changes to list")
    parser.add_argument("--since-version", type=number_at_least(0), metavar="N",
                        help="changes after table version N (default 0, or the cursor's "
                             "position)")
    parser.add_argument("--until-version", type=number_at_least(0), metavar="M",
                        help="changes up to and including table version M (default: latest)")
    parser.add_argument("--cursor", metavar="NAME",
                        help="start where consumer NAME stopped (see --commit)")
    parser.add_argument("--commit", action="store_true",
                        help="with --cursor: after printing, record that NAME has taken "
                             "these changes")
    parser.add_argument("--format", choices=("table", "json", "csv"), default=None,
                        help="table (default), json (one change per line) or csv (before./after. "
                             "columns); --json is --format json")


@command("changes", help="row changes of a view between versions of its table (change feed)",
         configure=_changes_args)
def cmd_changes(args: argparse.Namespace) -> int:
    """Row changes of a view's table in versions (N, M]: insert, update, delete, and reset where
    the view was rebuilt (every row of the new build follows as an insert), with each row
    before and after, the table version, the view version and the event-log watermark.
    --cursor NAME --commit reads from where consumer NAME stopped and records where it now
    stands.
    """
    import polars as pl

    from eventlake.errors import CommandError

    if args.commit and not args.cursor:
        raise CommandError("--commit goes with --cursor NAME")
    lake = _open_existing(args)
    frame = lake.changes(args.view, args.since_version, args.until_version,
                         cursor=args.cursor).collect()
    shape = args.format or ("json" if args.json else "table")
    if shape == "json":
        for row in frame.iter_rows(named=True):
            print_json(row)
    elif shape == "csv":
        flat = frame
        for side in ("before", "after"):
            fields = frame.schema[side]
            assert isinstance(fields, pl.Struct)
            flat = flat.with_columns(pl.col(side).struct.field(f.name).alias(f"{side}.{f.name}")
                                     for f in fields.fields).drop(side)
        flat = flat.with_columns(pl.col(c).cast(pl.String) for c, t in flat.schema.items()
                                 if isinstance(t, pl.Datetime))
        sys.stdout.write(flat.write_csv())
    else:
        view = lake.view(args.view)
        keys = [c for c in frame.columns if c not in
                ("change", "before", "after", "version", "view_version", "watermark",
                 "committed_at")]
        for row in frame.iter_rows(named=True):
            where = f"v{row['version']} (view v{row['view_version']}, seq {row['watermark']})"
            if row["change"] == "reset":
                say(f"{where} reset: {view.name} rebuilt, its rows follow")
                continue
            key = "/".join(str(row[k]) for k in keys)
            shown = {"insert": row["after"], "delete": row["before"],
                     "update": row["after"]}[row["change"]]
            say(f"{where} {row['change']} {key}: {json_text(shown)}")
        say(f"{frame.height} change(s)", style="dim")
    if args.commit and frame.height:
        lake.commit_cursor(args.view, args.cursor, max(frame.get_column("version").to_list()))
    return EXIT_OK
