"""Scheduling a draft from the console: pick the date and time it goes out (in the
list's zone, ``DIGEST_TIMEZONE``), move it, or clear it (then it goes with the next
regular send). The scheduler honours it (digest/jobs/schedule.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from digest.console.auth import EditorPost
from digest.console.pages import ConsoleProblem
from digest.console.views import get_issue
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import DigestError
from digest.jobs.schedule import local_moment, schedule_issue
from digest.store.engine import session_scope

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


def console_now(request: Request) -> datetime:
    """Now, from the clock the app was given (tests inject one), else the real one."""
    clock: Callable[[], datetime] = getattr(request.app.state, "clock", utcnow)
    return clock()


@router.post("/issues/{number}/schedule")
def issue_schedule(
    request: Request,
    number: int,
    viewer: EditorPost,
    when: Annotated[str, Form(max_length=40)] = "",
    action: Annotated[str, Form(max_length=10)] = "schedule",
) -> Response:
    settings: Settings = request.app.state.settings
    if action not in ("schedule", "clear"):
        raise ConsoleProblem(422, "schedule or clear")
    at = None
    if action == "schedule":
        try:
            at = local_moment(when, settings.tz)
        except ValueError as exc:
            raise ConsoleProblem(
                422, f"not a date and time (YYYY-MM-DD HH:MM in {settings.timezone}): {exc}"
            ) from exc
    try:
        with session_scope(request.app.state.engine) as session:
            issue = get_issue(session, number)
            changed = schedule_issue(
                session, settings, issue, at, now=console_now(request), actor=viewer.email
            )
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc), title="Not scheduled") from exc
    done = ("scheduled" if at else "unscheduled") if changed else "unchanged"
    return RedirectResponse(f"/console/issues/{number}?done={done}#schedule", status_code=303)
