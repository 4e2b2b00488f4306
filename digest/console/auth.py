"""Console accounts in the browser: log in and out, set a password from a one-time
link, server-side sessions, CSRF and roles.

- The session cookie holds a random token; the database keeps only its SHA-256 (a copy
  of the database logs nobody in). HttpOnly, SameSite=Lax, path ``/console``, Secure
  when ``DIGEST_BASE_URL`` is https; it ends after ``DIGEST_CONSOLE_SESSION_HOURS``, at
  logout, when the password is set anew or the account is removed.
- Every form carries a CSRF token (one per session; before login one bound to a
  cookie; on the set-password page one bound to the link) and a post must come from
  the console's own origin (``Origin``, else ``Sec-Fetch-Site``).
- Logins are limited per client IP (``DIGEST_CONSOLE_LOGIN_LIMIT`` attempts per
  ``DIGEST_CONSOLE_LOGIN_WINDOW`` seconds) on top of the per (account, client) lock-out
  with back-off of :mod:`digest.accounts.lockout` (no client can lock anyone else out).
- Roles are enforced here, server-side: :data:`Editor` is anyone logged in,
  :data:`Operator` only operators; a refused request gets a 403 page with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import delete
from sqlmodel import Session, col, select

from digest.accounts.lockout import LoginLockout, SharedLoginLockout
from digest.accounts.passwords import MIN_LENGTH
from digest.accounts.service import (
    authenticate,
    login_key,
    set_password,
    token_hash,
    user_for_setup_token,
)
from digest.console.pages import ConsoleProblem, console_headers, render
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import AccountError
from digest.http.client import client_ip, client_key, user_agent
from digest.http.throttle import SharedThrottle, Throttle
from digest.store.account_models import ConsoleSession, ConsoleUser, Role
from digest.store.engine import session_scope

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

COOKIE = "digest_console"
LOGIN_COOKIE = "digest_console_login"
COOKIE_PATH = "/console"
#: How often a session's last_seen_at is written (not on every request).
SEEN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Viewer:
    """The person behind a request."""

    user_id: int
    email: str
    role: str
    csrf: str
    session_id: str

    @property
    def can_send(self) -> bool:
        return self.role == Role.OPERATOR


def _secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def _login_throttle(request: Request) -> Throttle:
    state = request.app.state
    if getattr(state, "console_login_throttle", None) is None:
        settings: Settings = state.settings
        state.console_login_throttle = SharedThrottle(
            state.engine,
            "console-login",
            settings.console_login_limit,
            settings.console_login_window,
        )
    throttle: Throttle = state.console_login_throttle
    return throttle


def login_lockout(request: Request) -> LoginLockout:
    state = request.app.state
    if getattr(state, "console_login_lockout", None) is None:
        state.console_login_lockout = SharedLoginLockout(state.engine)
    lockout: LoginLockout = state.console_login_lockout
    return lockout


def _mac(settings: Settings, purpose: str, value: str) -> str:
    key = settings.signing_key().encode()
    return hmac.new(key, f"console:{purpose}:{value}".encode(), hashlib.sha256).hexdigest()[:43]


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


def check_origin(request: Request) -> None:
    """A state-changing request must come from the console's own origin."""
    settings: Settings = request.app.state.settings
    origin = request.headers.get("origin")
    if origin is not None:
        own = {f"{request.url.scheme}://{request.url.netloc}", _origin(settings.base_url)}
        if origin not in own:
            raise ConsoleProblem(403, "this form was posted from another site; nothing changed")
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ConsoleProblem(403, "this form was posted from another site; nothing changed")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path (no open redirect)."""
    if not target or not target.startswith("/console") or target.startswith("/console/login"):
        return "/console"
    if "//" in target or "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/console"
    return target


def _viewer(request: Request) -> Viewer:
    cached = getattr(request.state, "viewer", None)
    if cached is not None:
        return cached
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        raise ConsoleProblem(401, "please log in", login=True)
    now = utcnow()
    sid = token_hash(token)
    viewer = None
    with session_scope(request.app.state.engine) as session:
        row = session.exec(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, col(ConsoleUser.id) == ConsoleSession.user_id)
            .where(ConsoleSession.id == sid)
        ).first()
        if row is not None:
            login, user = row
            if login.expires_at <= now:
                session.delete(login)  # committed as the block ends
            else:
                if now - login.last_seen_at > SEEN_EVERY:
                    login.last_seen_at = now
                    session.add(login)
                assert user.id is not None
                viewer = Viewer(user.id, user.email, user.role, login.csrf, sid)
    if viewer is None:
        raise ConsoleProblem(401, "please log in", login=True)
    request.state.viewer = viewer
    return viewer


def editor(request: Request) -> Viewer:
    """Anyone logged in (editors and operators)."""
    return _viewer(request)


def operator(request: Request) -> Viewer:
    viewer = _viewer(request)
    if not viewer.can_send:
        raise ConsoleProblem(
            403,
            "this needs an operator account; yours is an editor account (editors edit, test, "
            "approve and hold issues). Ask an operator.",
            title="Operators only",
        )
    return viewer


def editor_post(request: Request, csrf: Annotated[str, Form()] = "") -> Viewer:
    viewer = _viewer(request)
    check_origin(request)
    if not _same(csrf, viewer.csrf):
        raise ConsoleProblem(403, "the form's security token is missing or old; reload the page")
    return viewer


def operator_post(request: Request, _checked: Annotated[Viewer, Depends(editor_post)]) -> Viewer:
    return operator(request)


Editor = Annotated[Viewer, Depends(editor)]
Operator = Annotated[Viewer, Depends(operator)]
EditorPost = Annotated[Viewer, Depends(editor_post)]
OperatorPost = Annotated[Viewer, Depends(operator_post)]


def start_session(request: Request, user: ConsoleUser, target: str) -> Response:
    """Log ``user`` in: a new session row and its cookie, then go to ``target``."""
    settings: Settings = request.app.state.settings
    token = secrets.token_urlsafe(32)
    now = utcnow()
    hours = settings.console_session_hours
    assert user.id is not None
    with session_scope(request.app.state.engine) as session:
        session.exec(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < now))
        session.add(
            ConsoleSession(
                id=token_hash(token),
                user_id=user.id,
                csrf=secrets.token_urlsafe(24),
                created_at=now,
                expires_at=now + timedelta(hours=hours),
                last_seen_at=now,
                ip=client_ip(request)[:64],
                user_agent=(user_agent(request) or "")[:500] or None,
            )
        )
    response = RedirectResponse(_safe_next(target), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(hours * 3600),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(settings),
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    logger.info("console login: %s", user.email)
    return console_headers(response)


def _login_page(
    request: Request, *, target: str, error: str | None = None, status_code: int = 200
) -> Response:
    settings: Settings = request.app.state.settings
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=_mac(settings, "login", nonce),
        target=_safe_next(target),
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/console") -> Response:
    return _login_page(request, target=next)


@router.post("/login")
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/console",
) -> Response:
    settings: Settings = request.app.state.settings
    check_origin(request)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not _same(csrf, _mac(settings, "login", nonce)):
        return _login_page(
            request,
            target=next,
            error="The login form expired; please try again.",
            status_code=403,
        )
    wait = _login_throttle(request).check(request)
    if wait is not None:
        response = _login_page(
            request,
            target=next,
            error=f"Too many login attempts from your address; try again in {int(wait)} seconds.",
            status_code=429,
        )
        response.headers["Retry-After"] = str(int(wait))
        return response
    with session_scope(request.app.state.engine) as session:
        outcome = authenticate(
            session,
            email,
            password,
            lockout=login_lockout(request),
            client=client_key(request),
        )
    if outcome.user is None:
        logger.warning("console login refused for %r from %s", email[:80], client_ip(request))
        return _login_page(
            request, target=next, error=f"Not logged in: {outcome.refused}.", status_code=401
        )
    return start_session(request, outcome.user, next)


@router.post("/logout")
def logout(request: Request, viewer: EditorPost) -> Response:
    with session_scope(request.app.state.engine) as session:
        session.exec(delete(ConsoleSession).where(col(ConsoleSession.id) == viewer.session_id))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return console_headers(response)


def _setup_user(request: Request, token: str) -> ConsoleUser:
    with Session(request.app.state.engine) as session:
        user = user_for_setup_token(session, token)
    if user is None:
        raise ConsoleProblem(
            404,
            "this set-password link is unknown, used or expired; ask an operator for a new one "
            "(`digest users reset EMAIL`)",
            title="Link not valid",
        )
    return user


@router.get("/setup/{token}")
def setup_form(request: Request, token: str) -> Response:
    settings: Settings = request.app.state.settings
    user = _setup_user(request, token)
    return render(
        request,
        "setup.html",
        None,
        account=user.email,
        role=user.role,
        setup_csrf=_mac(settings, "setup", token),
        min_length=MIN_LENGTH,
        error=None,
    )


@router.post("/setup/{token}")
def setup(
    request: Request,
    token: str,
    password: Annotated[str, Form(max_length=1024)] = "",
    again: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    settings: Settings = request.app.state.settings
    check_origin(request)
    if not _same(csrf, _mac(settings, "setup", token)):
        raise ConsoleProblem(403, "the form's security token is wrong; reload the page")
    user = _setup_user(request, token)
    error = None
    if password != again:
        error = "The two passwords differ."
    else:
        try:
            with session_scope(request.app.state.engine) as session:
                fresh = session.get(ConsoleUser, user.id)
                assert fresh is not None
                set_password(session, fresh, password)
            login_lockout(request).clear(login_key(user.email))
        except AccountError as exc:
            error = f"Not set: {exc}."
    if error is not None:
        return render(
            request,
            "setup.html",
            None,
            status_code=422,
            account=user.email,
            role=user.role,
            setup_csrf=_mac(settings, "setup", token),
            min_length=MIN_LENGTH,
            error=error,
        )
    return start_session(request, user, "/console?done=password")
