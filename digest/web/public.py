"""Public subscriber routes: subscribe (double opt-in), confirm, one-click unsubscribe.

No route sets or reads a cookie and none redirects: every state change needs either
a secret token from an email (confirm, unsubscribe) or only triggers a confirmation
email (subscribe), so a cross-site form post can do no harm without the token and
the forms need no CSRF token or JavaScript.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from digest.core import jsonsafe
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import ConfigError, DigestError, SubscriberError, TokenError
from digest.http.client import client_ip, user_agent
from digest.http.throttle import Throttle
from digest.jobs.schedule import next_send
from digest.notices.subscribers import TransportFactory, send_confirmation
from digest.notices.welcome import send_welcome
from digest.store.models import Issue
from digest.store.outage import ride_out
from digest.web.archive import PUBLIC_STATES
from digest.web.issue_page import issue_url
from digest.web.pages import fixed_page, page
from subscribers.optin import (
    Requester,
    confirm,
    confirm_status,
    mark_confirmation_sent,
    request_subscription,
)

logger = logging.getLogger(__name__)

router = APIRouter()

HONEYPOT = "website"
ACCEPTED = (
    "Thanks! If this address can receive mail, a confirmation link is on its way. "
    "Click it to start getting the digest."
)
_FIELDS = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "maxLength": 320, "description": "The address to subscribe."},
        "name": {"type": "string", "maxLength": 200, "description": "Optional display name."},
    },
}
_SUBSCRIBE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _FIELDS},
            "application/x-www-form-urlencoded": {"schema": _FIELDS},
        },
    },
    "responses": {
        "200": {
            "description": "Form post: a page saying a confirmation may be on its way.",
            "content": {"text/html": {}},
        },
        "202": {
            "description": "JSON post: the same answer whether or not the address is known.",
            "content": {"application/json": {}},
        },
        "400": {"description": "The body could not be parsed."},
        "408": {"description": "The body did not arrive within DIGEST_BODY_TIMEOUT seconds."},
        "413": {"description": "The body is larger than DIGEST_BODY_MAX_BYTES (64 KB)."},
        "415": {"description": "Neither JSON nor a form."},
        "422": {"description": "The address or name is invalid; the reason is given."},
        "429": {"description": "Too many requests from this client; see Retry-After."},
    },
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _who(request: Request, source: str) -> Requester:
    return Requester(source=source, ip=client_ip(request), user_agent=user_agent(request))


# ---------------------------------------------------------------- subscribe


@router.get("/", response_class=HTMLResponse, summary="The subscribe page")
@router.get("/subscribe", response_class=HTMLResponse, summary="The subscribe page")
def subscribe_page(request: Request, email: str = "") -> HTMLResponse:
    # ?email=: "Check your inbox" sends a reader who typed a wrong address back here
    # with what they typed, to correct it.
    return page(
        request, "subscribe.html", _settings(request), error=None, email=email[:320], name=""
    )


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


async def _subscribe_fields(request: Request) -> tuple[dict[str, Any], bool]:
    """The posted fields and whether the client speaks JSON; _BadRequest otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            data = jsonsafe.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(400, "the body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise _BadRequest(422, "the JSON body must be an object with an 'email' field")
        return data, True
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if not _utf8_form(ctype, await request.body()):
            # Starlette would store U+FFFD (or latin-1 guesses) in the name instead.
            raise _BadRequest(400, "the form is not valid UTF-8")
        form = await request.form()
        if any(isinstance(v, UploadFile) for _, v in form.multi_items()):
            raise _BadRequest(422, "files are not accepted")
        fields: dict[str, Any] = {k: v for k, v in form.items()}
        if "topics" in form:  # checkboxes: one field per chosen topic
            fields["topics"] = [v for v in form.getlist("topics") if isinstance(v, str)]
        return fields, False
    raise _BadRequest(415, "send a form (application/x-www-form-urlencoded) or JSON")


def _preferences(data: dict[str, Any]) -> dict[str, Any]:
    """The optional choices a sign-up may carry: topics (a list), frequency, time zone."""
    topics = data.get("topics")
    if topics is not None and (
        not isinstance(topics, list) or not all(isinstance(t, str) for t in topics)
    ):
        raise SubscriberError("'topics' must be a list of topic names")
    chosen: dict[str, Any] = {"topics": topics}
    for key in ("frequency", "timezone"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise SubscriberError(f"'{key}' must be a string")
        chosen[key] = value
    return chosen


def _utf8_form(ctype: str, raw: bytes) -> bool:
    """Every field of the form decodes as UTF-8: the bytes themselves and, for an
    urlencoded form, every percent escape. (Files are refused anyway, so a multipart
    body is all text.)"""
    try:
        text = raw.decode("utf-8")
        if ctype == "application/x-www-form-urlencoded":
            parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def _text_field(data: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = data.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise SubscriberError(f"'{key}' is required")
        return None
    if not isinstance(value, str):
        raise SubscriberError(f"'{key}' must be a string")
    if required and not value.strip():
        raise SubscriberError(f"'{key}' is required")
    return value


@router.post(
    "/subscribe",
    summary="Ask to subscribe (double opt-in)",
    openapi_extra=_SUBSCRIBE_OPENAPI,
    response_model=None,
)
async def subscribe(request: Request, background: BackgroundTasks) -> Response:
    settings = _settings(request)
    throttle: Throttle = request.app.state.subscribe_throttle
    wait = throttle.check(request)
    wants_json = "json" in request.headers.get("content-type", "")
    if wait is not None:
        reason = "too many subscribe requests from your network; try again later"
        headers = {"Retry-After": str(int(wait) + 1)}
        if wants_json:
            return JSONResponse({"detail": reason}, status_code=429, headers=headers)
        response = page(
            request, "subscribe.html", settings, status_code=429, error=reason, email="", name=""
        )
        response.headers.update(headers)
        return response
    try:
        data, wants_json = await _subscribe_fields(request)
    except _BadRequest as exc:
        if wants_json or exc.status == 415:
            return JSONResponse({"detail": exc.reason}, status_code=exc.status)
        return page(
            request,
            "subscribe.html",
            settings,
            status_code=exc.status,
            error=exc.reason,
            email="",
            name="",
        )

    def answer() -> Response:
        if wants_json:
            return JSONResponse({"status": "accepted", "detail": ACCEPTED}, status_code=202)
        # Names the address typed (a typo shows): per request, not a fixed page.
        return page(request, "subscribe_done.html", settings, email=str(raw_email).strip()[:320])

    raw_email = data.get("email") if isinstance(data.get("email"), str) else ""
    raw_name = data.get("name") if isinstance(data.get("name"), str) else ""
    try:
        email = _text_field(data, "email", required=True)
        name = _text_field(data, "name", required=False)
        honeypot = data.get(HONEYPOT)
        assert email is not None
        if honeypot:
            # A person never sees this field; answer as if all went well so the bot
            # learns nothing, and store and send nothing.
            logger.info("honeypot filled from %s; request ignored", client_ip(request))
            return answer()
        who = _who(request, "web form" if not wants_json else "web api")
        outcome = await run_in_threadpool(
            request_subscription, _engine(request), email, name, who, _preferences(data)
        )
    except SubscriberError as exc:
        reason = str(exc)
        if wants_json:
            return JSONResponse({"detail": reason}, status_code=422)
        return page(
            request,
            "subscribe.html",
            settings,
            status_code=422,
            error=reason,
            email=str(raw_email)[:320],
            name=str(raw_name)[:200],
        )
    if outcome.recipient is not None and outcome.nonce is not None:
        # After the answer has gone out: the reply takes the same time whether or not
        # an email is sent, so its timing does not reveal whether the address is known.
        background.add_task(
            _send_confirmation,
            settings,
            _engine(request),
            request.app.state.transport_factory,
            outcome.recipient,
            outcome.nonce,
        )
    return answer()


def _send_confirmation(
    settings: Settings,
    engine: Engine,
    factory: TransportFactory | None,
    recipient: Recipient,
    nonce: str,
) -> None:
    try:
        if send_confirmation(settings, recipient, nonce, factory):
            # Sent: the mark (the resend cool-down) waits out a database restart.
            ride_out(
                lambda: mark_confirmation_sent(engine, recipient.subscriber_id),
                settings.db_outage_grace_seconds,
                "confirmation",
            )
    except DigestError:
        logger.exception(
            "could not send the confirmation to subscriber %s", recipient.subscriber_id
        )


# ---------------------------------------------------------------- confirm


def _confirm_problem(request: Request, settings: Settings, exc: TokenError) -> HTMLResponse:
    return page(
        request,
        "link_problem.html",
        settings,
        status_code=400,
        title="This confirmation link does not work",
        reason=str(exc),
        subscribe_again=True,
    )


@router.get(
    "/confirm/{token}",
    response_class=HTMLResponse,
    summary="The confirmation page (one button; a GET never confirms)",
)
def confirm_page(token: str, request: Request) -> HTMLResponse:
    settings = _settings(request)
    try:
        status = confirm_status(_engine(request), settings, token)
    except TokenError as exc:
        return _confirm_problem(request, settings, exc)
    if status == "active":
        # A second visit (or a mail scanner's first): say so, do not call it an error.
        return fixed_page(request, "confirmed.html", settings, already=True)
    return fixed_page(request, "confirm.html", settings)


@router.post("/confirm/{token}", response_class=HTMLResponse, summary="Confirm a subscription")
def confirm_link(token: str, request: Request, background: BackgroundTasks) -> HTMLResponse:
    settings = _settings(request)
    try:
        outcome = confirm(_engine(request), settings, token, _who(request, "confirmation link"))
    except TokenError as exc:
        try:
            already = confirm_status(_engine(request), settings, token) == "active"
        except TokenError:
            already = False
        if already:
            return page(request, "confirmed.html", settings, already=True)
        return _confirm_problem(request, settings, exc)
    background.add_task(
        _send_welcome,
        settings,
        _engine(request),
        request.app.state.transport_factory,
        Recipient(outcome.subscriber_id, outcome.email, outcome.name or ""),
    )
    return page(request, "confirmed.html", settings, already=False)


def _send_welcome(
    settings: Settings, engine: Engine, factory: TransportFactory | None, recipient: Recipient
) -> None:
    """After the "you're subscribed" page: what to expect, when, the latest issue."""
    try:
        with Session(engine) as session:
            latest = session.exec(
                select(Issue)
                .where(col(Issue.state).in_(PUBLIC_STATES))
                .order_by(col(Issue.number).desc())
                .limit(1)
            ).first()
        try:
            upcoming = next_send(settings)
        except ConfigError:  # a bad cron line is the operator's to fix; say "weekly"
            upcoming = None
        send_welcome(
            settings,
            recipient,
            next_send=upcoming,
            latest_url=issue_url(settings, latest) if latest else None,
            transport_factory=factory,
        )
    except DigestError:
        logger.exception("could not send the welcome to subscriber %s", recipient.subscriber_id)
