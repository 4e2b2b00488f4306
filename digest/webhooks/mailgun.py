"""Mailgun: an HMAC over timestamp and token (not the body: the token is claimed once
per body), one event per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.webhooks.common import as_dict, as_str, configured_secret, fresh, hints, load_json, when
from digest.webhooks.events import EventKind, MailEvent

logger = logging.getLogger(__name__)


def verify(settings: Settings, signature: Any, now: float | None = None) -> str:
    """HMAC-SHA256 of ``timestamp + token`` with the webhook signing key; returns the
    token, which the caller must claim (:func:`~digest.webhooks.common.claim_nonce`):
    the body is not signed."""
    key = configured_secret(
        settings.mailgun_webhook_signing_key, "DIGEST_MAILGUN_WEBHOOK_SIGNING_KEY"
    )
    if not isinstance(signature, dict):
        raise WebhookVerificationError("missing Mailgun signature")
    timestamp = str(signature.get("timestamp") or "")
    token = str(signature.get("token") or "")
    given = str(signature.get("signature") or "")
    if not (timestamp and token and given):
        raise WebhookVerificationError("incomplete Mailgun signature")
    fresh(timestamp, settings, now)
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise WebhookVerificationError("bad Mailgun signature")
    return token


def parse(payload: Any) -> list[MailEvent]:
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise WebhookError("Mailgun payload lacks event-data")
    name, severity = as_str(data.get("event")), as_str(data.get("severity"))
    reason = as_str(data.get("reason"))
    kind: EventKind | None = {
        "delivered": EventKind.DELIVERED,
        "complained": EventKind.COMPLAINED,
        "unsubscribed": EventKind.UNSUBSCRIBED,
    }.get(name)
    if name == "failed":
        if severity == "temporary":
            kind = EventKind.DEFERRED  # Mailgun keeps retrying; not a bounce yet
        elif reason == "old":
            kind = EventKind.BOUNCED_SOFT  # gave up after retrying temporary failures
        else:
            kind = EventKind.BOUNCED_HARD
    email, event_id = as_str(data.get("recipient")), as_str(data.get("id"))
    if kind is None or not email or not event_id:
        return []
    headers = as_dict(as_dict(data.get("message")).get("headers"))
    message_id = as_str(headers.get("message-id")).strip("<>") or None
    status = as_dict(data.get("delivery-status"))
    detail = " ".join(x for x in (name, severity, reason, as_str(status.get("description"))) if x)
    return [
        MailEvent(
            "mailgun",
            event_id,
            kind,
            email,
            when(data.get("timestamp")),
            message_id,
            detail,
            hints(data.get("user-variables")),
        )
    ]


def receive(
    settings: Settings, headers: Mapping[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify, then parse: the events, and the signature's token under ``"_nonce"``
    (to be claimed with :func:`~digest.webhooks.common.claim_nonce` before applying)."""
    try:
        payload = load_json(body)
    except WebhookError:
        raise WebhookVerificationError("missing Mailgun signature") from None
    token = verify(settings, payload.get("signature") if isinstance(payload, dict) else None)
    return parse(payload), {"_nonce": token}
