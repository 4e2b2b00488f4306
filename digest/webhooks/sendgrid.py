"""SendGrid (Twilio) Event Webhook: ECDSA-signed batches of events."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.webhooks.common import as_str, configured_secret, fresh, hints, load_json, when
from digest.webhooks.events import EventKind, MailEvent

logger = logging.getLogger(__name__)


def verify(
    settings: Settings, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """ECDSA P-256 / SHA-256 over ``timestamp + payload``, public key as base64 DER."""
    key_b64 = configured_secret(
        settings.sendgrid_webhook_public_key, "DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY"
    )
    try:
        key = load_der_public_key(base64.b64decode(key_b64))
    except (ValueError, binascii.Error) as exc:
        raise WebhookVerificationError(
            f"DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key: {exc}",
            status=403,
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookVerificationError("the SendGrid key is not an EC key", status=403)
    signature = headers.get("x-twilio-email-event-webhook-signature") or ""
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp") or ""
    if not signature or not timestamp:
        raise WebhookVerificationError("missing SendGrid signature headers")
    fresh(timestamp, settings, now)
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError, binascii.Error):
        raise WebhookVerificationError("bad SendGrid signature") from None


def parse(payload: Any) -> list[MailEvent]:
    if not isinstance(payload, list):
        raise WebhookError("SendGrid payload must be a list of events")
    events = []
    for item in payload:
        if not isinstance(item, dict):
            continue
        name, reason = as_str(item.get("event")), as_str(item.get("reason"))
        kind: EventKind | None = {
            "delivered": EventKind.DELIVERED,
            "deferred": EventKind.DEFERRED,
            "spamreport": EventKind.COMPLAINED,
            "unsubscribe": EventKind.UNSUBSCRIBED,
            "group_unsubscribe": EventKind.UNSUBSCRIBED,
            "blocked": EventKind.BOUNCED_SOFT,
        }.get(name)
        if name == "bounce":
            # "blocked" bounces are the receiver refusing for now (reputation, content).
            blocked = as_str(item.get("type")) == "blocked"
            kind = EventKind.BOUNCED_SOFT if blocked else EventKind.BOUNCED_HARD
        elif name == "dropped":
            lowered = reason.lower()
            if "spam" in lowered:
                kind = EventKind.COMPLAINED
            elif "unsubscribe" in lowered:
                kind = EventKind.UNSUBSCRIBED
            elif "bounce" in lowered or "invalid" in lowered:
                kind = EventKind.BOUNCED_HARD
        email, event_id = as_str(item.get("email")), as_str(item.get("sg_event_id"))
        if kind is None or not email or not event_id:
            continue
        # sg_message_id is the X-Message-Id of the request plus a per-recipient suffix.
        message_id = as_str(item.get("sg_message_id")).split(".", 1)[0] or None
        detail = " ".join(x for x in (name, as_str(item.get("status")), reason) if x)
        events.append(
            MailEvent(
                "sendgrid",
                event_id,
                kind,
                email,
                when(item.get("timestamp")),
                message_id,
                detail,
                hints(item),
            )
        )
    return events


def receive(
    settings: Settings, headers: Mapping[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify, then parse: the events and anything extra for the answer."""
    verify(settings, headers, body)
    return parse(load_json(body)), {}
