"""Commands that send and steer a send: send, status, pause, resume, cancel."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from digest.core.wording import plural
from digest.exceptions import DatabaseUnavailable, DigestError, TransportConfigError

if TYPE_CHECKING:
    from digest.jobs.weekly import JobResult

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
    say,
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
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Send with N local worker processes (each with DIGEST_SMTP_CONNECTIONS).",
        ),
    ] = 1,
) -> None:
    """Send the open issue (or freeze one from what is new) to every active subscriber.

    Safe to run again: nobody gets an issue twice. Runs the preflight report first and
    refuses a real send (SMTP or an API) that fails it.

    Example: digest send --yes
    """
    if not (dry_run or to or yes):
        fail("a real send needs --yes (or try --dry-run, or --to ADDR for a test copy)", 2)
    if workers > 1 and not (dry_run or to):
        # imported on use, not at start-up: keeps the CLI fast to start
        from digest.delivery.launch import start_worker_server

        start_worker_server()  # its imports overlap this process's
    s = settings()
    target = checked_week(week)
    if to:
        # imported on use, not at start-up: keeps the CLI fast to start
        from subscribers.service import normalize_email

        try:
            to = normalize_email(to)
        except DigestError as exc:
            fail(str(exc))
    engine = store_engine(s)
    common = {"settings": s, "engine": engine, "again": again, "workers": workers}
    result = _run_job(issue=issue, week=target, dry_run=dry_run, test_to=to, **common)
    if result.outcome == "needs-confirmation":
        if not (sys.stdin.isatty() and typer.confirm(f"{result.reason}. Send it now?")):
            fail(f"{result.label}: not sent: {result.reason}", 2)
        result = _run_job(issue=result.number, **{**common, "again": True})
    finish_send(result)


#: Exit status of a send that stopped short or could not go out: paused (by the
#: operator, by itself after failures or an outage, or a refused login/sender),
#: cancelled, held, waiting for approval. README "Exit status".
EXIT_STOPPED = 3


def finish_send(result: JobResult) -> None:
    """Warnings, then the summary line always; exit 3 when the issue could not go out
    (paused, cancelled, held, waiting for approval) or the send stopped short."""
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.delivery.send_loop import PENDING
    from digest.jobs.weekly import STOPPED_SHORT

    for line in result.warnings:
        err.print(f"[yellow]warning:[/] {line}", highlight=False, markup=True, soft_wrap=True)
    say(result.summary())
    stopped = result.report.stopped if result.report is not None else None
    if result.outcome in STOPPED_SHORT or (stopped and PENDING not in stopped):
        raise typer.Exit(EXIT_STOPPED)


def _run_job(**kwargs: object) -> JobResult:
    """weekly_job with the CLI's error handling: a refused login or sender pauses the
    issue and exits 3 (stopped), like every other stop; other errors exit 1."""
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.jobs.weekly import weekly_job

    try:
        with progress_bar("sending") as bar:
            return weekly_job(progress=bar, actor=actor(), **kwargs)  # type: ignore[arg-type]
    except TransportConfigError as exc:
        if kwargs.get("test_to"):  # a test copy records nothing and pauses nothing
            fail(str(exc))
        fail(f"{exc} (the issue is paused; `digest resume` after fixing it)", EXIT_STOPPED)
    except DatabaseUnavailable as exc:  # past DIGEST_DB_OUTAGE_GRACE_SECONDS: stopped short
        fail(str(exc), EXIT_STOPPED)
    except DigestError as exc:
        fail(str(exc))


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
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.jobs.status import issue_status

    s = settings()
    engine = store_engine(s)
    info = issue_status(engine, checked_week(week), number=issue, settings=s)
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
    say(
        f"issue #{info['number']} ({info['week']}): {info['state']} — {counts or 'no deliveries'}",
    )
    say(f"review: {info['review']}; {info['schedule']['text']}")
    if info["state"] == "draft":
        for copy in info["variants"]:
            if not copy["skipped"]:
                readers = plural(copy["recipients"], "reader")
                say(f"copy {copy['label']} ({readers}): {copy['subject']}")
    if info.get("state_reason") and info["state_reason"] not in info["schedule"]["text"]:
        say(f"reason: {info['state_reason']}")
    if info.get("rate") is not None:
        eta = info.get("eta_seconds")
        out.print(
            f"sending at {info['rate']:.1f}/s; {info['remaining']} to go"
            + (f", about {eta:.0f}s left" if eta is not None else ""),
            highlight=False,
        )


@app.command()
def pause(week: WeekOpt = None, issue: IssueOpt = None) -> None:
    """Pause a send: every sender stops within a second (default: the open issue).

    Example: digest pause --issue 12
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.delivery.controls import pause_issue

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
    say(result.summary())


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
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.delivery.controls import resume_issue

    s = settings()
    try:
        engine = store_engine(s)
        result = resume_issue(engine, checked_week(week), number=issue, actor=actor())
    except DigestError as exc:
        fail(str(exc))
    say(result.summary())
    if send_now:
        finish_send(_run_job(settings=s, engine=engine, issue=result.number))


@app.command("retry-failed")
def retry_failed(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm: these people get mail.")
    ] = False,
    send_now: Annotated[
        bool,
        typer.Option("--send/--no-send", help="Send them here (default), or leave it to `send`."),
    ] = True,
) -> None:
    """Re-queue the failed deliveries of a finished issue and send them (never to anyone
    suppressed since); use after an outage or a fixed content refusal.

    Example: digest retry-failed --issue 12 --yes
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.delivery.controls import retry_failed as requeue

    if not yes:
        fail("this mails everyone whose delivery failed; add --yes", 2)
    s = settings()
    try:
        engine = store_engine(s)
        result = requeue(engine, checked_week(week), number=issue, actor=actor())
    except DigestError as exc:
        fail(str(exc))
    say(result.summary())
    if send_now and result.state == "sending":
        finish_send(_run_job(settings=s, engine=engine, issue=result.number))


@app.command()
def cancel(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm: cannot be undone.")] = False,
) -> None:
    """Cancel an issue for good: every delivery not yet sent is skipped.

    Example: digest cancel --issue 12 --yes
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.delivery.controls import cancel_issue

    if not yes:
        fail("cancelling cannot be undone; add --yes (or use `digest pause`)", 2)
    try:
        result = cancel_issue(
            store_engine(settings()), checked_week(week), number=issue, actor=actor()
        )
    except DigestError as exc:
        fail(str(exc))
    say(result.summary())


@app.command()
def worker(
    issue: IssueOpt = None,
    until_done: Annotated[
        bool,
        typer.Option("--until-done", help="Exit when the issue is sent (or paused, cancelled)."),
    ] = False,
    poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks for an issue to send.")
    ] = 2.0,
) -> None:
    """Run a sender that claims batches of whichever issue is sending, until stopped.

    Start any number, on any machines sharing one PostgreSQL (or on one machine with
    SQLite): they share the queue through leases. SIGTERM finishes the batch in hand.

    Example: DIGEST_WORKER_NAME=mail-2 digest worker
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    import signal
    import threading

    from digest.delivery.worker import Worker

    s = settings()
    engine = store_engine(s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    err.print(
        f"worker {s.worker_name or 'on this host'}: waiting for an issue to send "
        "(Ctrl-C or SIGTERM stops after the batch in hand)",
        highlight=False,
        markup=False,
    )
    try:
        report = Worker(s, engine, number=issue, poll_seconds=poll, stop=stop).run(
            until_done=until_done
        )
    except DatabaseUnavailable as exc:
        fail(str(exc), EXIT_STOPPED)
    except DigestError as exc:
        fail(str(exc))
    say(report.summary())
