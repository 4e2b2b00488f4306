"""The reader's own pages: ``/preferences/{token}`` (topics, frequency, time zone — the
token is the one of the reader's unsubscribe link, so no login) and ``/r/{token}``
(a counted link: a redirect to the URL the issue holds, always; the click counts once
per client per link per hour, written in bulk each second — digest/issue/clicks.py,
digest/issue/click_buffer.py). Also the one script the public pages load."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from digest.core.settings import Settings
from digest.core.tokens import address_matches, read_claims
from digest.exceptions import SubscriberError, TokenError
from digest.http.client import client_key
from digest.issue.click_buffer import ClickBuffer
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from digest.web.pages import page
from subscribers.optin import link_reader
from subscribers.preferences import ZONE_GROUPS, ZONES, catalog, preferences_of, set_preferences
from subscribers.service import mask_address

logger = logging.getLogger(__name__)

router = APIRouter()
S = Subscriber.__table__  # type: ignore[attr-defined]
#: Shipped inside the package (setup.py's package data).
TIMEZONE_JS = Path(__file__).resolve().parent / "static" / "timezone.js"


def _reader(conn: Connection, settings: Settings, token: str) -> int | None:
    """The subscriber a link names while they may still change their subscription."""
    claims = read_claims(settings, "unsubscribe", token)
    row = conn.execute(select(S.c.email, S.c.status).where(S.c.id == claims.subscriber_id)).first()
    if row is None or not address_matches(claims, row.email):
        return None
    if row.status not in (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value):
        return None
    return claims.subscriber_id


def _form(
    request: Request,
    settings: Settings,
    token: str,
    subscriber_id: int,
    *,
    status_code: int = 200,
    saved: bool = False,
    error: str | None = None,
) -> HTMLResponse:
    engine = request.app.state.engine
    with engine.connect() as conn:
        chosen = preferences_of(conn, subscriber_id)
        topics = catalog(conn)
    return page(
        request,
        "preferences.html",
        settings,
        status_code=status_code,
        token=token,
        chosen=chosen,
        topic_catalog=topics,
        zone_groups=ZONE_GROUPS,
        zone_names=ZONES,
        default_zone=settings.timezone,
        local_time=settings.send_local_time,
        saved=saved,
        error=error,
    )


def _no_such_reader(
    request: Request, settings: Settings, token: str, reason: str | None = None
) -> HTMLResponse:
    """A broken link says so; a working link of someone no longer subscribed says
    that, plainly, with the way back (never "does not work … nothing was changed")."""
    if reason is None:
        try:
            reader = link_reader(request.app.state.engine, settings, token)
        except TokenError as exc:
            reason = str(exc)
        else:
            return page(
                request,
                "unsubscribed.html",
                settings,
                status_code=410,
                already=True,
                address=mask_address(reader.email) if reader else None,
                undo=reader is not None and reader.status == "unsubscribed",
                token=token,
            )
    return page(
        request,
        "link_problem.html",
        settings,
        status_code=400,
        title="This link does not work",
        reason=reason,
        hint="The newest email you got from us carries a link that works.",
        subscribe_again=True,
    )


@router.get("/preferences/{token}", response_class=HTMLResponse, summary="A reader's choices")
def preferences_page(token: str, request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    try:
        with request.app.state.engine.connect() as conn:
            reader = _reader(conn, settings, token)
    except TokenError as exc:
        return _no_such_reader(request, settings, token, str(exc))
    if reader is None:
        return _no_such_reader(request, settings, token)
    return _form(request, settings, token, reader)


@router.post("/preferences/{token}", response_class=HTMLResponse, summary="Save a reader's choices")
async def save_preferences(token: str, request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            reader = _reader(conn, settings, token)
    except TokenError as exc:
        return _no_such_reader(request, settings, token, str(exc))
    if reader is None:
        return _no_such_reader(request, settings, token)
    form = await request.form()
    topics = [v for v in form.getlist("topics") if isinstance(v, str)]
    frequency = form.get("frequency")
    zone = form.get("timezone")
    try:
        await run_in_threadpool(
            set_preferences,
            engine,
            reader,
            topics=topics,
            frequency=frequency if isinstance(frequency, str) else None,
            timezone=zone if isinstance(zone, str) else None,
        )
    except SubscriberError as exc:
        return _form(request, settings, token, reader, status_code=422, error=str(exc))
    return _form(request, settings, token, reader, saved=True)


@router.get(
    "/r/{token}", summary="A counted link from an issue (counts per issue and comparison only)"
)
async def counted_link(token: str, request: Request) -> Response:
    # The hot path of a send: no thread hop, no cipher and no store once the token is
    # known to this process; the count is noted in memory (ClickBuffer).
    clicks: ClickBuffer = request.app.state.clicks
    target = clicks.cached(token)
    if target is None:
        try:
            target = await run_in_threadpool(clicks.lookup, token)
        except TokenError:
            target = None
    if target is None:
        settings: Settings = request.app.state.settings
        return page(
            request,
            "link_problem.html",
            settings,
            status_code=404,
            title="This link does not work",
            reason="it was changed or never came from one of our emails",
            subscribe_again=False,
        )
    # HEAD (link checkers) is answered like GET but not counted.
    if not request.scope.get("digest.head"):
        clicks.record(target, client_key(request))
    response = RedirectResponse(target.url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/static/timezone.js", include_in_schema=False)
def timezone_script() -> Response:
    body = TIMEZONE_JS.read_bytes()
    return Response(
        body,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
