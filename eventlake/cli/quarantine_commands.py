"""`eventlake quarantine list|replay`: see what was quarantined, and land corrected records
exactly once (eventlake/ingest/replay.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventlake.cli._app import EXIT_OK, _open_existing, command
from eventlake.cli.output import Column, plural, print_json, print_table, say
from eventlake.errors import CommandError

if TYPE_CHECKING:
    from eventlake.lake import Lake


def _quarantine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "replay"),
                        help="list: the quarantine files and their entries' state; replay "
                             "FILE: land the entries of FILE that pass the checks now")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="replay: a quarantine file (a path, or a name in the quarantine "
                             "folder); list: only this file")
    parser.add_argument("--quarantine-dir", metavar="DIR",
                        help="the quarantine folder (default <lake>/quarantine, as ingest "
                             "writes it)")


def _folder(args: argparse.Namespace, lake: Lake) -> Path:
    if args.quarantine_dir is not None:
        return Path(args.quarantine_dir)
    from eventlake.ingest.inbox import default_quarantine_dir

    return default_quarantine_dir(lake)


def _chosen(args: argparse.Namespace, folder: Path) -> Path:
    path = Path(args.file)
    if path.is_file():
        return path
    if (folder / args.file).is_file():
        return folder / args.file
    raise CommandError(f"no quarantine file {args.file} (looked in the working folder and in "
                       f"{folder}; `eventlake quarantine list` shows them)")


@command("quarantine", help="list quarantined records, or replay corrected ones exactly once",
         configure=_quarantine_args)
def cmd_quarantine(args: argparse.Namespace) -> int:
    """`list` shows each quarantine file with its entries: pending (not replayed yet),
    replayed, or whole-file (an unreadable file: fix it and ingest it with --as-new).

    `replay FILE` lands the entries of quarantine file FILE that pass the checks now (fix a
    record by editing its `raw` text in FILE: a JSON object, or a CSV row for a CSV file).
    Each corrected record lands once, keyed by its source file and line: a second replay
    is a no-op, and entries still bad are listed with their reason and stay in FILE.
    """
    from eventlake.ingest.replay import (
        entry_status,
        quarantine_entries,
        quarantine_files,
        replay_quarantine,
    )

    lake = _open_existing(args)
    folder = _folder(args, lake)
    if args.action == "replay":
        if args.file is None:
            raise CommandError("quarantine replay needs the quarantine FILE to replay")
        result = replay_quarantine(lake, _chosen(args, folder))
        if args.json:
            print_json(result.to_json())
            return EXIT_OK
        count = result.replayed
        if count:
            say(f"replayed {count} {plural(count, 'record')} of {result.quarantine_file} as "
                f"batch {result.batch_id}, seq {result.first_seq}..{result.last_seq}")
        else:
            say(f"nothing to replay in {result.quarantine_file}")
        if result.already:
            say(f"{result.already} {plural(result.already, 'record')} had been replayed "
                "before (skipped)")
        if result.whole_file:
            say(f"{result.whole_file} {plural(result.whole_file, 'entry', 'entries')} stand "
                "for an unreadable file: fix the file and ingest it with --as-new")
        for problem in result.still_bad:
            say(f"still bad: {problem}", stderr=True)
        return EXIT_OK
    files = [_chosen(args, folder)] if args.file is not None else quarantine_files(folder)
    rows: list[dict[str, Any]] = []
    snapshot = lake.log.snapshot()
    for path in files:
        for entry in quarantine_entries(path):
            rows.append({"quarantine_file": str(path), **entry.to_json(),
                         "status": entry_status(lake, entry, snapshot=snapshot)})
    if args.json:
        print_json({"folder": str(folder), "entries": rows})
        return EXIT_OK
    if not rows:
        say(f"no quarantined records in {folder}")
        return EXIT_OK
    print_table([Column("quarantine file"), Column("line", right=True), Column("status"),
                 Column("reason")],
                [[Path(r["quarantine_file"]).name, "" if r["line"] is None else str(r["line"]),
                  r["status"], r["reason"]] for r in rows])
    pending = sum(1 for r in rows if r["status"] == "pending")
    say(f"{len(rows)} {plural(len(rows), 'entry', 'entries')}, {pending} pending; fix a "
        "record's raw text in its file, then `eventlake quarantine replay FILE`")
    return EXIT_OK
