"""Commands that keep a deployment safe: backup and restore of the store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest.cli.common import TerminalProgress, app, fail, progress_bar, say, settings
from digest.exceptions import DigestError

if TYPE_CHECKING:
    # Only a type: importing the backup module at start-up would load FastAPI and
    # Alembic (through the health checks) for every command.
    from digest.ops.backup import PageProgress

logger = logging.getLogger(__name__)


def _pages(bar: TerminalProgress) -> PageProgress:
    """A page-progress callback driving ``bar``."""
    done = 0

    def advance(copied: int, total: int) -> None:
        nonlocal done
        if done == 0 and copied < total:
            bar.start(total)
        bar.advance(copied - done)
        done = copied

    return advance


@app.command()
def backup(
    path: Annotated[Path, typer.Argument(help="File to write the backup to.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Copy the SQLite store to PATH while everything keeps running (online backup).

    For PostgreSQL it prints the pg_dump and pg_restore commands to use and exits 1.

    Example: digest backup backups/digest-2026-11-23.db
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.ops.backup import backup_store

    try:
        with progress_bar("backing up") as bar:
            snapshot = backup_store(settings(), path, force=force, progress=_pages(bar))
    except DigestError as exc:
        fail(str(exc))
    say(f"backup: {snapshot.describe()}")


@app.command()
def restore(
    path: Annotated[Path, typer.Argument(help="A file written by `digest backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm: replaces the database's content.")
    ] = False,
) -> None:
    """Replace the SQLite store's content with a backup; the current one is kept beside it.

    Example: digest restore backups/digest-2026-11-23.db --yes
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.ops.backup import restore_store

    if not yes:
        fail("restoring replaces every subscriber, issue and delivery; add --yes", 2)
    try:
        with progress_bar("restoring") as bar:
            report = restore_store(settings(), path, progress=_pages(bar))
    except DigestError as exc:
        fail(str(exc))
    say(report.summary())
