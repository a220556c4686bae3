"""Progress: the engine reports counts (`eventlake.model.progress`), the CLI draws them on a
terminal's stderr and nowhere else (`eventlake.cli.progress`)."""

from __future__ import annotations

import io
import sys

import pytest

import eventlake as el
from eventlake.cli import EXIT_OK, main
from eventlake.cli.progress import progress_display
from eventlake.engine.materialize import materialize_views
from eventlake.model.progress import Progress
from eventlake.views import AggregateView


class Terminal(io.StringIO):
    """A stream that says it is a terminal, to see what would be drawn on one."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def lake(tmp_path):
    opened = el.Lake.open(tmp_path / "lake",
                          views=[AggregateView("counts", 1, aggregates={"n": "count"})])
    for batch in range(3):
        opened.append([{"type": "t", "payload": {"i": i}, "partition": f"p{i % 4}"}
                       for i in range(batch * 10, batch * 10 + 10)])
    return opened


def test_the_engine_reports_counts_and_writes_nothing(lake, capfd):
    seen: list[Progress] = []
    materialize_views(lake, list(lake.views.values()), chunk_events=7, progress=seen.append)
    out, err = capfd.readouterr()
    assert out == err == ""
    assert {p.task for p in seen} == {"document", "counts"}
    for name in ("document", "counts"):
        mine = [p for p in seen if p.task == name]
        assert all(p.total is not None and 0 <= p.done <= p.total for p in mine)
        # A first build goes bucket by bucket, to the last one.
        assert mine[-1].unit == "buckets" and mine[-1].done == mine[-1].total
    lake.append([{"type": "t", "payload": {}, "partition": "p9"}])
    seen.clear()
    materialize_views(lake, [lake.view("counts")], progress=seen.append)
    assert seen == [Progress("counts", lake.last_seq(), lake.last_seq(), "seq")]


def test_bars_are_drawn_on_a_terminal_only(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_display() as progress:
        progress(Progress("view-[a]", 3, 10, "seq"))
        progress(Progress("view-[a]", 10, 10, "seq"))
    assert "view-[a]" in terminal.getvalue() and "10/10" in terminal.getvalue()

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    with progress_display() as progress:
        progress(Progress("view-a", 3, 10, "seq"))
        progress(Progress("benchmarking: step"))
    assert piped.getvalue() == ""


def test_quiet_draws_nothing_even_on_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_display(quiet=True) as progress:
        progress(Progress("view-a", 3, 10, "seq"))
    assert terminal.getvalue() == ""


def test_a_task_without_a_total_is_a_spinner_with_its_name(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_display() as progress:
        progress(Progress("benchmarking"))
        progress(Progress("benchmarking: refresh"))
    assert "benchmarking: refresh" in terminal.getvalue()


def test_lines_are_printed_terminal_or_not(capsys):
    with progress_display(lines=lambda p: f"  {p.done}/{p.total} chunk(s) written") as progress:
        progress(Progress("relayout", 1, 2, "chunks"))
        progress(Progress("relayout", 2, 2, "chunks"))
    assert capsys.readouterr().err.splitlines() == ["  1/2 chunk(s) written",
                                                    "  2/2 chunk(s) written"]


def test_materialize_draws_on_stderr_and_keeps_stdout_plain(lake, monkeypatch, capsys):
    """With stderr a terminal and stdout a pipe, the bar goes to stderr and the table to
    stdout without a control code."""
    views = lake.root + "/../views.py"
    with open(views, "w", encoding="utf-8") as handle:
        handle.write("from eventlake.views import AggregateView\n"
                     "counts = AggregateView('counts', 1, aggregates={'n': 'count'})\n")
    lake.append([{"type": "t", "payload": {}, "partition": "p1"}])
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["materialize", "--lake", lake.root, "--views", views, "--rebuild"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "counts" in terminal.getvalue()  # the bar, named by the view
    assert "\x1b" not in out and "counts" in out and "→" in out
    # --json: nothing drawn.
    terminal.seek(0)
    terminal.truncate()
    assert main(["materialize", "--lake", lake.root, "--views", views, "--json"]) == EXIT_OK
    assert terminal.getvalue() == ""


def test_a_file_bar_shows_bytes_rows_and_time_left(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_display() as progress:
        progress(Progress("events.jsonl", 3 * 2**20, 12 * 2**20, "bytes", rows=25_000))
        progress(Progress("events.jsonl", 12 * 2**20, 12 * 2**20, "bytes", rows=100_000))
    drawn = terminal.getvalue()
    assert "events.jsonl" in drawn and "12.0 MB/12.0 MB" in drawn and "100,000 rows" in drawn
