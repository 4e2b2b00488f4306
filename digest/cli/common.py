"""Shared pieces of the ``digest`` command line: the Typer apps, consoles, errors,
the week option and the terminal progress bar."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy.engine import Engine

from digest.config import Settings, get_settings
from digest.exceptions import DigestError
from digest.timeutil import parse_week

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="The weekly verdict digest: AI-tool comparisons to every confirmed subscriber.\n\n"
    "Example: digest demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
comparisons_app = typer.Typer(
    help="Inspect stored comparisons.\n\nExample: digest comparisons list --json",
    no_args_is_help=True,
)
subscribers_app = typer.Typer(
    help="Add, import and list subscribers.\n\nExample: digest subscribers list --json",
    no_args_is_help=True,
)
app.add_typer(comparisons_app, name="comparisons")
app.add_typer(subscribers_app, name="subscribers")

err = Console(stderr=True)
out = Console(soft_wrap=True)

WeekOpt = Annotated[
    str | None,
    typer.Option(
        "--week",
        "-w",
        help="The issue labelled with this ISO week, like 2026-W47 (default: the open issue).",
    ),
]
IssueOpt = Annotated[
    int | None,
    typer.Option(
        "--issue", "-n", min=1, help="Issue number, like 12 for #12 (default: the open issue)."
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    # Escaped: file names and JSON paths like "x.json[0]" or "pages[draft].txt" are not
    # markup. soft_wrap: a long path must stay on one line to be copied or grepped.
    err.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True
    )
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except DigestError as exc:
        fail(str(exc))


def actor() -> str:
    """Who the history says did it: the command line and the OS account running it."""
    import getpass

    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):  # no name for this uid (containers)
        return "cli"


def checked_week(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_week(value)
    except ValueError as exc:
        fail(str(exc), 2)
    return value.strip()


class RateColumn(ProgressColumn):
    """Items per second (rich's speed columns speak of bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:>7.0f}/s")


class TerminalProgress:
    """A rich progress bar on a terminal; silent otherwise (the summary line still prints)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = err.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total)

    def advance(self, n: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def progress_bar(label: str) -> Iterator[TerminalProgress]:
    bar = TerminalProgress(label)
    try:
        yield bar
    finally:
        bar.stop()


def store_engine(s: Settings) -> Engine:
    from digest.jobs import open_store

    try:
        return open_store(s)
    except DigestError as exc:
        fail(str(exc))


# ---------------------------------------------------------------- commands


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()
