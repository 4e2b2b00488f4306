"""Commands that send and steer a send: send, status, pause, resume, cancel."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from digest.exceptions import DigestError, TransportConfigError

if TYPE_CHECKING:
    from digest.jobs import JobResult

from digest.cli.common import (
    WeekOpt,
    app,
    checked_week,
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
    if not (dry_run or to or yes):
        fail("a real send needs --yes (or try --dry-run, or --to ADDR for a test copy)", 2)
    s = settings()
    if to:
        from subscribers.service import normalize_email

        try:
            to = normalize_email(to)
        except DigestError as exc:
            fail(str(exc))
    result = _run_job(settings=s, week=checked_week(week), dry_run=dry_run, test_to=to)
    _finish_send(result)


#: Exit status of a send that stopped short: paused (by the operator, by itself after
#: failures or an outage, or a refused login/sender), cancelled. README "Exit status".
EXIT_STOPPED = 3


def _finish_send(result: JobResult) -> None:
    """The summary line always; exit 3 when the send stopped short (paused, cancelled)."""
    out.print(result.summary(), highlight=False)
    stopped = result.report.stopped if result.report is not None else None
    if stopped and "retries pending" not in stopped:
        raise typer.Exit(EXIT_STOPPED)
    if result.outcome in ("paused", "cancelled"):
        raise typer.Exit(EXIT_STOPPED)


def _run_job(**kwargs: object) -> JobResult:
    """weekly_job with the CLI's error handling: a refused login or sender pauses the
    issue and exits 3 (stopped), like every other stop; other errors exit 1."""
    from digest.jobs import weekly_job

    try:
        with progress_bar("sending") as bar:
            return weekly_job(progress=bar, **kwargs)  # type: ignore[arg-type]
    except TransportConfigError as exc:
        if kwargs.get("test_to"):  # a test copy records nothing and pauses nothing
            fail(str(exc))
        fail(f"{exc} (the issue is paused; `digest resume` after fixing it)", EXIT_STOPPED)
    except DigestError as exc:
        fail(str(exc))


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
    engine = store_engine(s)
    info = issue_status(engine, checked_week(week))
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
    out.print(
        f"issue {info['week']}: {info['state']} — {counts or 'no deliveries'}", highlight=False
    )
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
        result = pause_issue(store_engine(settings()), checked_week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)


@app.command()
def resume(
    week: WeekOpt = None,
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

    Example: digest resume --week 2026-W47
    """
    from digest.control import resume_issue

    s = settings()
    try:
        result = resume_issue(store_engine(s), checked_week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)
    if send_now:
        _finish_send(_run_job(settings=s, week=result.week))


@app.command("retry-failed")
def retry_failed(
    week: WeekOpt = None,
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

    Example: digest retry-failed --week 2026-W47 --yes
    """
    from digest.control import retry_failed as requeue

    if not yes:
        fail("this mails everyone whose delivery failed; add --yes", 2)
    s = settings()
    try:
        result = requeue(store_engine(s), checked_week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)
    if send_now and result.state == "sending":
        _finish_send(_run_job(settings=s, week=result.week))


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
        result = cancel_issue(store_engine(settings()), checked_week(week))
    except DigestError as exc:
        fail(str(exc))
    out.print(result.summary(), highlight=False)
