"""Opaque, authenticated, purpose-bound tokens for links in emails (unsubscribe, confirm).

A token is AES-SIV (RFC 5297, deterministic authenticated encryption) of a 21-byte
claim — version, subscriber id, issue time, an 8-byte binding — with the purpose as
associated data, base64url-encoded (50 characters). Without ``DIGEST_SECRET_KEY``
nobody can read the subscriber id out of a link or make a link for someone else; a
token made for one purpose fails authentication for another; any altered character
fails too.

- **unsubscribe** tokens carry no issue time (they never expire: an old digest's
  one-click link must keep working) and bind to the subscriber's address, so a token
  minted before ``digest subscribers forget`` can never name a later subscriber who
  happens to get the same row id. Being deterministic, every copy of a recipient's
  message carries the same link (reproducible bytes, resends included).
- **confirm** tokens carry their issue time (they expire) and bind to a random nonce
  stored on the subscriber and cleared on use, which makes them single-use.

The key is derived from ``DIGEST_SECRET_KEY`` with HKDF. To rotate it without
breaking the links in emails already sent, move the old secret to
``DIGEST_SECRET_KEY_PREVIOUS``: new links are signed with the new key, and a link is
read with whichever key opens it (its address binding is checked with that key too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.exceptions import TokenError

logger = logging.getLogger(__name__)

PURPOSES = frozenset({"unsubscribe", "confirm", "click"})
BINDING_BYTES = 8
_VERSION = 1
_CLAIM = struct.Struct(">BQI")  # version, subscriber id, issued-at (unix seconds, 0 = none)
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_MAX_TOKEN_LEN = 200
#: Clock skew tolerated for a token "issued in the future" (several web workers).
_SKEW_SECONDS = 300


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says (``key`` is the derived key that opened it)."""

    subscriber_id: int
    binding: bytes
    issued_at: datetime | None
    key: bytes = field(default=b"", repr=False, compare=False)


@lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=64, salt=None, info=b"weekly-verdict-digest tokens v1"
    ).derive(secret.encode("utf-8"))


def _aad(purpose: str) -> list[bytes]:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return [b"digest-token", purpose.encode("ascii")]


def new_nonce() -> str:
    """A random single-use binding for a confirm token, stored hex-encoded."""
    return secrets.token_hex(BINDING_BYTES)


_ADDRESS = b"address\x1f"


def _address_text(email: str) -> bytes:
    return email.strip().lower().encode("utf-8")


def address_binding(settings: Settings, email: str) -> bytes:
    """The keyed 8-byte fingerprint of an address that unsubscribe tokens carry."""
    return _address_binding(_key(settings.signing_key()), email)


def _address_binding(key: bytes, email: str) -> bytes:
    return hmac.new(key, _ADDRESS + _address_text(email), hashlib.sha256).digest()[:BINDING_BYTES]


def address_matches(claims: TokenClaims, email: str) -> bool:
    """Whether an unsubscribe token was made for ``email`` (with the key that opened it)."""
    return binding_matches(_address_binding(claims.key, email), claims)


class TokenMinter:
    """Makes tokens for one purpose with the cipher and keys set up once.

    Setting up AES-SIV costs more than building the rest of a message, so a send makes
    one minter per issue; :func:`make_token` is the one-off form of the same thing.
    """

    def __init__(self, settings: Settings, purpose: str) -> None:
        key = _key(settings.signing_key())
        self._cipher = AESSIV(key)
        self._aad = _aad(purpose)
        self._address = hmac.new(key, _ADDRESS, hashlib.sha256)

    def make(
        self, subscriber_id: int, *, binding: bytes = b"", issued_at: datetime | None = None
    ) -> str:
        if not 0 <= subscriber_id < 2**63:
            raise ValueError("subscriber id out of range")
        if len(binding) > BINDING_BYTES:
            raise ValueError(f"binding longer than {BINDING_BYTES} bytes")
        stamp = int(issued_at.timestamp()) if issued_at is not None else 0
        claim = _CLAIM.pack(_VERSION, subscriber_id, stamp) + binding.ljust(BINDING_BYTES, b"\0")
        sealed = self._cipher.encrypt(claim, self._aad)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def for_address(self, subscriber_id: int, email: str) -> str:
        """A token bound to ``email`` (unsubscribe links): equals
        ``make_token(..., binding=address_binding(settings, email))``."""
        mac = self._address.copy()
        mac.update(_address_text(email))
        return self.make(subscriber_id, binding=mac.digest()[:BINDING_BYTES])


def make_token(
    settings: Settings,
    purpose: str,
    subscriber_id: int,
    *,
    binding: bytes = b"",
    issued_at: datetime | None = None,
) -> str:
    """An opaque token for ``subscriber_id`` and ``purpose``.

    ``issued_at`` makes the token expirable (``read_claims(max_age=…)``); ``binding``
    (at most 8 bytes) is returned by :func:`read_claims` for the caller to check.
    """
    return TokenMinter(settings, purpose).make(subscriber_id, binding=binding, issued_at=issued_at)


def read_claims(
    settings: Settings, purpose: str, token: str, max_age: int | None = None
) -> TokenClaims:
    """The claims in ``token``; TokenError if forged, altered, for another purpose, or
    (with ``max_age`` seconds) expired or never meant to expire."""
    aad = _aad(purpose)
    if not token or len(token) > _MAX_TOKEN_LEN or not set(token) <= _TOKEN_CHARS:
        raise TokenError("this link is not valid")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("this link is not valid") from exc
    claim, key = _open(settings, sealed, aad)
    if len(claim) != _CLAIM.size + BINDING_BYTES:
        raise TokenError("this link is not valid")
    version, subscriber_id, stamp = _CLAIM.unpack(claim[: _CLAIM.size])
    if version != _VERSION:
        raise TokenError("this link is not valid")
    issued_at = datetime.fromtimestamp(stamp, UTC) if stamp else None
    if max_age is not None:
        if issued_at is None:
            raise TokenError("this link is not valid")
        age = (utcnow() - issued_at).total_seconds()
        if age > max_age:
            raise TokenError("this link has expired")
        if age < -_SKEW_SECONDS:
            raise TokenError("this link is not valid")
    return TokenClaims(subscriber_id, claim[_CLAIM.size :], issued_at, key)


def _open(settings: Settings, sealed: bytes, aad: list[bytes]) -> tuple[bytes, bytes]:
    """The claim and the key that authenticates it: the current key, else the previous."""
    for secret in settings.verification_keys():
        key = _key(secret)
        try:
            return AESSIV(key).decrypt(sealed, aad), key
        except (InvalidTag, ValueError):
            continue
    raise TokenError("this link is not valid")


def read_token(settings: Settings, purpose: str, token: str, max_age: int | None = None) -> int:
    """The subscriber id in ``token``; TokenError if forged, expired or for another purpose."""
    return read_claims(settings, purpose, token, max_age).subscriber_id


def binding_matches(expected: bytes, claims: TokenClaims) -> bool:
    return hmac.compare_digest(expected.ljust(BINDING_BYTES, b"\0"), claims.binding)


def stable_digester(settings: Settings, *prefix: object) -> Callable[[object], str]:
    """The full hex ``stable_digest(settings, *prefix, last)`` as a function of
    ``last``, with the key and the prefix hashed once (Message-IDs are made per
    recipient)."""
    head = "".join(f"{p}\x1f" for p in prefix).encode()
    base = hmac.new(settings.signing_key().encode(), head, hashlib.sha256)

    def digest(last: object) -> str:
        mac = base.copy()
        mac.update(str(last).encode())
        return mac.hexdigest()

    return digest


def stable_digest(settings: Settings, *parts: object, length: int = 20) -> str:
    """A keyed, deterministic hex digest (Message-IDs, idempotency keys)."""
    *prefix, last = parts
    return stable_digester(settings, *prefix)(last)[:length]
