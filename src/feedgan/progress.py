"""The console every command prints to: progress (Rich bars on a terminal, plain lines in a log)
and one-line errors."""
from __future__ import annotations

import contextlib
import os
import sys
import time

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

# a terminal sets its own width; logs and pipes get room for the leaderboard tables, and their
# lines are never wrapped (a long log line or a markdown table row stays one line)
console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=not sys.stdout.isatty())

def print_line(line: str) -> None:
    """One plain line a log keeps whole: never wrapped, no markup read into it (params hold brackets)."""
    console.print(line, soft_wrap=True, markup=False, highlight=False)


LINE_EVERY_S = 5.0  # at most one progress line per task this often (a task's last line always prints)


class LineProgress:
    """The part of Rich's ``Progress`` the code uses (``add_task``, ``advance``, ``update``), printed
    as plain lines to stderr: at most one per task every ``every_s`` seconds, and one when the task
    completes. Extra fields given to ``update`` (e.g. ``valid=0.31``) are printed as ``key value``;
    a task with a total that is under way also prints ``eta`` (its remaining count at its mean rate so far).
    """

    def __init__(self, every_s: float | None = None):
        self.every_s = LINE_EVERY_S if every_s is None else every_s
        self._tasks: dict[int, dict] = {}

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        now = time.perf_counter()
        task = len(self._tasks)
        self._tasks[task] = {"description": description, "total": total, "completed": completed,
                             "fields": dict(fields), "start": now, "printed": now, "done": False}
        return task

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **fields) -> None:
        t = self._tasks[task]
        if description is not None:
            t["description"] = description
        if total is not None:
            t["total"] = total
        t["fields"].update(fields)
        moved = advance is not None or completed is not None
        t["completed"] = completed if completed is not None else t["completed"] + (advance or 0)
        if not moved or t["done"]:
            return
        now = time.perf_counter()
        finished = t["total"] is not None and t["completed"] >= t["total"]
        if finished or now - t["printed"] >= self.every_s:
            t["printed"], t["done"] = now, finished
            print(self._line(t, now), file=sys.stderr, flush=True)

    @staticmethod
    def _line(t: dict, now: float) -> str:
        count = f"{t['completed']:g}" + (f"/{t['total']:g}" if t["total"] is not None else "")
        extra = _fields(t["fields"])
        elapsed = now - t["start"]
        eta = ""
        if t["total"] is not None and 0 < t["completed"] < t["total"]:
            eta = f", eta {elapsed / t['completed'] * (t['total'] - t['completed']):.0f}s"
        return f"{t['description']}: {count}{extra}, {elapsed:.1f}s{eta}"


def _fields(fields: dict) -> str:
    """``{"valid": 0.31}`` -> ``", valid 0.3100"``: a task's extra fields as a progress line shows them."""
    return "".join(f", {k} {v:.4f}" if isinstance(v, float) else f", {k} {v}" for k, v in fields.items())


class _FieldsColumn(ProgressColumn):
    """A bar's extra fields (the latest validation score, ...), as :class:`LineProgress` prints them."""

    def render(self, task) -> Text:
        return Text(_fields(task.fields).lstrip(", "))


def _lines_wanted() -> bool:
    """Plain lines instead of bars: output is not a terminal, or ``FEEDGAN_PROGRESS=lines``."""
    return os.environ.get("FEEDGAN_PROGRESS") == "lines" or not (sys.stdout.isatty() and sys.stderr.isatty())


@contextlib.contextmanager
def progress_bar(enabled: bool | None = None, line_every_s: float | None = None):
    """A progress object (tasks: ``add_task``/``advance``/``update``), or ``None`` when disabled.

    On a terminal a Rich ``Progress``; off one (a log, a pipe) or with ``FEEDGAN_PROGRESS=lines`` a
    :class:`LineProgress` printing at most one line per task every ``line_every_s`` seconds (0: one per
    advance, e.g. per epoch). On by default unless ``FEEDGAN_NO_PROGRESS`` is set.
    """
    if enabled is None:
        enabled = not os.environ.get("FEEDGAN_NO_PROGRESS")
    if not enabled:
        yield None
        return
    if _lines_wanted():
        yield LineProgress(line_every_s)
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _FieldsColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as prog:
        yield prog


def fail(err: Exception) -> None:
    """Print ``err`` as one red line and exit with status 2 (a usage or input error)."""
    console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
