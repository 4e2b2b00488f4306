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
    NewestWeekOpt,
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
    from digest.jobs import weekly_job

    if not (dry_run or to or yes):
        fail("a real send needs --yes (or try --dry-run, or --to ADDR for a test copy)", 2)
    s = settings()
    try:
        if to:
            from subscribers.service import normalize_email

            to = normalize_email(to)
        with progress_bar("sending") as bar:
            result = weekly_job(
                s, week=checked_week(week), dry_run=dry_run, test_to=to, progress=bar
            )
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
    week: NewestWeekOpt = None,
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
def pause(week: NewestWeekOpt = None) -> None:
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
    week: NewestWeekOpt = None,
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
    from digest.jobs import weekly_job

    s = settings()
    try:
        result = resume_issue(store_engine(s), checked_week(week))
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
    week: NewestWeekOpt = None,
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
