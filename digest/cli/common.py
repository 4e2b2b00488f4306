"""Shared pieces of the ``digest`` command line: the Typer apps, consoles, errors,
the week option and the terminal progress bar."""

from __future__ import annotations

import gc
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
from sqlalchemy.exc import OperationalError

from digest.core.clock import parse_week
from digest.core.settings import Settings, get_settings
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="The weekly verdict digest: AI-tool comparisons to every confirmed subscriber.\n\n"
    "Example: digest demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Typer's rich panels print a type after every flag ("--yes <bool>"),
    # which reads as if the flag took a value; click's layout prints flags bare.
    rich_markup_mode=None,
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
        help="The newest issue labelled with this ISO week, like 2026-W47 "
        "(default: the open issue, else the newest).",
    ),
]
IssueOpt = Annotated[
    int | None,
    typer.Option(
        "--issue",
        "-n",
        min=1,
        help="Issue number, like 12 for #12 (default: the open issue, else the newest).",
    ),
]


def say(text: str) -> None:
    """Print a line as it is: addresses, paths and subjects are not Rich markup, and
    nothing in them is coloured as if it were a number or a URL."""
    out.print(text, highlight=False, markup=False)


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
    # imported on use, not at start-up: keeps the CLI fast to start
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
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.jobs.weekly import open_store

    try:
        return open_store(s)
    except DigestError as exc:
        fail(str(exc))


# ---------------------------------------------------------------- commands


def main() -> None:
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.ops.logging_setup import configure_logging

    configure_logging(logging.WARNING)  # DIGEST_LOG_FORMAT / DIGEST_LOG_LEVEL
    try:
        app()
    except OperationalError as exc:
        # Raised past Typer (outside a command's own handling): say it in one line.
        # imported on use, not at start-up: keeps the CLI fast to start
        from digest.store.engine import is_locked

        if is_locked(exc):
            message = (
                "the database is locked by another process (waited DIGEST_DB_BUSY_TIMEOUT "
                "seconds); try again when it is done"
            )
        else:
            message = f"database error: {exc.orig}"
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise SystemExit(1) from None
    finally:
        # The command is over and the process is about to end: without the freeze the
        # interpreter's shutdown walks every object of the ~900 imported modules in
        # search of cycles to collect (0.3-0.4 s of every command on two cores). Files
        # are still flushed and atexit hooks still run, among them the one that closes
        # the database connections that collection used to close (digest.store.engine).
        gc.freeze()
