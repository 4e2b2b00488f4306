"""Shared pieces of the ``digest`` command line: the Typer apps, consoles, errors,
the week option and the terminal progress bar."""

from __future__ import annotations

import errno
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
from sqlalchemy.exc import SQLAlchemyError

from digest.core.clock import parse_week
from digest.core.problems import total_of
from digest.core.settings import Settings, get_settings
from digest.core.wording import plural
from digest.exceptions import DigestError, ImportValidationError

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


def fail_import(exc: DigestError) -> NoReturn:
    """An import refused as a whole: every problem on its own line (file and line or
    field), then the one line that says what happened."""
    problems = exc.problems if isinstance(exc, ImportValidationError) else str(exc).splitlines()
    for problem in problems:
        err.print(escape(problem), highlight=False, markup=False, soft_wrap=True)
    total = total_of(problems)
    shown = "" if total == len(problems) else f", the first {len(problems) - 1:,} listed"
    fail(f"import failed, nothing was written ({plural(total, 'problem')}{shown} above)")


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


#: Exit statuses every command documents (README "Exit status"): 0 done, 1 an error the
#: line names, 2 usage, 3 stopped short (send and friends), 70 a bug, 130 interrupted.
EXIT_ERROR = 1
EXIT_BUG = 70
EXIT_INTERRUPTED = 130


def _one_line(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def _problem_text(exc: BaseException) -> tuple[str, int]:
    """The one line a person reads for an error that reached the top, and its status."""
    if isinstance(exc, DigestError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, SQLAlchemyError):
        # imported on use, not at start-up: keeps the CLI fast to start
        from digest.store.engine import is_locked

        if is_locked(exc):
            return (
                "the database is locked by another process (waited DIGEST_DB_BUSY_TIMEOUT "
                "seconds); try again when it is done"
            ), EXIT_ERROR
        detail = getattr(exc, "orig", None) or exc
        return f"database error: {str(detail).strip().splitlines()[0]}", EXIT_ERROR
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        hint = ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = " (run it from a folder you can write to, or point the setting elsewhere)"
        return f"{where}{exc.strerror or exc}{hint}", EXIT_ERROR
    logger.debug("unexpected error", exc_info=exc)
    return (
        f"unexpected {type(exc).__name__}: {exc} (a bug: run again with "
        "DIGEST_LOG_LEVEL=DEBUG for the details and report them)"
    ), EXIT_BUG


def main() -> None:
    """The ``digest`` console script: no traceback ever reaches a person. Whatever a
    command does not handle itself ends here as one line and a documented status."""
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.ops.logging_setup import configure_logging

    try:
        configure_logging(logging.WARNING)  # DIGEST_LOG_FORMAT / DIGEST_LOG_LEVEL
        app()
    except KeyboardInterrupt:
        _one_line("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # the last line of defence: see the docstring
        message, code = _problem_text(exc)
        _one_line(message, code)
    finally:
        # The command is over and the process is about to end: without the freeze the
        # interpreter's shutdown walks every object of the ~900 imported modules in
        # search of cycles to collect (0.3-0.4 s of every command on two cores). Files
        # are still flushed and atexit hooks still run, among them the one that closes
        # the database connections that collection used to close (digest.store.engine).
        gc.freeze()
