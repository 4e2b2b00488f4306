"""The console's pages: one autoescaping Jinja environment over templates/web/console,
the console's own security headers, problem pages, and its static files.

The console's CSP is stricter than the public pages': styles and the one small script
come from ``/console/static`` (no inline style or script at all), frames only from
the console itself (the email previews). ``Referrer-Policy: same-origin`` rather than
the public ``no-referrer``: with ``no-referrer`` browsers send ``Origin: null`` on form
posts, and the console checks that a post comes from its own origin.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context

from digest.core.resources import TEMPLATES_DIR
from digest.core.settings import Settings
from digest.core.wording import plural

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "editor.js": "text/javascript",
}

CONSOLE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
#: The email preview inside the console's iframes: the email's own inline styles and
#: remote images, no script, framed only by the console.
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)

#: Messages a redirect may ask a page to show (``?done=KEY``): a fixed set, so nobody
#: can make the console display text of their choosing.
NOTICES = {
    "edited": "Saved. The issue was re-compiled; the preview below is what will be sent.",
    "unchanged": "Nothing changed.",
    "scheduled": "Scheduled: the scheduler sends it at that time (once it may go).",
    "unscheduled": "No time of its own now: it goes with the next regular send.",
    "tested": "A [TEST] copy was accepted by the mail server for the address you gave; "
    "the history records it.",
    "approved": "Approved. When it goes out is under the title.",
    "held": "Held. It does not go out until an editor approves or releases it.",
    "released": "Hold released. When it goes out is under the title.",
    "drafted": "The next issue was frozen as a draft.",
    "sending": "The send started. This page follows its progress.",
    "paused": "Paused: every sender stops within a second; what was not handed over waits.",
    "resumed": "Resumed.",
    "cancelled": "Cancelled: every delivery not yet sent was skipped.",
    "added": "Subscriber added as active.",
    "preferences": "Preferences saved; the next issue follows them.",
    "unsubscribed": "Unsubscribed; the address is on the suppression list.",
    "forgotten": "Erased. Only a hash of the address stays, on the suppression list.",
    "password": "Your password is set; you are logged in.",
    "imported": "Imported. The new comparisons wait for the next issue; drafts that feature "
    "an updated one were re-compiled.",
}

_ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR / "web" / "console")),
    autoescape=select_autoescape(enabled_extensions=("html", "svg"), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@pass_context
def _local(context: Context, moment: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An instant (or its ISO form) in DIGEST_TIMEZONE, as people there read it."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:  # the store keeps UTC; SQLite hands it back naive
        moment = moment.replace(tzinfo=UTC)
    tz: ZoneInfo = context["tz"]
    return moment.astimezone(tz).strftime(fmt)


def _number(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


_ENV.filters["local"] = _local
_ENV.filters["duration"] = _duration
_ENV.filters["number"] = _number
_ENV.filters["plural"] = plural


def render_template(name: str, context: dict[str, Any]) -> str:
    return _ENV.get_template(name).render(context)


def console_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONSOLE_CSP
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    request: Request,
    template: str,
    viewer: Any = None,
    *,
    status_code: int = 200,
    refresh: int | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``templates/web/console/{template}`` for ``viewer`` (None: logged out)."""
    settings: Settings = request.app.state.settings
    done = request.query_params.get("done")
    # A refresh names its URL: one with a #fragment would only scroll, never reload.
    # The one-off notice (?done=…) is left out of it.
    kept = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "done"])
    refresh_url = request.url.path + (f"?{kept}" if kept else "")
    body = render_template(
        template,
        {
            "list_name": settings.list_name,
            "tz": settings.tz,
            "tz_name": settings.timezone,
            "viewer": viewer,
            "csrf": viewer.csrf if viewer is not None else "",
            "notice": NOTICES.get(done or ""),
            "refresh": refresh,
            "refresh_url": refresh_url,
            "path": request.url.path,
            **context,
        },
    )
    response = HTMLResponse(body, status_code=status_code, headers=headers)
    return console_headers(response)  # type: ignore[return-value]


class ConsoleProblem(Exception):
    """A request the console refuses, shown as a page with the reason and ``status``."""

    def __init__(
        self, status: int, reason: str, *, title: str = "That did not work", login: bool = False
    ) -> None:
        #: not logged in (or the session ended): pages send the browser to the login form
        self.login = login
        self.status = status
        self.reason = reason
        self.title = title
        super().__init__(reason)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConsoleProblem)
    async def problem_page(request: Request, exc: ConsoleProblem) -> Response:
        if exc.login and not request.url.path.startswith("/console/api/"):
            target = request.url.path if request.method == "GET" else "/console"
            if request.method == "GET" and request.url.query:
                target += f"?{request.url.query}"
            return console_headers(
                RedirectResponse(f"/console/login?next={quote(target, safe='/')}", 303)
            )
        viewer = getattr(request.state, "viewer", None)
        return render(
            request,
            "problem.html",
            viewer,
            status_code=exc.status,
            title=exc.title,
            reason=exc.reason,
            status=exc.status,
        )


static_router = APIRouter(prefix="/console/static", include_in_schema=False)


@static_router.get("/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        STATIC_DIR / name,
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "public, max-age=300"},
    )
