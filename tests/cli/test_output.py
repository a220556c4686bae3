"""eventlake/cli/output.py: one JSON encoder for every `--json`, and tables that are not cut
when piped."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlake as el
from eventlake.cli import EXIT_OK, build_parser, main
from eventlake.cli._app import COMMANDS
from eventlake.cli.output import Column, cell, json_text, print_table


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def exact(text: str):
    """Decode JSON text keeping every number exact (a fraction as a Decimal)."""
    return json.loads(text, parse_float=Decimal)


# -- the encoder -----------------------------------------------------------------------------


def test_integers_and_decimals_are_exact():
    value = {"big": 2**200, "neg": -(2**64) - 1, "d0": Decimal("12345678901234567890123456789"),
             "frac": Decimal("123456789012345678901234567.123456789"),
             "small": Decimal("-0.000000000000000000001"), "exp": Decimal("1.5E+30")}
    text = json_text(value)
    decoded = exact(text)
    assert decoded["big"] == 2**200 and decoded["neg"] == -(2**64) - 1
    # An integral Decimal is an integer; one with a fraction keeps every digit (a float
    # would have kept 17).
    assert decoded["d0"] == 12345678901234567890123456789 and isinstance(decoded["d0"], int)
    assert decoded["frac"] == value["frac"] and decoded["small"] == value["small"]
    assert "123456789012345678901234567.123456789" in text
    assert decoded["exp"] == 1500000000000000000000000000000  # integral, so an int


def test_other_values():
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert exact(json_text([when, date(2025, 1, 2), time(3, 4), b"\x00\xff",
                            Decimal("NaN"), Path("a/b"), "ü"])) == [
        when.isoformat(), "2025-01-02", "03:04:00", "00ff", "NaN", "a/b", "ü"]
    assert json_text({"a": 1}, indent=2) == '{\n  "a": 1\n}'
    assert "\n" not in json_text({"a": [1, {"b": Decimal("0.5")}]})


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | decimals | st.text(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


def _expected(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, list):
        return [_expected(v) for v in value]
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_value_round_trips_exactly(value):
    text = json_text(value)
    assert "\n" not in text
    assert exact(text) == _expected(value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(['\x00', '"', "\\", ":", "0", "1", ".", "a", "u"])))
def test_text_that_looks_like_the_decimal_marker_stays_text(text):
    # A NUL, quotes and digits in user data never turn into a bare number.
    assert json.loads(json_text({"s": text, "d": Decimal("0.25")})) == {"s": text, "d": 0.25}


def test_cells():
    assert [cell(v) for v in (None, True, 3, Decimal("1.50"), b"\x01", [1, Decimal("0.5")],
                              {"k": "ü"})] == [
        "", "true", "3", "1.50", "01", "[1, 0.5]", '{"k": "ü"}']


# -- the same encoder in every command ---------------------------------------------------------


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.delenv("EVENTLAKE_LAKE", raising=False)
    monkeypatch.delenv("EVENTLAKE_VIEWS", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "lake"
    opened = el.Lake.open(root)
    opened.append([{"type": "deposit", "payload": {"amount": 2**62, "note": "[red]x[/red]"},
                    "partition": "acct-1"}] * 3)
    return root


def test_non_finite_floats_are_strings_not_bare_nan():
    text = json_text({"a": [float("nan"), 1.5], "b": float("inf"), "c": (float("-inf"),)})
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}")) == {
        "a": ["NaN", 1.5], "b": "Infinity", "c": ["-Infinity"]}


def test_sql_json_of_nan_parses_strictly(lake, capsys):
    code, out, err = run(capsys, "--lake", lake, "--json", "sql",
                         "select 'nan'::double as n, 'inf'::double as i, 2.5::double as f")
    assert code == EXIT_OK, err
    (line,) = out.splitlines()
    assert json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name}")) == {
        "n": "NaN", "i": "Infinity", "f": 2.5}


def test_sql_json_is_exact_for_hugeint_and_decimals(lake, capsys):
    query = ("select 170141183460469231731687303715884105727::hugeint as h, "
             "1234567890123456789012345678.1234567891::decimal(38, 10) as d, "
             "sum(cast(payload->>'$.amount' as hugeint)) as total from events")
    for argv in (["--json", "sql", query], ["sql", query, "--format", "json"]):
        code, out, err = run(capsys, "--lake", lake, *argv)
        assert code == EXIT_OK, err
        (line,) = out.splitlines()
        assert exact(line) == {"h": 2**127 - 1,
                               "d": Decimal("1234567890123456789012345678.1234567891"),
                               "total": 3 * 2**62}


def test_events_json_keeps_payload_integers(lake, capsys):
    code, out, _ = run(capsys, "--lake", lake, "events", "--json")
    assert code == EXIT_OK
    rows = [exact(line) for line in out.splitlines()]
    assert [r["payload"]["amount"] for r in rows] == [2**62] * 3
    assert all(isinstance(r["ts"], str) and r["ts"].startswith("20") for r in rows)


# -- human tables ----------------------------------------------------------------------------


LONG = "a_view_name_long_enough_that_eighty_columns_cannot_hold_the_row"


@pytest.fixture
def long_named_views(tmp_path):
    path = tmp_path / "long_views.py"
    path.write_text("from eventlake.views import AggregateView\n"
                    f"v = AggregateView({LONG!r}, 1, aggregates={{'n': 'count'}})\n")
    return path


def test_materialize_piped_prints_whole_rows(lake, long_named_views, capsys, monkeypatch):
    """Issue #18 item 5: piped, the table is as wide as it needs, nothing ends in '…'."""
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run(capsys, "--lake", lake, "--views", long_named_views, "materialize")
    assert code == EXIT_OK
    assert "…" not in out
    row = next(line for line in out.splitlines() if LONG in line)
    assert "0 → 3" in row and row.rstrip().endswith("0")  # the failed count, last
    assert max(len(line) for line in out.splitlines()) > 80


def test_columns_still_sets_the_width(lake, long_named_views, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "--lake", lake, "--views", long_named_views, "materialize",
                       "--rebuild")
    assert code == EXIT_OK
    assert "…" in out  # at 80 columns the numbers give way to the name


def test_events_piped_shows_the_whole_payload(lake, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run(capsys, "--lake", lake, "events")
    assert code == EXIT_OK
    # Cells are data: markup in a payload is shown as written.
    assert '{"amount":4611686018427387904,"note":"[red]x[/red]"}' in out.replace(" ", "")
    assert "…" not in out


def test_print_table_escapes_cells_and_shows_null(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    print_table([Column("[b]name[/b]"), Column("n", right=True)],
                [["[red]x[/red]", "1"], [None, "22"]])
    out = capsys.readouterr().out
    assert "[b]name[/b]" in out and "[red]x[/red]" in out and "NULL" in out
    assert "\x1b" not in out  # no colour codes into a pipe


def test_every_command_describes_itself_in_its_help():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name, spec in COMMANDS.items():
        if name == "bench":
            continue  # its help line says it all
        assert spec.description != spec.help, name
        assert spec.description.split()[0] in sub.choices[name].format_help(), name
    help_text = sub.choices["materialize"].format_help()
    assert "(--retry-failed folds them again)" in help_text.replace("\n", " ")


# -- files a command writes --------------------------------------------------------------------


STREAM_FAILS = ("select case when i < 300000 then i else error('boom at ' || i) end as x "
                "from range(400000) t(i)")


@pytest.mark.parametrize("name, query", [
    # DuckDB raises when its pipeline reaches row 300,000: typically after some batches of
    # rows have been written to the file.
    ("out.csv", STREAM_FAILS),
    ("out.jsonl", STREAM_FAILS),
    # A type Parquet cannot hold: the writer fails.
    ("out.parquet", "select union_value(k := 1) as u"),
])
def test_a_failed_sql_output_leaves_the_old_file(lake, capsys, tmp_path, name, query):
    target = tmp_path / name
    target.write_bytes(b"the previous result")
    code, _, err = run(capsys, "--lake", lake, "sql", query, "--output", target)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert target.read_bytes() == b"the previous result"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
    # The same command that succeeds replaces it whole.
    code, _, err = run(capsys, "--lake", lake, "sql", "select 1 as x", "--output", target)
    assert code == EXIT_OK, err
    assert target.read_bytes() != b"the previous result"
