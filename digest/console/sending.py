"""Operators' side of an issue: the send confirmation, the send itself (in the
background, watched live on the issue page), pause, resume and cancel."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from digest.console.auth import Operator, OperatorPost
from digest.console.issues import back
from digest.console.pages import ConsoleProblem, render
from digest.console.runner import send_runner
from digest.console.views import get_issue
from digest.core.clock import utcnow, week_of
from digest.core.settings import Settings
from digest.delivery.controls import cancel_issue, pause_issue, resume_issue
from digest.editorial.preflight import EXEMPT_TRANSPORTS, consequence, fetch_health, preflight
from digest.editorial.review import blocked_reason
from digest.exceptions import DigestError
from digest.issue.freeze import issue_message, started_in_week
from digest.jobs.weekly import active_count, weekly_job
from digest.store.models import IssueState

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


def transport_name(request: Request) -> str:
    settings: Settings = request.app.state.settings
    factory = request.app.state.transport_factory
    return factory(settings).name if factory else settings.transport


def transport_description(settings: Settings, name: str) -> str:
    if name == "smtp":
        login = f" as {settings.smtp_username}" if settings.smtp_username else ""
        return (
            f"SMTP to {settings.smtp_host}:{settings.smtp_port} ({settings.smtp_security}{login}, "
            f"{settings.smtp_connections} connection{'s' if settings.smtp_connections > 1 else ''})"
        )
    if name == "maildir":
        return f"the Maildir folder {settings.outbox} (the demo: nobody real gets mail)"
    if name == "memory":
        return "memory (tests: nobody real gets mail)"
    return f"the {name} API"


@router.get("/issues/{number}/send", response_class=HTMLResponse)
def send_confirmation(request: Request, number: int, viewer: Operator) -> Response:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
        subscribers = active_count(session)
        already = started_in_week(session, settings, utcnow())
    if issue.state != IssueState.DRAFT:
        raise ConsoleProblem(409, f"issue {issue.label} is {issue.state}; only a draft is sent")
    name = transport_name(request)
    real = name not in EXEMPT_TRANSPORTS
    # The probe runs for the demo's Maildir too: its copies carry the same unsubscribe
    # links, and the issue page promises the check here.
    report = preflight(
        issue_message(issue, settings),
        settings,
        preheader=issue.preheader,
        real=real,
        health=fetch_health,
    )
    return render(
        request,
        "send.html",
        viewer,
        issue=issue,
        subscribers=subscribers,
        transport=transport_description(settings, name),
        sender=settings.from_address,
        report=report,
        checks=[(c, consequence(c, real=real)) for c in report.checks],
        real=real,
        probe_timeout=settings.preflight_health_timeout,
        base_url=settings.base_url,
        blocked=(real and not report.passed) or None,
        review_blocked=blocked_reason(issue, settings),
        other_this_week=already if already is not None and already.id != issue.id else None,
        this_week=week_of(utcnow(), settings.tz),
    )


@router.post("/issues/{number}/send")
def send(
    request: Request,
    number: int,
    viewer: OperatorPost,
    again: Annotated[str, Form()] = "",
) -> Response:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
        already = started_in_week(session, settings, utcnow())
    if issue.state != IssueState.DRAFT:
        raise ConsoleProblem(409, f"issue {issue.label} is {issue.state}; only a draft is sent")
    blocked = blocked_reason(issue, settings)
    if blocked is not None:
        raise ConsoleProblem(409, f"issue {issue.label} may not go out: {blocked}")
    second = already is not None and already.id != issue.id
    if second and again != "yes":
        raise ConsoleProblem(
            409,
            f"issue #{already.number if already else '?'} already went out this week; confirm "
            "that a second issue should go out on the send page",
        )
    runner = send_runner(request)
    if runner.running:
        raise ConsoleProblem(409, "a send is already running in this web process")
    # Checked, marked sending and queued here, before the answer: the page it leads to
    # shows every delivery queued from the first second. The sending runs behind it.
    factory = request.app.state.transport_factory
    try:
        started = weekly_job(
            settings,
            engine=request.app.state.engine,
            transport=factory(settings) if factory else None,
            issue=number,
            again=second,
            actor=viewer.email,
            start_only=True,
        )
    except DigestError as exc:
        raise ConsoleProblem(409, f"issue {issue.label} did not start: {exc}") from exc
    if started.outcome != "queued":
        raise ConsoleProblem(409, started.summary())
    runner.start(number, actor=viewer.email)
    return back(number, "sending", "#progress")


@router.post("/issues/{number}/pause")
def pause(request: Request, number: int, viewer: OperatorPost) -> Response:
    try:
        pause_issue(
            request.app.state.engine,
            number=number,
            reason=f"paused by {viewer.email}",
            actor=viewer.email,
        )
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    return back(number, "paused", "#progress")


@router.post("/issues/{number}/resume")
def resume(request: Request, number: int, viewer: OperatorPost) -> Response:
    try:
        resume_issue(request.app.state.engine, number=number, actor=viewer.email)
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    send_runner(request).start(number, actor=viewer.email)
    return back(number, "resumed", "#progress")


@router.post("/issues/{number}/cancel")
def cancel(
    request: Request,
    number: int,
    viewer: OperatorPost,
    sure: Annotated[str, Form()] = "",
) -> Response:
    if sure != "yes":
        raise ConsoleProblem(422, "tick “yes, cancel it” to cancel the issue; nothing changed")
    try:
        cancel_issue(request.app.state.engine, number=number, actor=viewer.email)
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    return back(number, "cancelled")
