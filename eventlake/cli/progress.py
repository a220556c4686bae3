"""The one progress renderer of the CLI: draws the engine's `Progress` updates on stderr.

The engine only reports counts (`eventlake.model.progress`); this is where they become
something to see. On a terminal (stderr is a TTY) a task with a total is a transient bar
(`name ━━━━━━  12/64`), one per task, and a task without one a spinner with its name; both
vanish when the command ends. When stderr is not a terminal nothing is drawn: a log file or
a pipe gets no control codes and no lines.

`lines=` instead prints one plain line per update, terminal or not, for operations whose
progress is worth keeping in a log (`maintain --relayout`: "  3/12 chunk(s) written").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from eventlake.cli.output import console, say

if TYPE_CHECKING:
    from rich.console import Console

    from eventlake.model.progress import Progress, ProgressSink

__all__ = ["progress_display"]


class _Display:
    """Turns updates into rich renderables on a terminal console."""

    def __init__(self, out: Console) -> None:
        self._out = out
        self._bars: Any = None  # rich.progress.Progress, made on the first counted update
        self._tasks: dict[str, Any] = {}
        self._status: Any = None  # rich.status.Status, for updates without a total

    def __call__(self, update: Progress) -> None:
        if update.total is None:
            self._spin(update.task)
        else:
            self._bar(update.task, update.done, update.total, unit=update.unit,
                      rows=update.rows)

    def _spin(self, text: str) -> None:
        if self._status is None:
            self._stop_bars()
            self._status = self._out.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)

    def _bar(self, task: str, done: int, total: int, *, unit: str = "step",
             rows: int | None = None) -> None:
        if self._bars is None:
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bars

            self._stop_status()
            self._bars = Bars(TextColumn("{task.description}"), BarColumn(), _amount_column(),
                              TimeRemainingColumn(), console=self._out, transient=True)
            self._bars.start()
        if task not in self._tasks:
            from rich.markup import escape

            self._tasks[task] = self._bars.add_task(escape(task), total=total, unit=unit,
                                                    rows=rows)
        self._bars.update(self._tasks[task], completed=done, total=total, unit=unit, rows=rows)

    def _stop_bars(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars, self._tasks = None, {}

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def close(self) -> None:
        self._stop_bars()
        self._stop_status()


def _amount_column() -> Any:
    """`12/64` for counts; for bytes `31.0 MB/114.0 MB  270,000 rows  9.1 MB/s`."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    from eventlake.cli.output import human_bytes

    class Amount(ProgressColumn):
        def render(self, task: Any) -> Text:
            done, total = int(task.completed), int(task.total or 0)
            if task.fields.get("unit") != "bytes":
                return Text(f"{done}/{total}")
            text = f"{human_bytes(done)}/{human_bytes(total)}"
            rows = task.fields.get("rows")
            if rows is not None:
                text += f"  {rows:,} rows"
            if task.speed:
                text += f"  {human_bytes(int(task.speed))}/s"
            return Text(text)

    return Amount()


def _ignore(update: Progress) -> None:
    pass


@contextmanager
def progress_display(*, quiet: bool = False,
                     lines: Callable[[Progress], str] | None = None) -> Iterator[ProgressSink]:
    """Yield the sink to hand to the engine for the duration of one command.

    `quiet` (for `--json`) shows nothing; `lines` prints `lines(update)` dim on stderr for
    each update instead of drawing (see the module doc)."""
    if quiet:
        yield _ignore
        return
    if lines is not None:
        def line(update: Progress) -> None:
            say(lines(update), stderr=True, style="dim")

        yield line
        return
    out = console(stderr=True)
    if not out.is_terminal:
        yield _ignore
        return
    display = _Display(out)
    try:
        yield display
    finally:
        display.close()
