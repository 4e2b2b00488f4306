"""Each provider's webhook payload → :class:`digest.events.MailEvent` values.

Only called on verified payloads. Events we do not act on (opens, clicks, "sent")
are dropped here; malformed payloads raise :class:`~digest.exceptions.WebhookError`
(400) so the provider shows the failure instead of it vanishing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from digest.core import jsonsafe
from digest.core.clock import utcnow
from digest.events import EventKind, MailEvent
from digest.exceptions import WebhookError

logger = logging.getLogger(__name__)

HINT_KEYS = ("digest_issue", "digest_delivery")


def when(value: Any) -> datetime:
    """A provider timestamp (unix seconds or ISO 8601) as aware UTC; now if unreadable."""
    try:
        if isinstance(value, int | float) or (
            isinstance(value, str) and value.replace(".", "", 1).isdigit()
        ):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return utcnow()


def hints(source: Any) -> dict[str, str]:
    if not isinstance(source, dict):
        return {}
    out = {}
    for key in HINT_KEYS:
        value = source.get(key)
        if isinstance(value, list) and value:  # SES tags are lists of values
            value = value[0]
        if isinstance(value, str | int):
            out[key] = str(value)
    return out


def load_json(body: bytes) -> Any:
    try:
        return jsonsafe.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("body is not JSON", status=400) from None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# ---------------------------------------------------------------- Postmark

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


def postmark(payload: Any) -> list[MailEvent]:
    if not isinstance(payload, dict):
        raise WebhookError("Postmark payload must be an object")
    record = _str(payload.get("RecordType"))
    message_id = _str(payload.get("MessageID")) or None
    meta = hints(payload.get("Metadata"))
    kind: EventKind | None = None
    email = event_id = detail = ""
    at: Any = None
    if record == "Bounce":
        bounce_type = _str(payload.get("Type"))
        if bounce_type == "SpamComplaint":
            kind = EventKind.COMPLAINED
        elif bounce_type == "Unsubscribe":
            kind = EventKind.UNSUBSCRIBED
        elif bounce_type in _POSTMARK_HARD:
            kind = EventKind.BOUNCED_HARD
        elif bounce_type in _POSTMARK_SOFT:
            kind = EventKind.BOUNCED_SOFT
        email, event_id = _str(payload.get("Email")), f"Bounce:{payload.get('ID')}"
        at, detail = payload.get("BouncedAt"), f"{bounce_type}: {_str(payload.get('Description'))}"
    elif record == "SpamComplaint":
        kind, email = EventKind.COMPLAINED, _str(payload.get("Email"))
        event_id, at, detail = f"SpamComplaint:{payload.get('ID')}", payload.get("BouncedAt"), ""
    elif record == "Delivery":
        kind, email = EventKind.DELIVERED, _str(payload.get("Recipient"))
        event_id = f"Delivery:{message_id}:{email}"
        at, detail = payload.get("DeliveredAt"), _str(payload.get("Details"))
    elif record == "SubscriptionChange" and payload.get("SuppressSending") is True:
        reason = _str(payload.get("SuppressionReason"))
        kind = {"HardBounce": EventKind.BOUNCED_HARD, "SpamComplaint": EventKind.COMPLAINED}.get(
            reason, EventKind.UNSUBSCRIBED
        )
        email = _str(payload.get("Recipient"))
        event_id = f"SubscriptionChange:{message_id}:{email}:{payload.get('ChangedAt')}"
        at, detail = payload.get("ChangedAt"), f"suppressed at Postmark: {reason}"
    if kind is None or not email:
        return []
    return [MailEvent("postmark", event_id, kind, email, when(at), message_id, detail, meta)]


# ---------------------------------------------------------------- SendGrid


def sendgrid(payload: Any) -> list[MailEvent]:
    if not isinstance(payload, list):
        raise WebhookError("SendGrid payload must be a list of events")
    events = []
    for item in payload:
        if not isinstance(item, dict):
            continue
        name, reason = _str(item.get("event")), _str(item.get("reason"))
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
            blocked = _str(item.get("type")) == "blocked"
            kind = EventKind.BOUNCED_SOFT if blocked else EventKind.BOUNCED_HARD
        elif name == "dropped":
            lowered = reason.lower()
            if "spam" in lowered:
                kind = EventKind.COMPLAINED
            elif "unsubscribe" in lowered:
                kind = EventKind.UNSUBSCRIBED
            elif "bounce" in lowered or "invalid" in lowered:
                kind = EventKind.BOUNCED_HARD
        email, event_id = _str(item.get("email")), _str(item.get("sg_event_id"))
        if kind is None or not email or not event_id:
            continue
        # sg_message_id is the X-Message-Id of the request plus a per-recipient suffix.
        message_id = _str(item.get("sg_message_id")).split(".", 1)[0] or None
        detail = " ".join(x for x in (name, _str(item.get("status")), reason) if x)
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


# ---------------------------------------------------------------- Mailgun


def mailgun(payload: Any) -> list[MailEvent]:
    data = payload.get("event-data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise WebhookError("Mailgun payload lacks event-data")
    name, severity = _str(data.get("event")), _str(data.get("severity"))
    reason = _str(data.get("reason"))
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
    email, event_id = _str(data.get("recipient")), _str(data.get("id"))
    if kind is None or not email or not event_id:
        return []
    headers = _dict(_dict(data.get("message")).get("headers"))
    message_id = _str(headers.get("message-id")).strip("<>") or None
    status = _dict(data.get("delivery-status"))
    detail = " ".join(x for x in (name, severity, reason, _str(status.get("description"))) if x)
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


# ---------------------------------------------------------------- Resend


def resend(payload: Any, svix_id: str) -> list[MailEvent]:
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise WebhookError("Resend payload lacks data")
    name, data = _str(payload.get("type")), payload["data"]
    kind: EventKind | None = {
        "email.delivered": EventKind.DELIVERED,
        "email.delivery_delayed": EventKind.DEFERRED,
        "email.complained": EventKind.COMPLAINED,
    }.get(name)
    detail = name
    if name == "email.bounced":
        bounce = _dict(data.get("bounce"))
        permanent = _str(bounce.get("type")) == "Permanent"
        kind = EventKind.BOUNCED_HARD if permanent else EventKind.BOUNCED_SOFT
        detail = f"{bounce.get('type')}/{bounce.get('subType')}: {_str(bounce.get('message'))}"
    to = data.get("to")
    emails = [e for e in (to if isinstance(to, list) else [to]) if isinstance(e, str) and e]
    if name == "contact.updated" and data.get("unsubscribed") is True:
        kind, emails = EventKind.UNSUBSCRIBED, [_str(data.get("email"))]
    if kind is None:
        return []
    message_id = _str(data.get("email_id")) or None
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


# ---------------------------------------------------------------- SES (inside SNS)


def ses(notification: Any, sns_message_id: str) -> list[MailEvent]:
    if not isinstance(notification, dict):
        raise WebhookError("SES notification must be an object")
    name = _str(notification.get("notificationType") or notification.get("eventType"))
    mail = _dict(notification.get("mail"))
    message_id = _str(mail.get("messageId")) or None
    meta = hints(mail.get("tags"))
    found: list[tuple[EventKind, str, Any, str]] = []
    if name == "Bounce":
        bounce = _dict(notification.get("bounce"))
        permanent = bounce.get("bounceType") == "Permanent"
        kind = EventKind.BOUNCED_HARD if permanent else EventKind.BOUNCED_SOFT
        detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for r in _dicts(bounce.get("bouncedRecipients")):
            found.append(
                (
                    kind,
                    _str(r.get("emailAddress")),
                    bounce.get("timestamp"),
                    f"{detail} {_str(r.get('diagnosticCode'))}".strip(),
                )
            )
    elif name == "Complaint":
        complaint = _dict(notification.get("complaint"))
        for r in _dicts(complaint.get("complainedRecipients")):
            found.append(
                (
                    EventKind.COMPLAINED,
                    _str(r.get("emailAddress")),
                    complaint.get("timestamp"),
                    _str(complaint.get("complaintFeedbackType")),
                )
            )
    elif name == "Delivery":
        delivery = _dict(notification.get("delivery"))
        recipients = delivery.get("recipients")
        for email in recipients if isinstance(recipients, list) else []:
            found.append((EventKind.DELIVERED, _str(email), delivery.get("timestamp"), ""))
    elif name == "DeliveryDelay":
        delay = _dict(notification.get("deliveryDelay"))
        for r in _dicts(delay.get("delayedRecipients")):
            found.append(
                (
                    EventKind.DEFERRED,
                    _str(r.get("emailAddress")),
                    delay.get("timestamp"),
                    _str(delay.get("delayType")),
                )
            )
    return [
        MailEvent(
            "ses", f"{sns_message_id}:{email}", kind, email, when(at), message_id, detail, meta
        )
        for kind, email, at, detail in found
        if email
    ]
