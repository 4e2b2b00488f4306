"""Commands for the review loop: draft, approve, hold, preflight, history."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from sqlmodel import Session

from digest.cli.common import (
    IssueOpt,
    WeekOpt,
    actor,
    app,
    checked_week,
    fail,
    say,
    settings,
    store_engine,
)
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)


@app.command()
def draft(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Freeze the next issue as a draft without sending it (or show the open one).

    It features every comparison that no issue featured and that was published within
    DIGEST_MAX_AGE_DAYS; it is scheduled for the next DIGEST_SEND_CRON slot.

    Example: digest draft
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.issue.freeze import issue_rows
    from digest.jobs.schedule import prepare_draft, send_plan
    from digest.notices.reviewers import console_url
    from digest.store.engine import session_scope

    s = settings()
    engine = store_engine(s)
    try:
        with session_scope(engine) as session:
            frozen = prepare_draft(session, s, actor=actor())
            issue = frozen.issue
            if issue is None:
                say(f"{frozen.nothing_new}; no draft")
                return
            rows = [(c.slug, c.title, full) for c, full in issue_rows(session, issue)]
            plan = send_plan(session, s, issue)
    except DigestError as exc:
        fail(str(exc))
    if as_json:
        info = {
            "number": issue.number,
            "week": issue.week,
            "state": issue.state,
            "review": issue.review,
            "created": frozen.created,
            "subject": issue.subject,
            "scheduled_for": issue.scheduled_for.isoformat() if issue.scheduled_for else None,
            "schedule": {k: v for k, v in plan.as_dict().items() if k not in ("state", "review")},
            "comparisons": [{"slug": slug, "full": full} for slug, _t, full in rows],
            "console": console_url(s, issue),
        }
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    verb = "froze" if frozen.created else "open:"
    say(f"{verb} issue {issue.label} ({issue.state}, review {plan.review}); {plan.text}")
    say(f"subject: {issue.subject}")
    for slug, title, full in rows:
        say(f"  {'card' if full else 'link'}  {slug}  {title}")
    say(f"review it: {console_url(s, issue)}")


def _review(
    verb: str, week: str | None, issue: int | None, note: str, release: bool = False
) -> None:
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.editorial.review import approve, hold
    from digest.editorial.review import release as release_hold
    from digest.issue.freeze import target_issue
    from digest.store.engine import session_scope

    s = settings()
    engine = store_engine(s)
    try:
        with session_scope(engine) as session:
            target = target_issue(session, number=issue, week=checked_week(week))
            if target is None:
                fail("no issue to review; `digest draft` freezes the next one")
            who = actor()
            if release:
                release_hold(session, target, who)
            elif verb == "approve":
                approve(session, target, who, note)
            else:
                hold(session, target, who, note)
            label, review = target.label, target.review
    except DigestError as exc:
        fail(str(exc))
    say(f"issue {label}: review {review}")


@app.command("approve")
def approve_cmd(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    note: Annotated[str, typer.Option(help="A note for the history.")] = "",
) -> None:
    """Approve a draft: it may go out at its time (needed with DIGEST_REQUIRE_APPROVAL).

    An edit after approval withdraws it; approving also lifts a hold.

    Example: digest approve --issue 12 --note "checked the links"
    """
    _review("approve", week, issue, note)


@app.command("hold")
def hold_cmd(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    reason: Annotated[str, typer.Option(help="Why (shown in the console).")] = "",
    release: Annotated[
        bool, typer.Option("--release", help="Lift the hold instead (without approving).")
    ] = False,
) -> None:
    """Hold a draft: it does not go out until an editor approves or releases it.

    Example: digest hold --issue 12 --reason "waiting for a pricing correction"
    """
    _review("hold", week, issue, reason, release)


@app.command("preflight")
def preflight_cmd(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe", help="Ask DIGEST_BASE_URL/healthz whether the web app answers."
        ),
    ] = True,
) -> None:
    """Check an issue before a real send: size, links, fields, images, subject,
    sender, postal address, the unsubscribe host, and for a draft every readers' copy
    (words naming a comparison the copy lacks). Exit 1 on any error.

    Every real send (SMTP or an API) runs it and refuses on errors.

    Example: digest preflight --issue 12 --json
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.editorial.copies import check_copies
    from digest.editorial.preflight import EXEMPT_TRANSPORTS, fetch_health, preflight
    from digest.issue.freeze import issue_message, issue_rows, target_issue
    from digest.readers.previews import copies
    from digest.store.models import IssueState

    s = settings()
    engine = store_engine(s)
    with Session(engine) as session:
        target = target_issue(session, number=issue, week=checked_week(week))
        if target is None:
            fail("no issue to check; `digest draft` freezes the next one")
        real = s.transport not in EXEMPT_TRANSPORTS
        report = preflight(
            issue_message(target, s),
            s,
            preheader=target.preheader,
            real=real,
            health=fetch_health if probe else None,
        )
        if target.state == IssueState.DRAFT:  # every copy the send would produce now
            everything = [c for c, _f in issue_rows(session, target)]
            check_copies(report, copies(session, s, target), everything)
        label = target.label
    if as_json:
        info = {"number": target.number, "week": target.week, "transport": s.transport}
        sys.stdout.write(json.dumps({**info, **report.as_dict()}, indent=2) + "\n")
    else:
        say(f"issue {label}, transport {s.transport}")
        for check in report.checks:
            say(f"  {check.line()}")
        say(report.summary())
    if not report.passed:
        raise typer.Exit(1)


@app.command("history")
def history_cmd(
    week: WeekOpt = None,
    issue: IssueOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what happened to an issue: who froze, edited, tested, approved, sent it.

    Example: digest history --issue 12
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.issue.freeze import target_issue
    from digest.issue.history import history
    from digest.jobs.schedule import send_plan

    s = settings()
    engine = store_engine(s)
    with Session(engine) as session:
        target = target_issue(session, number=issue, week=checked_week(week))
        if target is None:
            fail("no issue yet")
        assert target.id is not None
        entries = history(session, target.id)
        label = target.label
        plan = send_plan(session, s, target)
    if as_json:
        sys.stdout.write(json.dumps(entries, indent=2, ensure_ascii=False) + "\n")
        return
    say(f"issue {label}: {plan.state}, review {plan.review}; {plan.text}")
    for entry in entries:
        rest = {k: v for k, v in entry.items() if k not in ("at", "actor", "action")}
        detail = json.dumps(rest, ensure_ascii=False) if rest else ""
        say(f"  {entry['at'][:19]}  {entry['action']:<13} {entry['actor']}  {detail}")
