"""``POST /webhooks/{provider}``: verified provider events → suppressions.

One route per provider name (postmark, sendgrid, mailgun, resend, ses). Each provider
has its module in :mod:`digest.webhooks`, whose ``receive`` verifies the request first
(an unverified one gets 401/403 and touches nothing) and then normalises its payload
into :class:`~digest.webhooks.events.MailEvent` values; the route applies them
(:func:`digest.webhooks.events.apply_events`); replays are recognised by event id.

The app may set ``app.state.webhook_fetch`` (a ``url -> bytes`` callable) to replace
the HTTPS fetcher SNS needs for certificates and subscription confirmations; the
host checks run before any fetch either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.webhooks import mailgun, postmark, resend, sendgrid, ses
from digest.webhooks.common import claim_nonce
from digest.webhooks.events import MailEvent, apply_events

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

Receiver = Callable[
    [Settings, Mapping[str, str], bytes, Any], tuple[list[MailEvent], dict[str, Any]]
]

#: One module per provider; each ``receive(settings, headers, body, app state)`` verifies
#: and parses, and returns the events with anything extra for the answer.
PROVIDERS: dict[str, Receiver] = {
    "postmark": postmark.receive,
    "sendgrid": sendgrid.receive,
    "mailgun": mailgun.receive,
    "resend": resend.receive,
    "ses": ses.receive,
}


def _process(
    provider: str,
    settings: Settings,
    engine: Any,
    headers: dict[str, str],
    body: bytes,
    state: Any,
) -> dict[str, Any]:
    try:
        events, extra = PROVIDERS[provider](settings, headers, body, state)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        # A JSON value of a type or size no parser expected ({"TopicArn": ["x"]}): the
        # sender's mistake, every provider alike — a 400, never a 500 to retry forever.
        logger.warning("malformed %s webhook payload: %r", provider, exc)
        raise WebhookError(f"malformed {provider} payload", status=400) from exc
    nonce = extra.pop("_nonce", None)
    if nonce is not None:
        claim_nonce(engine, provider, nonce, body, settings)
    report = apply_events(engine, events, settings)
    return {"provider": provider, "events": len(events), **report.as_dict(), **extra}


@router.post("/webhooks/{provider}")
async def webhook(provider: str, request: Request) -> JSONResponse:
    """Receive one provider's events; see docs/providers.md for each provider's URL."""
    if provider not in PROVIDERS:
        return JSONResponse({"detail": f"unknown provider {provider[:40]!r}"}, status_code=404)
    # At most DIGEST_WEBHOOK_BODY_MAX_BYTES, within DIGEST_BODY_TIMEOUT (digest/http/bodies.py).
    body = await request.body()
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
