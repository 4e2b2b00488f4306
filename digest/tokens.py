"""Signed, purpose-bound tokens for links in emails (unsubscribe, confirm).

A token names one subscriber and one purpose; a token made for one purpose is refused
for another, and anything altered fails the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from digest.config import Settings
from digest.exceptions import TokenError

logger = logging.getLogger(__name__)

PURPOSES = frozenset({"unsubscribe", "confirm"})


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(settings.signing_key(), salt=f"digest.{purpose}")


def make_token(settings: Settings, purpose: str, subscriber_id: int) -> str:
    return str(_serializer(settings, purpose).dumps(subscriber_id))


def read_token(
    settings: Settings, purpose: str, token: str, max_age: int | None = None
) -> int:
    """The subscriber id in ``token``; TokenError if forged, expired or for another purpose."""
    try:
        value = _serializer(settings, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenError("this link has expired") from exc
    except BadSignature as exc:
        raise TokenError("this link is not valid") from exc
    if not isinstance(value, int) or isinstance(value, bool):
        raise TokenError("this link is not valid")
    return value


def stable_digest(settings: Settings, *parts: object, length: int = 20) -> str:
    """A keyed, deterministic hex digest (Message-IDs, idempotency keys)."""
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(settings.signing_key().encode(), msg, hashlib.sha256).hexdigest()[:length]
