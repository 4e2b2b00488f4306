"""The ``digest`` command line (Typer). Every command's help ends with an example."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
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
from sqlmodel import Session

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
out = Console()

WeekOpt = Annotated[
    str | None,
    typer.Option("--week", "-w", help="ISO week like 2026-W47 (default: the current week)."),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except DigestError as exc:
        fail(str(exc))


def _week(value: str | None) -> str | None:
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


def _engine(s: Settings) -> Engine:
    from digest.jobs import open_store

    try:
        return open_store(s)
    except DigestError as exc:
        fail(str(exc))


# ---------------------------------------------------------------- commands


@app.command()
def init() -> None:
    """Create the database or upgrade it to the newest schema.

    Example: DIGEST_DATABASE_URL=sqlite:///digest.db digest init
    """
    s = settings()
    try:
        _engine(s)
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
        engine = _engine(s)
        with progress_bar("importing") as bar:
            bar.start(len(paths))
            summary = import_comparisons(engine, paths, when, progress=bar.advance)
    except DigestError as exc:
        fail(f"import failed, nothing was written:\n{exc}")
    out.print(
        f"imported {summary.created + summary.updated} comparisons "
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
    engine = _engine(s)
    with Session(engine) as session:
        items = list(list_comparisons(session))
        if as_json:
            sys.stdout.write(json.dumps([comparison_to_dict(c) for c in items], indent=2) + "\n")
            return
        for c in items:
            out.print(f"{c.published_at:%Y-%m-%d}  {c.slug}  {c.title}", highlight=False)
        out.print(f"{len(items)} comparisons", highlight=False)


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(help="The address.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Add an active subscriber (you vouch for their consent).

    Example: digest subscribers add ada@example.com --name "Ada Lovelace"
    """
    from digest.db import session_scope
    from subscribers.service import add_subscriber

    engine = _engine(settings())
    try:
        with session_scope(engine) as session:
            sub, created = add_subscriber(session, email, name, source="cli")
    except DigestError as exc:
        fail(str(exc))
    out.print(f"{'added' if created else 'already subscribed'}: {sub.email} ({sub.status})",
              highlight=False)


@subscribers_app.command("import")
def subscribers_import(
    csv_path: Annotated[Path, typer.Argument(help="CSV with a header row: email[,name].")],
) -> None:
    """Import subscribers from CSV; any invalid row → nothing is written.

    Example: digest subscribers import readers.csv
    """
    from subscribers.service import import_csv

    engine = _engine(settings())
    try:
        with progress_bar("importing") as bar:
            report = import_csv(engine, csv_path, progress=bar.advance)
    except DigestError as exc:
        fail(f"import failed, nothing was written:\n{exc}")
    out.print(
        f"imported {report.added} new subscribers; {report.existing} already known; "
        f"{len(report.suppressed)} suppressed left as they are",
        highlight=False,
    )


@subscribers_app.command("list")
def subscribers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON objects.")] = False,
) -> None:
    """List subscribers with their state.

    Example: digest subscribers list --json | jq '.[] | select(.status=="active")'
    """
    from subscribers.service import list_subscribers, subscriber_to_dict

    engine = _engine(settings())
    with Session(engine) as session:
        if as_json:
            rows = [subscriber_to_dict(s) for s in list_subscribers(session)]
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        n = 0
        for sub in list_subscribers(session):
            n += 1
            out.print(f"{sub.status:<13} {sub.email}  {sub.name}", highlight=False)
        out.print(f"{n} subscribers", highlight=False)


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
    engine = _engine(s)
    try:
        paths = write_preview(engine, s, _week(week), out_dir)
    except DigestError as exc:
        fail(str(exc))
    if paths is None:
        out.print("no new comparisons for that week: nothing to preview", highlight=False)
        return
    for p in paths:
        out.print(f"wrote {p}", highlight=False)


@app.command()
def send(
    week: WeekOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and count; send and record nothing.")
    ] = False,
    to: Annotated[
        str | None, typer.Option("--to", help="Send one [TEST] copy to ADDR; record nothing.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm a real send.")] = False,
) -> None:
    """Send the week's issue to every active subscriber (safe to run again).

    Example: digest send --week 2026-W47 --yes
    """
    from digest.jobs import weekly_job

    if not (dry_run or to or yes):
        fail("a real send needs --yes (or try --dry-run, or --to ADDR for a test copy)", 2)
    s = settings()
    try:
        if to:
            from subscribers.service import normalize_email

            to = normalize_email(to)
        with progress_bar("sending") as bar:
            result = weekly_job(s, week=_week(week), dry_run=dry_run, test_to=to, progress=bar)
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)
    if result.report is not None and result.report.stopped and "retries pending" not in result.report.stopped:
        raise typer.Exit(3)


@app.command()
def status(
    week: WeekOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an issue's state and its deliveries by state (default: the newest issue).

    Example: digest status --week 2026-W47 --json
    """
    from digest.status import issue_status

    s = settings()
    engine = _engine(s)
    info = issue_status(engine, _week(week))
    if info is None:
        if as_json:
            sys.stdout.write(json.dumps({"week": week, "state": None, "counts": {}}) + "\n")
        else:
            out.print("no issue yet" + (f" for {week}" if week else ""), highlight=False)
        return
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items() if v)
    out.print(f"issue {info['week']}: {info['state']} — {counts or 'no deliveries'}",
              highlight=False)
    if info.get("state_reason"):
        out.print(f"reason: {info['state_reason']}", highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the web app (subscribe, confirm, unsubscribe, archive) with uvicorn.

    Example: digest serve --host 0.0.0.0 --port 8000
    """
    import uvicorn

    from digest.web.app import create_app

    s = settings()
    try:
        application = create_app(s)
    except DigestError as exc:
        fail(str(exc))
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
def demo() -> None:
    """Run the weekly job end to end on bundled sample data (SQLite + Maildir).

    Example: DIGEST_OUTBOX=/tmp/outbox digest demo
    """
    from digest.demo import run_demo

    try:
        summary = run_demo(settings())
    except DigestError as exc:
        fail(str(exc))
    out.print(summary, highlight=False)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()
