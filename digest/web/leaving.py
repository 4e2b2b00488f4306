"""Leaving, and changing one's mind: the unsubscribe pages, RFC 8058 one-click
unsubscribe, a fresh unsubscribe link by mail, and the undo.

The page a link opens names the (masked) address it is for and offers the monthly
round-up or fewer topics before the button; the "you're unsubscribed" page offers to
undo, with the same link. A GET never changes anything (link scanners follow GETs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import DigestError, TokenError
from digest.http.throttle import Throttle
from digest.notices.subscribers import TransportFactory, send_unsubscribe_link
from digest.web.pages import fixed_page, page
from digest.web.public import _BadRequest, _engine, _settings, _subscribe_fields, _who
from subscribers.oneclick import UnsubscribeWriter
from subscribers.optin import (
    LinkReader,
    link_reader,
    undo_unsubscribe,
    unsubscribe_link_recipient,
)
from subscribers.service import mask_address

logger = logging.getLogger(__name__)

router = APIRouter()

_ONE_CLICK = {
    "type": "object",
    "required": ["List-Unsubscribe"],
    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
}
_UNSUBSCRIBE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _ONE_CLICK},
            "multipart/form-data": {"schema": _ONE_CLICK},
        },
    },
    "responses": {
        "200": {
            "description": "Unsubscribed (or already not subscribed). Never a redirect.",
            "content": {"text/html": {}},
        },
        "400": {
            "description": "The link is not valid, or the body is not List-Unsubscribe=One-Click."
        },
    },
}


def _unsubscribe_help(
    request: Request,
    settings: Settings,
    *,
    status_code: int = 200,
    reason: str | None = None,
    sent: bool = False,
) -> HTMLResponse:
    """How to unsubscribe without a working link: ask for a fresh one, or write."""
    return page(
        request,
        "unsubscribe_help.html",
        settings,
        status_code=status_code,
        reason=reason,
        mailto=settings.effective_unsubscribe_mailto,
        sent=sent,
    )


@router.get("/unsubscribe", response_class=HTMLResponse, summary="How to unsubscribe")
def unsubscribe_help(request: Request) -> HTMLResponse:
    return _unsubscribe_help(request, _settings(request))


@router.post(
    "/unsubscribe",
    response_class=HTMLResponse,
    summary="Mail a fresh one-click unsubscribe link (same answer for every address)",
)
async def unsubscribe_link_request(request: Request, background: BackgroundTasks) -> Response:
    settings = _settings(request)
    throttle: Throttle = request.app.state.subscribe_throttle
    wait = throttle.check(request)
    if wait is not None:
        response = _unsubscribe_help(
            request,
            settings,
            status_code=429,
            reason="too many requests from your network; try again later",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    try:
        data, _json = await _subscribe_fields(request)
    except _BadRequest as exc:
        return _unsubscribe_help(request, settings, status_code=exc.status, reason=exc.reason)
    email = data.get("email")
    if not isinstance(email, str) or not email.strip():
        return _unsubscribe_help(request, settings, status_code=422, reason="'email' is required")
    recipient = await run_in_threadpool(unsubscribe_link_recipient, _engine(request), email)
    # One link per address per cool-down, whoever asks: the form cannot flood a mailbox.
    per_address: Throttle = request.app.state.unsubscribe_link_throttle
    if recipient is not None and per_address.hit(recipient.email) is None:
        background.add_task(
            _send_unsubscribe_link, settings, request.app.state.transport_factory, recipient
        )
    # The same page whether or not the address is known: it reveals nothing.
    return _unsubscribe_help(request, settings, sent=True)


def _send_unsubscribe_link(
    settings: Settings, factory: TransportFactory | None, recipient: Recipient
) -> None:
    try:
        send_unsubscribe_link(settings, recipient, factory)
    except DigestError:
        logger.exception(
            "could not send an unsubscribe link to subscriber %s", recipient.subscriber_id
        )


@router.get(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="The unsubscribe page (one button; a GET never unsubscribes)",
)
def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    settings = _settings(request)
    try:
        reader = link_reader(_engine(request), settings, token)
    except TokenError as exc:
        return _unsubscribe_help(request, settings, status_code=400, reason=str(exc))
    address = mask_address(reader.email) if reader else None
    if reader is not None and reader.status in ("active", "pending"):
        return page(request, "unsubscribe.html", settings, address=address, token=token)
    return _unsubscribed(request, settings, token, reader, already=True)


def _unsubscribed(
    request: Request, settings: Settings, token: str, reader: LinkReader | None, *, already: bool
) -> HTMLResponse:
    """ "You're unsubscribed", naming the address, with the undo when the reader may take
    it back."""
    return page(
        request,
        "unsubscribed.html",
        settings,
        already=already,
        address=mask_address(reader.email) if reader else None,
        undo=reader is not None and reader.status == "unsubscribed",
        token=token,
    )


async def _one_click_fields(request: Request) -> dict[str, list[str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form()
        return {k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form}
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qs(body, keep_blank_values=True)


@router.post(
    "/unsubscribe/{token}",
    response_class=HTMLResponse,
    summary="RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click)",
    openapi_extra=_UNSUBSCRIBE_OPENAPI,
)
async def one_click(token: str, request: Request) -> HTMLResponse:
    settings = _settings(request)
    fields = await _one_click_fields(request)
    if "One-Click" not in fields.get("List-Unsubscribe", []):
        return page(
            request,
            "link_problem.html",
            settings,
            status_code=400,
            title="Nothing was changed",
            reason="an unsubscribe request must carry List-Unsubscribe=One-Click",
            subscribe_again=False,
        )
    source = (
        "unsubscribe page"
        if "page" in fields.get("via", [])
        else "List-Unsubscribe one-click (RFC 8058)"
    )
    writer: UnsubscribeWriter = request.app.state.unsubscribes
    try:
        recorded = writer.submit(token, _who(request, source))
    except TokenError as exc:
        return _unsubscribe_help(request, settings, status_code=400, reason=str(exc))
    # Answered once committed (in a group with whoever else is unsubscribing now).
    await asyncio.wrap_future(recorded)
    if "page" not in fields.get("via", []):
        # A mail client's RFC 8058 POST (the flood during a send): the same page for all.
        return fixed_page(request, "unsubscribed.html", settings, already=False)
    # A person pressed the page's button: name the address and offer the undo.
    try:
        reader = await run_in_threadpool(link_reader, _engine(request), settings, token)
    except TokenError as exc:
        return _unsubscribe_help(request, settings, status_code=400, reason=str(exc))
    return _unsubscribed(request, settings, token, reader, already=False)


@router.post(
    "/unsubscribe/{token}/undo",
    response_class=HTMLResponse,
    summary="Take back an unsubscribe with the link that made it",
)
def undo(token: str, request: Request) -> HTMLResponse:
    settings = _settings(request)
    try:
        undone = undo_unsubscribe(
            _engine(request), settings, token, _who(request, "unsubscribed page (undo)")
        )
        reader = link_reader(_engine(request), settings, token)
    except TokenError as exc:
        return _unsubscribe_help(request, settings, status_code=400, reason=str(exc))
    if not undone and (reader is None or reader.status != "active"):
        return page(
            request,
            "link_problem.html",
            settings,
            status_code=409,
            title="This unsubscribe cannot be undone here",
            reason="this address was removed for another reason or is gone",
            subscribe_again=True,
        )
    return page(
        request,
        "resubscribed.html",
        settings,
        address=mask_address(reader.email) if reader else None,
        token=token,
    )
