"""Amazon SES through SNS: the topic allow-list, the certificate host and the RSA
signature, the subscription handshake, then the SES notification inside.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import WebhookError, WebhookVerificationError
from digest.webhooks.common import (
    Fetcher,
    as_dict,
    as_dicts,
    as_str,
    fresh,
    hints,
    load_json,
    when,
)
from digest.webhooks.events import EventKind, MailEvent

logger = logging.getLogger(__name__)


_SNS_HOST = re.compile(r"^sns\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_ARN_REGION = re.compile(r"^arn:aws(?:-cn|-us-gov)?:sns:([a-z0-9-]+):\d{12}:[\w-]{1,256}$")


def https_fetch(url: str) -> bytes:
    """GET an SNS URL (already checked against the SNS host pattern)."""
    response = requests.get(url, timeout=10, allow_redirects=False)
    response.raise_for_status()
    return response.content


_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """SNS's canonical form: "Key\\nvalue\\n" for each signed key present, in order."""
    keys = _SIGNED_KEYS.get(str(message.get("Type")))
    if keys is None:
        raise WebhookVerificationError("unknown SNS message type", status=400)
    out = []
    for key in keys:
        if key == "Subject" and message.get("Subject") is None:
            continue
        value = message.get(key)
        if not isinstance(value, str):
            raise WebhookVerificationError(f"SNS message lacks {key}")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode()


def sns_region(message: Mapping[str, Any]) -> str:
    match = _ARN_REGION.match(str(message.get("TopicArn") or ""))
    if not match:
        raise WebhookVerificationError("malformed SNS TopicArn")
    return match.group(1)


def allowed_sns_url(url: str, region: str) -> bool:
    """Only https://sns.<region>.amazonaws.com/… — never a host an attacker controls."""
    parts = urlsplit(url)
    match = _SNS_HOST.match(parts.hostname or "")
    return (
        parts.scheme == "https"
        and parts.port in (None, 443)
        and not parts.username
        and match is not None
        and match.group(1) == region
    )


def verify(
    settings: Settings,
    message: Mapping[str, Any],
    fetch: Fetcher,
    cache: dict[str, x509.Certificate],
) -> None:
    """Topic allow-list, certificate URL host, then the RSA signature (v1 SHA1, v2 SHA256)."""
    topics = {t.strip() for t in (settings.ses_sns_topic_arns or "").split(",") if t.strip()}
    if not topics:
        raise WebhookVerificationError(
            "webhook not configured: set DIGEST_SES_SNS_TOPIC_ARNS", status=403
        )
    # Any AWS account can sign SNS messages: only our own topics are believed.
    topic = message.get("TopicArn")
    if not isinstance(topic, str):
        raise WebhookVerificationError("SNS TopicArn must be a string", status=400)
    if topic not in topics:
        raise WebhookVerificationError("SNS topic is not ours", status=403)
    region = sns_region(message)
    cert_url = str(message.get("SigningCertURL") or "")
    if not allowed_sns_url(cert_url, region) or not cert_url.endswith(".pem"):
        raise WebhookVerificationError("SNS certificate URL is not an Amazon SNS host")
    version = str(message.get("SignatureVersion") or "")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303  (SNS SignatureVersion 1 is defined as SHA1)
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise WebhookVerificationError("unsupported SNS SignatureVersion")
    try:
        signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("malformed SNS signature") from None
    cert = cache.get(cert_url)
    if cert is None:
        try:
            cert = x509.load_pem_x509_certificate(fetch(cert_url))
        except Exception as exc:
            logger.warning("cannot load SNS certificate %s: %s", cert_url, exc)
            raise WebhookVerificationError("cannot load the SNS signing certificate") from None
        cache[cert_url] = cert
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookVerificationError("SNS certificate key is not RSA")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookVerificationError("bad SNS signature") from None
    fresh(str(_sns_time(message.get("Timestamp"))), settings, utcnow().timestamp())


def _sns_time(value: object) -> float:
    """SNS's signed ``Timestamp`` (ISO 8601, UTC) as unix seconds; NaN when it is not
    one, which :func:`fresh` refuses like any malformed timestamp."""
    if not isinstance(value, str):
        return math.nan
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    return moment.timestamp() if moment.tzinfo is not None else math.nan


def parse(notification: Any, sns_message_id: str) -> list[MailEvent]:
    if not isinstance(notification, dict):
        raise WebhookError("SES notification must be an object")
    name = as_str(notification.get("notificationType") or notification.get("eventType"))
    mail = as_dict(notification.get("mail"))
    message_id = as_str(mail.get("messageId")) or None
    meta = hints(mail.get("tags"))
    found: list[tuple[EventKind, str, Any, str]] = []
    if name == "Bounce":
        bounce = as_dict(notification.get("bounce"))
        permanent = bounce.get("bounceType") == "Permanent"
        kind = EventKind.BOUNCED_HARD if permanent else EventKind.BOUNCED_SOFT
        detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for r in as_dicts(bounce.get("bouncedRecipients")):
            found.append(
                (
                    kind,
                    as_str(r.get("emailAddress")),
                    bounce.get("timestamp"),
                    f"{detail} {as_str(r.get('diagnosticCode'))}".strip(),
                )
            )
    elif name == "Complaint":
        complaint = as_dict(notification.get("complaint"))
        for r in as_dicts(complaint.get("complainedRecipients")):
            found.append(
                (
                    EventKind.COMPLAINED,
                    as_str(r.get("emailAddress")),
                    complaint.get("timestamp"),
                    as_str(complaint.get("complaintFeedbackType")),
                )
            )
    elif name == "Delivery":
        delivery = as_dict(notification.get("delivery"))
        recipients = delivery.get("recipients")
        for email in recipients if isinstance(recipients, list) else []:
            found.append((EventKind.DELIVERED, as_str(email), delivery.get("timestamp"), ""))
    elif name == "DeliveryDelay":
        delay = as_dict(notification.get("deliveryDelay"))
        for r in as_dicts(delay.get("delayedRecipients")):
            found.append(
                (
                    EventKind.DEFERRED,
                    as_str(r.get("emailAddress")),
                    delay.get("timestamp"),
                    as_str(delay.get("delayType")),
                )
            )
    return [
        MailEvent(
            "ses", f"{sns_message_id}:{email}", kind, email, when(at), message_id, detail, meta
        )
        for kind, email, at, detail in found
        if email
    ]


def receive(
    settings: Settings, headers: Mapping[str, str], body: bytes, state: Any
) -> tuple[list[MailEvent], dict[str, Any]]:
    """Verify the SNS message, then: confirm a subscription (``{"confirmed": True}``),
    or parse the SES notification inside it.

    ``state.webhook_fetch`` (a ``url -> bytes`` callable) may replace the HTTPS fetcher
    SNS needs for certificates and subscription confirmations; the host checks run
    before any fetch either way."""
    try:
        message = load_json(body)
    except WebhookError:
        raise WebhookVerificationError("not an SNS message") from None
    if not isinstance(message, dict):
        raise WebhookVerificationError("not an SNS message")
    fetch = getattr(state, "webhook_fetch", None) or https_fetch
    cache = getattr(state, "sns_certificates", None)
    if cache is None:
        cache = state.sns_certificates = {}
    verify(settings, message, fetch, cache)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL") or "")
        if not allowed_sns_url(url, sns_region(message)):
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
    notification = load_json(str(message.get("Message") or "").encode())
    return parse(notification, str(message["MessageId"])), {}
