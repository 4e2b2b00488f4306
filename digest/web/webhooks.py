"""``POST /webhooks/{provider}``: verified provider events → suppressions.

One route per provider name (postmark, sendgrid, mailgun, resend, ses). A request is
verified first (see :mod:`digest.web.webhook_auth`); an unverified one gets 401/403 and
touches nothing. A verified one is normalised (:mod:`digest.web.webhook_events`) and
applied (:func:`digest.events.apply_events`); replays are recognised by event id.

The app may set ``app.state.webhook_fetch`` (a ``url -> bytes`` callable) to replace
the HTTPS fetcher SNS needs for certificates and subscription confirmations; the
host checks run before any fetch either way.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.events import MailEvent, apply_events
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.web import webhook_auth as auth
from digest.web import webhook_events as parse

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")
#: SendGrid posts batches of events; a megabyte of JSON is thousands of them.
MAX_BODY = 5 * 1024 * 1024


def https_fetch(url: str) -> bytes:
    """GET an SNS URL (already checked against the SNS host pattern)."""
    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return response.content


def _events(
    provider: str, settings: Settings, headers: dict[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify and parse; returns the events and anything extra for the answer (a
    Mailgun signature's token under ``"_nonce"``, to be claimed before applying)."""
    if provider == "postmark":
        auth.verify_postmark(settings, headers)
        return parse.postmark(parse.load_json(body)), {}
    if provider == "sendgrid":
        auth.verify_sendgrid(settings, headers, body)
        return parse.sendgrid(parse.load_json(body)), {}
    if provider == "mailgun":
        try:
            payload = parse.load_json(body)
        except WebhookError:
            raise WebhookVerificationError("missing Mailgun signature") from None
        token = auth.verify_mailgun(
            settings, payload.get("signature") if isinstance(payload, dict) else None
        )
        return parse.mailgun(payload), {"_nonce": token}
    if provider == "resend":
        svix_id = auth.verify_svix(settings, headers, body)
        return parse.resend(parse.load_json(body), svix_id), {}
    return _sns(settings, body, state)


def _sns(settings: Settings, body: bytes, state: Any) -> tuple[list[MailEvent], dict[str, Any]]:
    try:
        message = parse.load_json(body)
    except WebhookError:
        raise WebhookVerificationError("not an SNS message") from None
    if not isinstance(message, dict):
        raise WebhookVerificationError("not an SNS message")
    fetch = getattr(state, "webhook_fetch", None) or https_fetch
    cache = getattr(state, "sns_certificates", None)
    if cache is None:
        cache = state.sns_certificates = {}
    auth.verify_sns(settings, message, fetch, cache)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL") or "")
        if not auth.allowed_sns_url(url, auth.sns_region(message)):
            raise WebhookError("SubscribeURL is not an Amazon SNS URL", status=400)
        try:
            fetch(url)
        except Exception as exc:
            # 5xx lets SNS resend the confirmation later.
            logger.warning("SNS subscription confirmation failed: %s", exc)
            raise WebhookError("could not confirm the SNS subscription", status=502) from None
        logger.info("confirmed SNS subscription to %s", message.get("TopicArn"))
        return [], {"confirmed": True}
    if kind != "Notification":
        return [], {}
    notification = parse.load_json(str(message.get("Message") or "").encode())
    return parse.ses(notification, str(message["MessageId"])), {}


def _process(
    provider: str,
    settings: Settings,
    engine: Any,
    headers: dict[str, str],
    body: bytes,
    state: Any,
) -> dict[str, Any]:
    events, extra = _events(provider, settings, headers, body, state)
    nonce = extra.pop("_nonce", None)
    if nonce is not None:
        auth.claim_nonce(engine, provider, nonce, body, settings)
    report = apply_events(engine, events, settings)
    return {"provider": provider, "events": len(events), **report.as_dict(), **extra}


@router.post("/webhooks/{provider}")
async def webhook(provider: str, request: Request) -> JSONResponse:
    """Receive one provider's events; see docs/providers.md for each provider's URL."""
    if provider not in PROVIDERS:
        return JSONResponse({"detail": f"unknown provider {provider[:40]!r}"}, status_code=404)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return JSONResponse({"detail": "payload too large"}, status_code=413)
    body = await request.body()
    if len(body) > MAX_BODY:
        return JSONResponse({"detail": "payload too large"}, status_code=413)
    app = request.app
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        result = await run_in_threadpool(
            _process, provider, app.state.settings, app.state.engine, headers, body, app.state
        )
    except WebhookVerificationError as exc:
        logger.warning(
            "refused %s webhook from %s: %s",
            provider,
            request.client.host if request.client else "?",
            exc,
        )
        answer = JSONResponse({"detail": str(exc)}, status_code=exc.status)
        if provider == "postmark" and exc.status == 401:
            answer.headers["WWW-Authenticate"] = 'Basic realm="digest webhooks"'
        return answer
    except WebhookError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    except SQLAlchemyError as exc:
        # The provider retries on 5xx: the events are not lost.
        logger.error("cannot store %s webhook events: %s", provider, exc)
        return JSONResponse({"detail": "store unavailable, retry later"}, status_code=503)
    return JSONResponse(result)
