"""Commands for the content of an issue: init, import, comparisons, preview, edit."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlmodel import Session

from digest.exceptions import DigestError
from digest.wording import plural

if TYPE_CHECKING:
    pass

from digest.cli.common import (
    WeekOpt,
    app,
    checked_week,
    comparisons_app,
    fail,
    out,
    progress_bar,
    settings,
    store_engine,
)

logger = logging.getLogger(__name__)


@app.command()
def init() -> None:
    """Create the database or upgrade it to the newest schema.

    Example: DIGEST_DATABASE_URL=sqlite:///digest.db digest init
    """
    s = settings()
    try:
        store_engine(s)
    except DigestError as exc:
        fail(str(exc))
    out.print(f"database ready: {s.database_url}", highlight=False)


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="JSON files or comparison-page text files.")],
    published_at: Annotated[
        str | None,
        typer.Option(help="ISO 8601 time for files that carry none (default: now)."),
    ] = None,
) -> None:
    """Import comparisons; all files are checked before anything is written.

    Example: digest import pages/*.txt --published-at 2026-11-18T09:00:00+00:00
    """
    from digest.importer import import_comparisons

    when = None
    if published_at:
        try:
            when = datetime.fromisoformat(published_at)
        except ValueError:
            fail(f"--published-at: not an ISO 8601 date-time: {published_at!r}", 2)
        if when.tzinfo is None:
            when = when.replace(tzinfo=settings().tz)
    s = settings()
    try:
        engine = store_engine(s)
        with progress_bar("importing") as bar:
            bar.start(len(paths))
            summary = import_comparisons(engine, paths, when, progress=bar.advance)
    except DigestError as exc:
        fail(f"import failed, nothing was written:\n{exc}")
    out.print(
        f"imported {plural(summary.created + summary.updated, 'comparison')} "
        f"({summary.created} new, {summary.updated} updated)",
        highlight=False,
    )


@comparisons_app.command("list")
def comparisons_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print canonical JSON.")] = False,
) -> None:
    """List stored comparisons, newest first.

    Example: digest comparisons list --json > backup.json
    """
    from digest.importer import list_comparisons
    from digest.schema import comparison_to_dict

    s = settings()
    engine = store_engine(s)
    with Session(engine) as session:
        items = list(list_comparisons(session))
        if as_json:
            sys.stdout.write(json.dumps([comparison_to_dict(c) for c in items], indent=2) + "\n")
            return
        for c in items:
            out.print(f"{c.published_at:%Y-%m-%d}  {c.slug}  {c.title}", highlight=False)
        out.print(plural(len(items), "comparison"), highlight=False)


@app.command()
def preview(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")],
    week: WeekOpt = None,
) -> None:
    """Write digest.html, digest.txt and digest.eml exactly as a subscriber gets them.

    Example: digest preview --week 2026-W47 --out preview/
    """
    from digest.preview import write_preview

    s = settings()
    engine = store_engine(s)
    try:
        paths = write_preview(engine, s, checked_week(week), out_dir)
    except DigestError as exc:
        fail(str(exc))
    if paths is None:
        out.print("no new comparisons for that week: nothing to preview", highlight=False)
        return
    for p in paths:
        out.print(f"wrote {p}", highlight=False)


@app.command()
def edit(
    week: WeekOpt = None,
    subject: Annotated[str | None, typer.Option(help="New subject line.")] = None,
    preheader: Annotated[str | None, typer.Option(help="New preheader (inbox preview).")] = None,
    intro: Annotated[str | None, typer.Option(help="New intro paragraph.")] = None,
) -> None:
    """Adjust an unsent issue's subject, preheader or intro; the email is re-compiled.

    Example: digest edit --week 2026-W47 --subject "Two coding copilots, one verdict"
    """
    from digest.db import session_scope
    from digest.issues import edit_issue, freeze_issue
    from digest.jobs import current_week

    if subject is None and preheader is None and intro is None:
        fail("nothing to change: give --subject, --preheader or --intro", 2)
    s = settings()
    engine = store_engine(s)
    target = checked_week(week) or current_week(s)
    try:
        with session_scope(engine) as session:
            issue = freeze_issue(session, target, s)
            if issue is None:
                fail(f"no new comparisons for {target}: there is no issue to edit")
            edit_issue(session, issue, s, subject=subject, preheader=preheader, intro=intro)
    except DigestError as exc:
        fail(str(exc))
    out.print(f"issue {target} updated: {issue.subject}", highlight=False)
