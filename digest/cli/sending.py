"""Commands that send and steer a send: send, status, pause, resume, cancel."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from digest.exceptions import DigestError

if TYPE_CHECKING:
    from digest.jobs import JobResult

from digest.cli.common import (
    IssueOpt,
    WeekOpt,
    actor,
    app,
    checked_week,
    err,
    fail,
    out,
    progress_bar,
    settings,
    store_engine,
)

logger = logging.getLogger(__name__)


@app.command()
def send(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Render and count; send and record nothing.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Send one [TEST] copy to ADDR (recorded as a test only)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm a real send.")] = False,
    again: Annotated[
        bool,
        typer.Option("--again", help="Confirm sending a second issue in one ISO week."),
    ] = False,
) -> None:
    """Send the open issue (or freeze one from what is new) to every active subscriber.

    Safe to run again: nobody gets an issue twice. Runs the preflight report first and
    refuses a real send (SMTP or an API) that fails it.

    Example: digest send --yes
    """
    from digest.jobs import weekly_job

    if not (dry_run or to or yes):
        fail("a real send needs --yes (or try --dry-run, or --to ADDR for a test copy)", 2)
    s = settings()
    target = checked_week(week)
    try:
        if to:
            from subscribers.service import normalize_email

            to = normalize_email(to)
        engine = store_engine(s)
        with progress_bar("sending") as bar:
            result = weekly_job(
                s,
                engine=engine,
                issue=issue,
                week=target,
                dry_run=dry_run,
                test_to=to,
                progress=bar,
                again=again,
                actor=actor(),
            )
        if result.outcome == "needs-confirmation":
            if not (sys.stdin.isatty() and typer.confirm(f"{result.reason}. Send it now?")):
                fail(f"{result.label}: not sent: {result.reason}", 2)
            with progress_bar("sending") as bar:
                result = weekly_job(
                    s,
                    engine=engine,
                    issue=result.number,
                    progress=bar,
                    again=True,
                    actor=actor(),
                )
    except DigestError as exc:
        fail(str(exc))
    finish_send(result)


def finish_send(result: JobResult) -> None:
    """Warnings, then the summary line always; exit 3 when the issue could not go out
    (paused, held, waiting for approval) or the send stopped short."""
    from digest.jobs import STOPPED_SHORT

    for line in result.warnings:
        err.print(f"[yellow]warning:[/] {line}", highlight=False, markup=True, soft_wrap=True)
    out.print(result.summary(), highlight=False, markup=False)
    stopped = result.report.stopped if result.report is not None else None
    if result.outcome in STOPPED_SHORT or (stopped and "retries pending" not in stopped):
        raise typer.Exit(3)


@app.command()
def status(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an issue's state and its deliveries by state (default: the open issue, else
    the newest).

    Example: digest status --issue 12 --json
    """
    from digest.status import issue_status

    s = settings()
    engine = store_engine(s)
    info = issue_status(engine, checked_week(week), number=issue)
    if info is None:
        if as_json:
            empty: dict[str, object] = {"number": issue, "week": week, "state": None, "counts": {}}
            sys.stdout.write(json.dumps(empty) + "\n")
        else:
            which = f" #{issue}" if issue else (f" for {week}" if week else "")
            out.print(f"no issue{which} yet", highlight=False)
        return
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items() if v)
    out.print(
        f"issue #{info['number']} ({info['week']}): {info['state']} — {counts or 'no deliveries'}",
        highlight=False,
        markup=False,
    )
    if info["state"] == "draft":
        out.print(f"review: {info['review']}", highlight=False, markup=False)
    if info.get("state_reason"):
        out.print(f"reason: {info['state_reason']}", highlight=False, markup=False)
    if info.get("rate") is not None:
        eta = info.get("eta_seconds")
        out.print(
            f"sending at {info['rate']:.1f}/s; {info['remaining']} to go"
            + (f", about {eta:.0f}s left" if eta is not None else ""),
            highlight=False,
        )


@app.command()
def pause(week: WeekOpt = None, issue: IssueOpt = None) -> None:
    """Pause a send: the sender stops after its current batch (default: the open issue).

    Example: digest pause --issue 12
    """
    from digest.control import pause_issue

    try:
        result = pause_issue(
            store_engine(settings()),
            checked_week(week),
            f"paused by {actor()}",
            number=issue,
            actor=actor(),
        )
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False, markup=False)


@app.command()
def resume(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    send_now: Annotated[
        bool,
        typer.Option(
            "--send/--no-send",
            help="Continue sending here (default), or leave it "
            "to `digest send --yes` / the scheduler.",
        ),
    ] = True,
) -> None:
    """Resume a paused send where it stopped; nobody is sent the issue twice.

    Example: digest resume --issue 12
    """
    from digest.control import resume_issue
    from digest.jobs import weekly_job

    s = settings()
    try:
        engine = store_engine(s)
        result = resume_issue(engine, checked_week(week), number=issue, actor=actor())
        out.print(result.summary(), highlight=False, markup=False)
        if not send_now:
            return
        with progress_bar("sending") as bar:
            job = weekly_job(s, engine=engine, issue=result.number, progress=bar, actor=actor())
    except DigestError as exc:
        fail(str(exc))
    finish_send(job)


@app.command()
def cancel(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm: cannot be undone.")] = False,
) -> None:
    """Cancel an issue for good: every delivery not yet sent is skipped.

    Example: digest cancel --issue 12 --yes
    """
    from digest.control import cancel_issue

    if not yes:
        fail("cancelling cannot be undone; add --yes (or use `digest pause`)", 2)
    try:
        result = cancel_issue(
            store_engine(settings()), checked_week(week), number=issue, actor=actor()
        )
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False, markup=False)
