"""Postmark: basic auth given in the webhook URL; bounce, spam complaint, delivery and
subscription-change records.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.webhooks.common import as_str, configured_secret, hints, load_json, when
from digest.webhooks.events import EventKind, MailEvent

logger = logging.getLogger(__name__)


def verify(settings: Settings, headers: Mapping[str, str]) -> None:
    """Basic auth, given to Postmark in the webhook URL (https://user:pass@host/…)."""
    user = configured_secret(settings.postmark_webhook_user, "DIGEST_POSTMARK_WEBHOOK_USER")
    password = configured_secret(
        settings.postmark_webhook_password, "DIGEST_POSTMARK_WEBHOOK_PASSWORD"
    )
    scheme, _, value = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookVerificationError("basic authentication required")
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("malformed basic authentication") from None
    expected = f"{user}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise WebhookVerificationError("wrong webhook credentials")


_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_SOFT = {
    "SoftBounce",
    "Transient",
    "DnsError",
    "InboxFull",
    "Blocked",
    "DMARCPolicy",
    "ChallengeVerification",
    "Unknown",
}


def parse(payload: Any) -> list[MailEvent]:
    if not isinstance(payload, dict):
        raise WebhookError("Postmark payload must be an object")
    record = as_str(payload.get("RecordType"))
    message_id = as_str(payload.get("MessageID")) or None
    meta = hints(payload.get("Metadata"))
    kind: EventKind | None = None
    email = event_id = detail = ""
    at: Any = None
    if record == "Bounce":
        bounce_type = as_str(payload.get("Type"))
        if bounce_type == "SpamComplaint":
            kind = EventKind.COMPLAINED
        elif bounce_type == "Unsubscribe":
            kind = EventKind.UNSUBSCRIBED
        elif bounce_type in _POSTMARK_HARD:
            kind = EventKind.BOUNCED_HARD
        elif bounce_type in _POSTMARK_SOFT:
            kind = EventKind.BOUNCED_SOFT
        email, event_id = as_str(payload.get("Email")), f"Bounce:{payload.get('ID')}"
        at, detail = (
            payload.get("BouncedAt"),
            f"{bounce_type}: {as_str(payload.get('Description'))}",
        )
    elif record == "SpamComplaint":
        kind, email = EventKind.COMPLAINED, as_str(payload.get("Email"))
        event_id, at, detail = f"SpamComplaint:{payload.get('ID')}", payload.get("BouncedAt"), ""
    elif record == "Delivery":
        kind, email = EventKind.DELIVERED, as_str(payload.get("Recipient"))
        event_id = f"Delivery:{message_id}:{email}"
        at, detail = payload.get("DeliveredAt"), as_str(payload.get("Details"))
    elif record == "SubscriptionChange" and payload.get("SuppressSending") is True:
        reason = as_str(payload.get("SuppressionReason"))
        kind = {"HardBounce": EventKind.BOUNCED_HARD, "SpamComplaint": EventKind.COMPLAINED}.get(
            reason, EventKind.UNSUBSCRIBED
        )
        email = as_str(payload.get("Recipient"))
        event_id = f"SubscriptionChange:{message_id}:{email}:{payload.get('ChangedAt')}"
        at, detail = payload.get("ChangedAt"), f"suppressed at Postmark: {reason}"
    if kind is None or not email:
        return []
    return [MailEvent("postmark", event_id, kind, email, when(at), message_id, detail, meta)]


def receive(
    settings: Settings, headers: Mapping[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify, then parse: the events and anything extra for the answer."""
    verify(settings, headers)
    return parse(load_json(body)), {}
