"""Commands for SQL: sql (run a query), duckdb (write an init script for the DuckDB shell)."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from eventlake.cli._app import EXIT_OK, _open_existing, command
from eventlake.cli.output import Column, cell, json_text, plural, print_json, print_table, say
from eventlake.errors import CommandError

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

FORMATS = ("table", "csv", "json", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json",
                   ".parquet": "parquet"}
_TABLE_ROWS = 1000
_BATCH = 10_000
INIT_FILE = "duckdb-init.sql"


# -- sql -------------------------------------------------------------------------------------


def _sql_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", metavar="QUERY",
                        help="DuckDB SQL; the tables are `events` and every view by name")
    parser.add_argument("--format", "-f", choices=FORMATS, metavar="FORMAT",
                        help="table, csv, json (JSON Lines) or parquet (needs --output); "
                             "default: table on a terminal, csv when piped, json with --json, "
                             "or from the --output suffix")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the result to FILE instead of stdout ('-' is stdout)")
    parser.add_argument(
        "--accept-changed-definition", action="store_true", dest="accept",
        help="a view the query names whose definition changed without a version bump: "
             "record the new definition and read its rows as they are")


def _choose_format(args: argparse.Namespace, to_file: bool) -> str:
    if args.format is not None:
        return str(args.format)
    if to_file:
        return _SUFFIX_FORMATS.get(Path(args.output).suffix.lower(), "csv")
    if args.json:
        return "json"
    return "table" if sys.stdout.isatty() else "csv"


def _reader(relation: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    reader = relation.to_arrow_reader(_BATCH)
    if reader is None:
        raise CommandError("the query returned no result set")
    return reader


def _batches(relation: duckdb.DuckDBPyRelation) -> Iterator[list[tuple[Any, ...]]]:
    """The result in row batches, streamed (DuckDB 2 relations keep no result between calls:
    one Arrow record batch reader runs the query once)."""
    columns = relation.columns
    for batch in _reader(relation):
        data = [batch.column(i).to_pylist() for i in range(len(columns))]
        yield list(zip(*data, strict=True))


@contextmanager
def _text_target(path: str | None) -> Iterator[IO[str]]:
    """stdout, or FILE written whole then renamed into place (no half-written result)."""
    if path is None or path == "-":
        yield sys.stdout
        return
    from eventlake.store.atomicfile import atomic_write

    with atomic_write(path, newline="") as handle:
        yield handle


def _write_csv(relation: duckdb.DuckDBPyRelation, path: str | None) -> int:
    count = 0
    with _text_target(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(relation.columns)
        for rows in _batches(relation):
            writer.writerows([cell(v) for v in row] for row in rows)
            count += len(rows)
    return count


def _write_json(relation: duckdb.DuckDBPyRelation, path: str | None) -> int:
    columns = relation.columns
    count = 0
    with _text_target(path) as handle:
        for rows in _batches(relation):
            for row in rows:
                record = dict(zip(columns, row, strict=True))
                handle.write(json_text(record) + "\n")
            count += len(rows)
    return count


def _write_parquet(relation: duckdb.DuckDBPyRelation, path: str) -> int:
    import pyarrow.parquet as pq

    from eventlake.store.atomicfile import atomic_path

    reader = _reader(relation)
    count = 0
    with atomic_path(path) as partial, pq.ParquetWriter(
            partial, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            count += batch.num_rows
    return count


_NUMERIC = {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER",
            "USMALLINT", "UTINYINT", "UHUGEINT", "DOUBLE", "FLOAT", "REAL"}


def _print_table(relation: duckdb.DuckDBPyRelation) -> int:
    types = [str(t) for t in relation.types]
    rows = relation.limit(_TABLE_ROWS + 1).fetchall()
    more = len(rows) > _TABLE_ROWS
    rows = rows[:_TABLE_ROWS]
    columns = [Column(name, right=kind in _NUMERIC or kind.startswith("DECIMAL"), fold=True)
               for name, kind in zip(relation.columns, types, strict=True)]
    print_table(columns, ([None if v is None else cell(v) for v in row] for row in rows))
    shown = len(rows)
    if more:
        say(f"showing the first {_TABLE_ROWS} rows; --format csv or --output FILE for all of "
            "them")
    else:
        say(f"{shown} {plural(shown, 'row')}")
    return shown


@command("sql", help="run DuckDB SQL over events and the views", configure=_sql_args)
def cmd_sql(args: argparse.Namespace) -> int:
    """Run one DuckDB query. `events` and every view are tables over the latest committed
    snapshot; payload fields work with DuckDB's JSON operators, e.g. "select partition_id,
    sum((payload->>'$.amount')::double) from events group by 1".
    """
    import duckdb
    import pyarrow as pa

    to_file = args.output is not None and args.output != "-"
    fmt = _choose_format(args, to_file)
    if fmt == "parquet" and not to_file:
        raise CommandError("--format parquet needs --output FILE")
    if fmt == "table" and to_file:
        raise CommandError("--format table prints to the terminal; use csv, json or parquet "
                           "with --output")
    lake = _open_existing(args)
    try:
        relation = lake.sql(args.query, accept_changed_definition=args.accept)
        if relation is None:  # a statement without a result (SET, CREATE ...)
            if args.json and not to_file:
                print_json({"rows": 0})
            return EXIT_OK
        path = args.output if to_file else None
        if fmt == "table":
            _print_table(relation)
            return EXIT_OK
        if fmt == "csv":
            count = _write_csv(relation, path)
        elif fmt == "json":
            count = _write_json(relation, path)
        else:
            count = _write_parquet(relation, args.output)
    except duckdb.Error as exc:
        raise CommandError(f"SQL failed: {exc}") from exc
    except pa.ArrowException as exc:  # a result type the chosen format cannot hold
        raise CommandError(f"cannot write the result as {fmt}: {exc}") from exc
    if to_file:
        if args.json:
            print_json({"output": os.path.abspath(args.output), "format": fmt, "rows": count})
        else:
            say(f"wrote {count} rows to {args.output} ({fmt})", stderr=True)
    return EXIT_OK


# -- duckdb ----------------------------------------------------------------------------------


def _duckdb_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", metavar="FILE",
                        help=f"where to write the init script ('-' prints it; default: "
                             f"<lake>/{INIT_FILE} for a local lake, "
                             f"data/duckdb/<bucket>/<prefix>/{INIT_FILE} for one on object "
                             "storage)")
    parser.add_argument("--delta-extension", action=argparse.BooleanOptionalAction,
                        default=None, dest="delta",
                        help="read the tables with DuckDB's delta extension (default: when it "
                             "loads here without a download)")


@command("duckdb", help="write a DuckDB init script that defines events and the views",
         configure=_duckdb_args)
def cmd_duckdb(args: argparse.Namespace) -> int:
    """Write a SQL script that defines `events` and every view in a fresh DuckDB; open the shell
    with `duckdb -init FILE`. Without the delta extension the script lists the files of the
    current snapshot and must be regenerated after new commits.
    """
    from eventlake.query.deltaext import find_delta_extension
    from eventlake.query.sql import init_script

    lake = _open_existing(args)
    extension = find_delta_extension()
    if args.delta and not extension.available:
        # A script that starts with a LOAD the shell cannot do fails at its first line.
        raise CommandError(f"--delta-extension: {extension.problem}")
    script = init_script(lake, use_delta_extension=args.delta)
    if args.output == "-":
        sys.stdout.write(script.sql)
        return EXIT_OK
    if args.output:
        target = args.output
    else:
        # A lake on object storage gets a local folder of its own (the script is a local file
        # for a local shell, and never holds credentials).
        folder = lake.storage.local_home("duckdb")
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, INIT_FILE)
    with _text_target(target) as handle:
        handle.write(script.sql)
    usage = f"duckdb -init {_shell_quote(target)}"
    if script.uses_delta_extension:
        note = ("reads events with the delta extension (delta_scan): new events show up "
                "without regenerating; run `eventlake duckdb` again after a view rebuild")
    else:
        note = (f"the delta extension is not available, so the script lists the files of the "
                f"current snapshot (events table version {script.events_version}); run "
                "`eventlake duckdb` again after new commits (ingest, materialize, compaction)")
    shell = _shell_warning(extension.duckdb_release) if script.uses_delta_extension else None
    if args.json:
        print_json({"output": os.path.abspath(target), "tables": list(script.tables),
                    "delta_extension": script.uses_delta_extension,
                    "events_version": script.events_version, "usage": usage, "note": note,
                    "warning": shell})
        return EXIT_OK
    say(f"wrote {target} (tables: {', '.join(script.tables)})")
    say(f"open it with: {usage}")
    say(note)
    if shell:
        print(f"warning: {shell}", file=sys.stderr)
    return EXIT_OK


def _shell_warning(release: str) -> str | None:
    """Why the DuckDB shell this environment would run cannot load the script's extension:
    an extension binary loads only into the release it was built for."""
    from eventlake.query.deltaext import find_duckdb_shell

    shell = find_duckdb_shell()
    if shell is None:
        return (f"no duckdb shell found beside this Python or on PATH; pip install "
                f"'duckdb-cli=={release}' (the extension loads only into DuckDB {release})")
    if shell.release != release:
        return (f"the duckdb shell {shell.path} is release {shell.release or 'unknown'}, but "
                f"the delta extension here is for DuckDB {release}: the shell will refuse it; "
                f"pip install 'duckdb-cli=={release}'")
    return None


def _shell_quote(path: str) -> str:
    import shlex

    return shlex.quote(path)
