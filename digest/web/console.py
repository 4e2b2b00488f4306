"""The operator console under ``/console``: trigger, watch, pause, resume and cancel sends.

Enabled only when ``DIGEST_ADMIN_TOKEN`` is set (404 otherwise). The browser asks for
it through HTTP Basic auth (any user name, the token as password); scripts may send
``Authorization: Bearer TOKEN``. Pages work without JavaScript: an issue that is sending
refreshes itself every few seconds, and ``/console/api/status`` gives the same live
counts as JSON. State-changing forms carry a CSRF token derived from the secret and
must come from the console's own origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.config import Settings
from digest.control import cancel_issue, pause_issue, resume_issue
from digest.db import session_scope
from digest.editorial.schedule import prepare_draft
from digest.exceptions import DigestError
from digest.issues import find_issue, issue_message
from digest.jobs import weekly_job
from digest.models import Issue, IssueState
from digest.preview import SAMPLE_RECIPIENT
from digest.status import issue_status
from digest.web.pages import page
from subscribers.mail import TransportFactory

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

REFRESH_SECONDS = 3
_REALM = 'Basic realm="digest console", charset="UTF-8"'


# ---------------------------------------------------------------- auth and CSRF


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def require_operator(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        raise HTTPException(404)
    given = _presented_token(request)
    expected = settings.admin_token.get_secret_value()
    if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "operator token required", headers={"WWW-Authenticate": _REALM})
    return settings


Operator = Annotated[Settings, Depends(require_operator)]


def csrf_token(settings: Settings) -> str:
    return hmac.new(settings.signing_key().encode(), b"console-csrf", hashlib.sha256).hexdigest()[
        :32
    ]


def _check_post(request: Request, settings: Settings, token: str) -> None:
    if not secrets.compare_digest(token.encode(), csrf_token(settings).encode()):
        raise HTTPException(403, "missing or wrong form token; reload the console")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin and origin not in (own, settings.base_url):
        raise HTTPException(403, "form posted from another site")


# ---------------------------------------------------------------- background sends


class SendRunner:
    """Runs ``weekly_job`` in one background thread per process.

    Several processes may still send the same issue: the delivery leases make that safe.
    """

    def __init__(
        self, settings: Settings, engine: Engine, transport_factory: TransportFactory | None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport_factory = transport_factory
        self.last_summary: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, number: int | None) -> bool:
        """Send issue ``number`` (None: the open issue, or a new one) in the background."""
        with self._lock:
            if self.running:
                return False
            self._thread = threading.Thread(
                target=self._run, args=(number,), name=f"send-{number}", daemon=True
            )
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, number: int | None) -> None:
        transport = self.transport_factory(self.settings) if self.transport_factory else None
        name = f"#{number}" if number else "the next issue"
        try:
            result = weekly_job(
                self.settings,
                engine=self.engine,
                transport=transport,
                issue=number,
                actor="console",
            )
            self.last_summary = result.summary()
        except DigestError as exc:
            self.last_summary = f"send of {name} stopped: {exc}"
            logger.error(self.last_summary)
        except Exception:  # a console send must never take the web process down
            logger.exception("send of %s crashed", name)
            self.last_summary = f"send of {name} crashed; see the server log"


def runner(request: Request) -> SendRunner:
    state = request.app.state
    if getattr(state, "send_runner", None) is None:
        state.send_runner = SendRunner(state.settings, state.engine, state.transport_factory)
    return state.send_runner


# ---------------------------------------------------------------- pages


def _issues(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        numbers = session.exec(
            select(Issue.number).order_by(col(Issue.number).desc()).limit(52)
        ).all()
    return [info for n in numbers if (info := issue_status(engine, number=n)) is not None]


@router.get("", response_class=HTMLResponse)
def console_home(request: Request, settings: Operator) -> Response:
    engine: Engine = request.app.state.engine
    send = runner(request)
    return page(
        request,
        "console.html",
        settings,
        issues=_issues(engine),
        csrf=csrf_token(settings),
        running=send.running,
        last_summary=send.last_summary,
        refresh=REFRESH_SECONDS if send.running else None,
    )


@router.get("/issues/{number}", response_class=HTMLResponse)
def console_issue(request: Request, number: int, settings: Operator) -> Response:
    info = issue_status(request.app.state.engine, number=number)
    if info is None:
        raise HTTPException(404, f"there is no issue #{number}")
    send = runner(request)
    live = info["state"] == IssueState.SENDING or send.running
    return page(
        request,
        "console_issue.html",
        settings,
        issue=info,
        csrf=csrf_token(settings),
        running=send.running,
        last_summary=send.last_summary,
        refresh=REFRESH_SECONDS if live else None,
    )


@router.get("/issues/{number}/preview", response_class=HTMLResponse)
def console_preview(request: Request, number: int, settings: Operator) -> Response:
    """The issue exactly as a subscriber sees it (sample recipient), for editors."""
    with Session(request.app.state.engine) as session:
        issue = find_issue(session, number=number)
        if issue is None:
            raise HTTPException(404, f"there is no issue #{number}")
        html = issue_message(issue, settings).html_for(SAMPLE_RECIPIENT)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get("/api/status")
def console_status(request: Request, settings: Operator, number: int | None = None) -> JSONResponse:
    info = issue_status(request.app.state.engine, number=number)
    send = runner(request)
    return JSONResponse(
        {"issue": info, "sender_running": send.running, "last_summary": send.last_summary},
        headers={"Cache-Control": "no-store"},
    )


def _back(number: int | None) -> RedirectResponse:
    # Only ever to our own console page: the number is an int, nothing else varies.
    return RedirectResponse(f"/console/issues/{number}" if number else "/console", status_code=303)


@router.post("/send")
def console_send(
    request: Request,
    settings: Operator,
    csrf: Annotated[str, Form()] = "",
    number: Annotated[int | None, Form()] = None,
) -> Response:
    _check_post(request, settings, csrf)
    with session_scope(request.app.state.engine) as session:
        frozen = prepare_draft(session, settings, number=number, actor="console")
        target = frozen.issue.number if frozen.issue is not None else None
    if target is None:
        raise HTTPException(409, f"{frozen.nothing_new}: nothing to send")
    if not runner(request).start(target):
        raise HTTPException(409, "a send is already running in this process")
    return _back(target)


@router.post("/issues/{number}/{action}")
def console_control(
    request: Request,
    number: int,
    action: str,
    settings: Operator,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _check_post(request, settings, csrf)
    engine: Engine = request.app.state.engine
    try:
        if action == "pause":
            pause_issue(engine, number=number, actor="console")
        elif action == "cancel":
            cancel_issue(engine, number=number, actor="console")
        elif action == "resume":
            resume_issue(engine, number=number, actor="console")
            runner(request).start(number)
        else:
            raise HTTPException(404, f"unknown action {action!r}")
    except DigestError as exc:
        raise HTTPException(409, str(exc)) from exc
    return _back(number)
