"""The ``digest`` command line (Typer). Every command's help ends with an example."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

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
from sqlmodel import Session

from digest.config import Settings, get_settings
from digest.exceptions import DigestError
from digest.timeutil import parse_week

if TYPE_CHECKING:
    from digest.jobs import JobResult

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
    typer.Option("--week", "-w", help="ISO week like 2026-W47 (default: the current week)."),
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
    consent_source: Annotated[
        str | None,
        typer.Option(
            "--consent-source",
            help="Where and how these people agreed (logged per row in the consent log), "
            "e.g. 'signup sheet, PyCon 2026'. Default: 'CSV import of FILE'.",
        ),
    ] = None,
) -> None:
    """Import active subscribers from CSV; any invalid row → nothing is written.

    Suppressed addresses (unsubscribed, bounced, complained, forgotten) are skipped:
    only a new double opt-in brings them back.

    Example: digest subscribers import readers.csv --consent-source "signup sheet, PyCon 2026"
    """
    from subscribers.service import import_csv

    source = consent_source.strip() if consent_source else f"CSV import of {csv_path.name}"
    if not source:
        fail("--consent-source must not be empty", 2)
    engine = _engine(settings())
    try:
        with progress_bar("importing") as bar:
            report = import_csv(engine, csv_path, source=source, progress=bar.advance)
    except DigestError as exc:
        fail(f"import failed, nothing was written:\n{exc}")
    out.print(
        f"imported {report.added} new subscribers; {report.existing} already known; "
        f"{len(report.suppressed)} suppressed left as they are",
        highlight=False,
    )


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The address.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one subscriber with the consent log: who consented, when, how, from where.

    Example: digest subscribers show ada@example.com --json
    """
    from subscribers.privacy import show

    engine = _engine(settings())
    try:
        info = show(engine, email)
    except DigestError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        return
    if not info["known"]:
        out.print(f"{info['email']}: forgotten; on the suppression list ({info['suppressed']})",
                  highlight=False, markup=False)
        return
    out.print(f"{info['email']}  {info['status']}  {info['name']}", highlight=False,
              markup=False)
    out.print(f"consent: {info['confirmed_at'] or 'none yet'}  source: {info['source']}",
              highlight=False, markup=False)
    for ev in info["events"]:
        out.print(
            f"  {ev['at']}  {ev['action']:<11} {ev['source']}  ip={ev['ip'] or '-'}  "
            f"{ev['detail']}  ua={ev['user_agent'] or '-'}",
            highlight=False, markup=False,
        )


@subscribers_app.command("export")
def subscribers_export(
    csv_path: Annotated[Path, typer.Argument(help="File to write (replaced atomically).")],
) -> None:
    """Write every subscriber with state and consent time (and its source) to CSV.

    Example: digest subscribers export subscribers-2026-11.csv
    """
    from subscribers.privacy import export_csv

    engine = _engine(settings())
    try:
        count = export_csv(engine, csv_path)
    except OSError as exc:
        fail(f"cannot write {csv_path}: {exc.strerror}")
    out.print(f"wrote {count} subscribers to {csv_path}", highlight=False, markup=False)


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(
    email: Annotated[str, typer.Argument(help="The address.")],
    source: Annotated[
        str, typer.Option(help="How the request reached you (logged in the consent log).")
    ] = "mailto request",
) -> None:
    """Unsubscribe an address at once, e.g. after a request to the List-Unsubscribe mailto.

    Example: digest subscribers unsubscribe ada@example.com --source "mail to unsubscribe@"
    """
    from subscribers.privacy import unsubscribe_address

    engine = _engine(settings())
    try:
        changed = unsubscribe_address(engine, email, source=source)
    except DigestError as exc:
        fail(str(exc))
    out.print(("unsubscribed " if changed else "already not subscribed: ") + email.strip(),
              highlight=False, markup=False)


@subscribers_app.command("forget")
def subscribers_forget(
    email: Annotated[str, typer.Argument(help="The address to erase.")],
) -> None:
    """Erase a person (right to erasure): their record, consent log and deliveries.

    Only a hash of the address stays, on the suppression list, so no import or CLI add
    can bring them back; a new double opt-in still can.

    Example: digest subscribers forget ada@example.com
    """
    from subscribers.privacy import forget

    engine = _engine(settings())
    try:
        result = forget(engine, email)
    except DigestError as exc:
        fail(str(exc))
    if result.erased:
        out.print(f"forgot {result.email}; its hash stays on the suppression list "
                  f"({result.suppressed_as})", highlight=False, markup=False)
    elif result.suppressed_as:
        out.print(f"nothing stored for {result.email} beyond its hash on the suppression list",
                  highlight=False, markup=False)
    else:
        out.print(f"nothing stored for {result.email}", highlight=False, markup=False)


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
    _finish_send(result)


def _finish_send(result: JobResult) -> None:
    """The summary line always; exit 3 when the send stopped short (paused, cancelled)."""
    out.print(result.summary(), highlight=False)
    stopped = result.report.stopped if result.report is not None else None
    if stopped and "retries pending" not in stopped:
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
    if info.get("rate") is not None:
        eta = info.get("eta_seconds")
        out.print(
            f"sending at {info['rate']:.1f}/s; {info['remaining']} to go"
            + (f", about {eta:.0f}s left" if eta is not None else ""),
            highlight=False,
        )


@app.command()
def pause(week: WeekOpt = None) -> None:
    """Pause a send: the sender stops after its current batch (default: the newest issue).

    Example: digest pause --week 2026-W47
    """
    from digest.control import pause_issue

    try:
        result = pause_issue(_engine(settings()), _week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)


@app.command()
def resume(
    week: WeekOpt = None,
    send_now: Annotated[
        bool,
        typer.Option("--send/--no-send", help="Continue sending here (default), or leave it "
                     "to `digest send --yes` / the scheduler."),
    ] = True,
) -> None:
    """Resume a paused send where it stopped; nobody is sent the issue twice.

    Example: digest resume --week 2026-W47
    """
    from digest.control import resume_issue
    from digest.jobs import weekly_job

    s = settings()
    try:
        result = resume_issue(_engine(s), _week(week))
        out.print(result.summary(), highlight=False)
        if not send_now:
            return
        with progress_bar("sending") as bar:
            job = weekly_job(s, week=result.week, progress=bar)
    except DigestError as exc:
        fail(str(exc))
    _finish_send(job)


@app.command()
def cancel(
    week: WeekOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm: cannot be undone.")] = False,
) -> None:
    """Cancel a send for good: every delivery not yet sent is skipped.

    Example: digest cancel --week 2026-W47 --yes
    """
    from digest.control import cancel_issue

    if not yes:
        fail("cancelling cannot be undone; add --yes (or use `digest pause`)", 2)
    try:
        result = cancel_issue(_engine(settings()), _week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)


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
    # X-Forwarded-For is trusted only from DIGEST_FORWARDED_ALLOW_IPS (the rate limit
    # and the consent log use the client address).
    uvicorn.run(
        application, host=host, port=port, log_level="info",
        proxy_headers=True, forwarded_allow_ips=s.forwarded_allow_ips,
    )


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
    engine = _engine(s)
    target = _week(week) or current_week(s)
    try:
        with session_scope(engine) as session:
            issue = freeze_issue(session, target, s)
            if issue is None:
                fail(f"no new comparisons for {target}: there is no issue to edit")
            edit_issue(session, issue, s, subject=subject, preheader=preheader, intro=intro)
    except DigestError as exc:
        fail(str(exc))
    out.print(f"issue {target} updated: {issue.subject}", highlight=False)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()
