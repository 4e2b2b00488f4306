"""``/console/api/status``: an issue's live counts as JSON, for scripts and monitors.

A script presents ``Authorization: Bearer DIGEST_ADMIN_TOKEN`` (only when that setting
is set); a logged-in browser uses its session.
"""

from __future__ import annotations

import logging
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from digest.console.auth import editor
from digest.console.pages import ConsoleProblem
from digest.console.runner import send_runner
from digest.core.settings import Settings
from digest.jobs.status import issue_status

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/api", include_in_schema=False)


def _bearer_ok(request: Request, settings: Settings) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or settings.admin_token is None:
        return False
    expected = settings.admin_token.get_secret_value().strip()
    # Never an empty token on either side (settings make a blank one unset too).
    given = value.strip()
    return bool(expected and given) and secrets.compare_digest(given.encode(), expected.encode())


@router.get("/status")
def status(request: Request, number: int | None = None) -> JSONResponse:
    settings: Settings = request.app.state.settings
    if not _bearer_ok(request, settings):
        try:
            editor(request)
        except ConsoleProblem:
            return JSONResponse(
                {"detail": "log in, or send Authorization: Bearer DIGEST_ADMIN_TOKEN"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="digest console"'},
            )
    info = issue_status(request.app.state.engine, number=number, settings=settings)
    runner = send_runner(request)
    return JSONResponse(
        {"issue": info, "sender_running": runner.running, "last_summary": runner.last_summary},
        headers={"Cache-Control": "no-store"},
    )
