"""Resend: Svix-signed events (email.* and contact.updated)."""

from __future__ import annotations

import base64
import binascii
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


def verify(
    settings: Settings, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str:
    """Svix: base64 HMAC-SHA256 of ``id.timestamp.body``; returns the message id."""
    secret = configured_secret(settings.resend_webhook_secret, "DIGEST_RESEND_WEBHOOK_SECRET")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError(
            "DIGEST_RESEND_WEBHOOK_SECRET must look like whsec_<base64>", status=403
        ) from None
    msg_id = headers.get("svix-id") or ""
    timestamp = headers.get("svix-timestamp") or ""
    signatures = headers.get("svix-signature") or ""
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("missing Svix signature headers")
    fresh(timestamp, settings, now)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msg_id
    raise WebhookVerificationError("bad Svix signature")


def parse(payload: Any, svix_id: str) -> list[MailEvent]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise WebhookError("Resend payload lacks data")
    name, data = as_str(payload.get("type")), payload["data"]
    kind: EventKind | None = {
        "email.delivered": EventKind.DELIVERED,
        "email.delivery_delayed": EventKind.DEFERRED,
        "email.complained": EventKind.COMPLAINED,
    }.get(name)
    detail = name
    if name == "email.bounced":
        bounce = as_dict(data.get("bounce"))
        permanent = as_str(bounce.get("type")) == "Permanent"
        kind = EventKind.BOUNCED_HARD if permanent else EventKind.BOUNCED_SOFT
        detail = f"{bounce.get('type')}/{bounce.get('subType')}: {as_str(bounce.get('message'))}"
    to = data.get("to")
    emails = [e for e in (to if isinstance(to, list) else [to]) if isinstance(e, str) and e]
    if name == "contact.updated" and data.get("unsubscribed") is True:
        kind, emails = EventKind.UNSUBSCRIBED, [as_str(data.get("email"))]
    if kind is None:
        return []
    message_id = as_str(data.get("email_id")) or None
    at = when(payload.get("created_at"))
    return [
        MailEvent(
            "resend",
            f"{svix_id}:{email}",
            kind,
            email,
            at,
            message_id,
            detail,
            hints(data.get("tags")),
        )
        for email in emails
        if email
    ]


def receive(
    settings: Settings, headers: Mapping[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify, then parse: the events and anything extra for the answer."""
    svix_id = verify(settings, headers, body)
    return parse(load_json(body), svix_id), {}
