"""Proof that a webhook request comes from the provider, each provider's own way.

Every check raises :class:`~digest.exceptions.WebhookVerificationError` — 403 when the
webhook has no secret configured (nothing can be verified, so nothing is accepted),
401 when the request is unsigned, forged, signed with another key or too old. All
comparisons of secrets are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import SecretStr
from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import WebhookVerificationError
from digest.store.models import WebhookNonce

logger = logging.getLogger(__name__)
N = WebhookNonce.__table__  # type: ignore[attr-defined]

#: Fetches a URL's body (SNS certificates, subscription confirmations); injectable.
Fetcher = Callable[[str], bytes]

_SNS_HOST = re.compile(r"^sns\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
_ARN_REGION = re.compile(r"^arn:aws(?:-cn|-us-gov)?:sns:([a-z0-9-]+):\d{12}:[\w-]{1,256}$")


def _secret(value: SecretStr | str | None, setting: str) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw:
        raise WebhookVerificationError(f"webhook not configured: set {setting}", status=403)
    return raw


def _fresh(timestamp: str, settings: Settings, now: float | None = None) -> None:
    """Refuse timestamps outside the allowed age: a captured request cannot be replayed
    later, and one replayed sooner is caught by its event id."""
    try:
        ts = float(timestamp)
    except (TypeError, ValueError):
        raise WebhookVerificationError("missing or malformed timestamp") from None
    if not math.isfinite(ts):  # "nan" compares false with everything: it passed the age check
        raise WebhookVerificationError("missing or malformed timestamp")
    now = time.time() if now is None else now
    if abs(now - ts) > settings.webhook_max_age_seconds:
        raise WebhookVerificationError("timestamp too old or in the future")


# ---------------------------------------------------------------- Postmark


def verify_postmark(settings: Settings, headers: Mapping[str, str]) -> None:
    """Basic auth, given to Postmark in the webhook URL (https://user:pass@host/…)."""
    user = _secret(settings.postmark_webhook_user, "DIGEST_POSTMARK_WEBHOOK_USER")
    password = _secret(settings.postmark_webhook_password, "DIGEST_POSTMARK_WEBHOOK_PASSWORD")
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


# ---------------------------------------------------------------- SendGrid


def verify_sendgrid(
    settings: Settings, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> None:
    """ECDSA P-256 / SHA-256 over ``timestamp + payload``, public key as base64 DER."""
    key_b64 = _secret(settings.sendgrid_webhook_public_key, "DIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY")
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
    _fresh(timestamp, settings, now)
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError, binascii.Error):
        raise WebhookVerificationError("bad SendGrid signature") from None


# ---------------------------------------------------------------- Mailgun


def verify_mailgun(settings: Settings, signature: Any, now: float | None = None) -> str:
    """HMAC-SHA256 of ``timestamp + token`` with the webhook signing key; returns the
    token, which the caller must :func:`claim_nonce` (the body is not signed)."""
    key = _secret(settings.mailgun_webhook_signing_key, "DIGEST_MAILGUN_WEBHOOK_SIGNING_KEY")
    if not isinstance(signature, dict):
        raise WebhookVerificationError("missing Mailgun signature")
    timestamp = str(signature.get("timestamp") or "")
    token = str(signature.get("token") or "")
    given = str(signature.get("signature") or "")
    if not (timestamp and token and given):
        raise WebhookVerificationError("incomplete Mailgun signature")
    _fresh(timestamp, settings, now)
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise WebhookVerificationError("bad Mailgun signature")
    return token


def claim_nonce(engine: Engine, provider: str, nonce: str, body: bytes, settings: Settings) -> None:
    """Record a signature's nonce with the body it came with; WebhookVerificationError
    if it was used before with a different body.

    Mailgun signs only timestamp + token, not the body: a captured signature would
    verify with any other body. Tokens are kept for twice the age window (older
    signatures fail the timestamp check anyway), so a token goes with one body only;
    the identical request again (a provider retry) passes, and its events are
    recognised by their ids."""
    digest = hashlib.sha256(body).hexdigest()
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            delete(N).where(
                N.c.seen_at < now - timedelta(seconds=2 * settings.webhook_max_age_seconds)
            )
        )
        dialect = conn.dialect.name
        row = {"provider": provider, "nonce": nonce[:200], "body_sha256": digest, "seen_at": now}
        if dialect in ("sqlite", "postgresql"):
            ins = sqlite_insert(N) if dialect == "sqlite" else postgresql_insert(N)
            added = conn.execute(
                ins.values(**row).on_conflict_do_nothing(index_elements=["provider", "nonce"])
            ).rowcount
        else:
            try:
                with conn.begin_nested():
                    added = conn.execute(insert(N).values(**row)).rowcount
            except IntegrityError:
                added = 0
        if not added:
            first = conn.execute(
                select(N.c.body_sha256).where(N.c.provider == provider, N.c.nonce == nonce[:200])
            ).scalar()
            if first != digest:
                raise WebhookVerificationError(
                    f"{provider} signature already used with another body (replay)"
                )


# ---------------------------------------------------------------- Resend (Svix)


def verify_svix(
    settings: Settings, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str:
    """Svix: base64 HMAC-SHA256 of ``id.timestamp.body``; returns the message id."""
    secret = _secret(settings.resend_webhook_secret, "DIGEST_RESEND_WEBHOOK_SECRET")
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
    _fresh(timestamp, settings, now)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msg_id
    raise WebhookVerificationError("bad Svix signature")


# ---------------------------------------------------------------- SES via SNS

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


def verify_sns(
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
    if message.get("TopicArn") not in topics:
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
