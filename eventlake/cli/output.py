"""What the commands print: one JSON encoder for `--json`, and plain lines and tables for people.

JSON: one document per line (`print_json`), all through `json_text`: integers exact at any
size, a `Decimal` as the number it holds (an integral one as an integer; one with a fraction
with its own digits, never rounded through a float), a NaN or infinite number as the string
"NaN", "Infinity" or "-Infinity" (no JSON number can hold it), times in ISO 8601, bytes as hex,
any other value as its `str`.

Human output goes through rich with markup off for data (`say`) and cells escaped (`Table`),
so a value holding "[red]" is shown, not rendered. Width: a terminal's own, or `$COLUMNS`
when set; when the output is not a terminal (piped, redirected), unlimited, so no line is cut
or wrapped at 80 columns (`eventlake materialize | cat` shows every number whole).

rich loads inside these functions, not at import (`eventlake --help` stays fast).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Column", "cell", "console", "human_bytes", "json_text", "plural", "print_json",
           "print_pairs", "print_table", "say"]

# The width of output that is not a terminal: wide enough that nothing is ever cut.
FULL_WIDTH = 1_000_000

# A Decimal with a fraction is written as a JSON number with its own digits. `json` cannot
# emit raw number text from `default`, so it returns this process-random marker plus the
# digits, and `json_text` turns the quoted marker back into the bare number. User text
# cannot forge it: the marker starts with a NUL (escaped as \u0000 in every JSON string) and
# its random part is never shown.
_RAW = f"\x00{os.urandom(8).hex()}:"
_RAW_QUOTED = json.dumps(_RAW)[1:-1]
_RAW_NUMBER = re.compile('"' + re.escape(_RAW_QUOTED) + r'([-+.0-9eE]+)"')


def _encode(value: object) -> Any:
    """The JSON form of what `json` does not know (its `default`)."""
    from decimal import Decimal  # here, not at import: off the start path of `--help`

    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)  # NaN/Infinity are no JSON numbers
        if value == value.to_integral_value():
            return int(value)
        return _RAW + str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _finite(value: Any) -> Any:
    """`value` with each NaN or infinite float as the string JSON readers agree on for it
    ("NaN", "Infinity", "-Infinity"), as a non-finite Decimal already is."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_text(value: object, *, indent: int | None = None) -> str:
    """`value` as JSON text (one line unless `indent`), exactly; see the module doc."""
    try:
        text = json.dumps(value, ensure_ascii=False, indent=indent, default=_encode,
                          allow_nan=False)
    except ValueError:
        # A bare NaN is no JSON (jq and most parsers refuse the whole document): the rare
        # value that holds one is walked once more with them spelled as strings.
        text = json.dumps(_finite(value), ensure_ascii=False, indent=indent, default=_encode,
                          allow_nan=False)
    if _RAW_QUOTED in text:
        text = _RAW_NUMBER.sub(r"\1", text)
    return text


def print_json(value: object, *, indent: int | None = None) -> None:
    """Write `value` to stdout as one JSON document (one line unless `indent`)."""
    sys.stdout.write(json_text(value, indent=indent) + "\n")


def cell(value: Any) -> str:
    """A value as the text of one CSV or table cell: NULL is empty, nested values are JSON,
    times ISO 8601, bytes hex."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


# -- human output ----------------------------------------------------------------------------


def _width(stream: IO[str]) -> int | None:
    """The width to give rich: None lets it measure (a terminal, or `$COLUMNS`)."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return None
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError, OSError):
        terminal = False
    return None if terminal else FULL_WIDTH


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), as wide as the module doc says."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True,
                   width=_width(sys.stderr if stderr else sys.stdout))


def say(text: str = "", *, stderr: bool = False, style: str | None = None) -> None:
    """Print one plain line (no markup: what it says may hold brackets)."""
    console(stderr=stderr).print(text, markup=False, style=style)


def plural(count: int, word: str, words: str | None = None) -> str:
    """`word` or its plural (`words`, default `word` + "s") for `count`."""
    return word if count == 1 else (words or f"{word}s")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@dataclass(frozen=True)
class Column:
    """One column of a table: numbers go right; `wrap=False` keeps a cell on one line; a cell
    too long for the width ends in "…", or with `fold` goes on over more lines."""

    header: str
    right: bool = False
    wrap: bool = True
    min_width: int | None = None
    fold: bool = False


def print_table(columns: Sequence[Column], rows: Iterable[Sequence[str | None]], *,
                out: Console | None = None) -> None:
    """Print a table of text cells (None shows as a dim NULL); cells are data, escaped."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(escape(column.header), justify="right" if column.right else "left",
                         no_wrap=not column.wrap, min_width=column.min_width,
                         overflow="fold" if column.fold else "ellipsis")
    for row in rows:
        table.add_row(*("[dim]NULL[/dim]" if value is None else escape(value)
                        for value in row))
    (out or console()).print(table)


def print_pairs(rows: Iterable[tuple[str, str]], *, indent: str = "") -> None:
    """Print `key  value` lines with the keys aligned and bold (a summary such as `info`)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2, 0, 0),
                  pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(escape(indent + key), escape(value))
    console().print(table)
