"""Commands for the content of an issue: init, import, comparisons, preview, edit."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from digest.cli.common import (
    IssueOpt,
    WeekOpt,
    actor,
    app,
    checked_week,
    comparisons_app,
    fail,
    fail_import,
    out,
    progress_bar,
    say,
    settings,
    store_engine,
)
from digest.core.wording import plural
from digest.exceptions import DigestError

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
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.store.importer import import_comparisons

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
        fail_import(exc)
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
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.store.importer import list_comparisons
    from digest.store.schema import comparison_to_dict

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
    issue: IssueOpt = None,
) -> None:
    """Write digest.html, digest.txt and digest.eml exactly as a subscriber gets them.

    Without --issue or --week: the open issue, or the next one, frozen now as a draft.

    Example: digest preview --out preview/
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.jobs.preview import write_preview

    s = settings()
    engine = store_engine(s)
    try:
        paths = write_preview(engine, s, checked_week(week), out_dir, number=issue, actor=actor())
    except DigestError as exc:
        fail(str(exc))
    if paths is None:
        out.print("nothing new: no issue to preview", highlight=False)
        return
    for p in paths:
        out.print(f"wrote {p}", highlight=False)


def _slugs(values: list[str] | None) -> list[str]:
    return [s.strip() for v in values or [] for s in v.split(",") if s.strip()]


@app.command()
def edit(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    subject: Annotated[str | None, typer.Option(help="New subject line.")] = None,
    preheader: Annotated[str | None, typer.Option(help="New preheader (inbox preview).")] = None,
    intro: Annotated[str | None, typer.Option(help='New intro paragraph ("" for none).')] = None,
    add: Annotated[
        list[str] | None,
        typer.Option("--add", help="Add a new comparison by slug (as a link; repeatable)."),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option("--drop", help="Drop a comparison by slug (it goes to the next issue)."),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(help="New order: comma-separated slugs (the rest keep their order after)."),
    ] = None,
    full: Annotated[
        str | None,
        typer.Option(help="Comma-separated slugs that get full cards; the others become links."),
    ] = None,
    note_file: Annotated[
        Path | None,
        typer.Option(
            "--note-file",
            help="The editor's note above the comparisons: a Markdown file (links, "
            "emphasis, lists; HTML and images are removed). An empty file removes the note.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    take: Annotated[
        list[str] | None,
        typer.Option(
            "--take",
            help="SLUG=TEXT: a one-line editor's take on a comparison (SLUG= removes it; "
            "repeatable).",
        ),
    ] = None,
) -> None:
    """Adjust a draft: words (subject, preheader, intro, the editor's note and takes),
    which comparisons, their order, which get full cards.

    The email is re-compiled and the change recorded in the issue's history; an approved
    draft needs approving again. Without --issue or --week: the open issue, or the next
    one, frozen now as a draft.

    Example: digest edit --issue 12 --subject "Two coding copilots, one verdict" --drop old-slug
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.issue.editing import Edit, edit_issue
    from digest.jobs.schedule import prepare_draft
    from digest.store.engine import session_scope

    takes: dict[str, str] = {}
    for given in take or []:
        slug, sep, text = given.partition("=")
        if not sep or not slug.strip():
            fail(f"--take wants SLUG=TEXT, not {given[:40]!r}", 2)
        takes[slug.strip()] = text
    note: str | None = None
    if note_file is not None:
        try:
            note = note_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the note: {exc}", 2)
    change = Edit(
        subject=subject,
        note=note,
        takes=takes or None,
        preheader=preheader,
        intro=intro,
        add=_slugs(add),
        drop=_slugs(drop),
        order=_slugs([order]) if order is not None else None,
        full=_slugs([full]) if full is not None else None,
    )
    if change.empty:
        fail(
            "nothing to change: give --subject, --preheader, --intro, --note-file, --take, "
            "--add, --drop, --order or --full",
            2,
        )
    s = settings()
    engine = store_engine(s)
    try:
        with session_scope(engine) as session:
            target = prepare_draft(
                session, s, number=issue, week=checked_week(week), actor=actor()
            ).issue
            if target is None:
                fail("nothing new: there is no issue to edit")
            changes = edit_issue(session, target, s, change, actor=actor())
            label, subject_now = target.label, target.subject
    except DigestError as exc:
        fail(str(exc))
    if not changes:
        say(f"issue {label}: nothing changed")
        return
    say(f"issue {label} updated ({', '.join(changes)}): {subject_now}")
