"""The console every command prints to: Rich progress bars and one-line errors."""
from __future__ import annotations

import contextlib
import os
import sys

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# a terminal sets its own width; logs and pipes get room for the leaderboard tables
console = Console(width=None if sys.stdout.isatty() else 120)


@contextlib.contextmanager
def progress_bar(enabled: bool | None = None):
    """A Rich ``Progress`` (tasks: ``add_task``/``advance``), or ``None`` when disabled.

    Disabled by default when output is not a terminal or ``FEEDGAN_NO_PROGRESS`` is set, so logs
    and CI output stay clean.
    """
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("FEEDGAN_NO_PROGRESS")
    if not enabled:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                  transient=True) as prog:
        yield prog


def fail(err: Exception) -> None:
    """Print ``err`` as one red line and exit with status 2 (a usage or input error)."""
    console.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
