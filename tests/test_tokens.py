"""Tokens in email links: opaque, authenticated, bound to subscriber and purpose."""

from __future__ import annotations

import base64
import struct
from datetime import timedelta

import pytest
from pydantic import SecretStr

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import (
    address_binding,
    binding_matches,
    make_token,
    new_nonce,
    read_claims,
    read_token,
)
from digest.exceptions import ConfigError, TokenError
from digest.mail.message import IssueMessage
from digest.web.app import create_app

pytestmark = pytest.mark.clock  # token expiry


def _id_encodings(subscriber_id: int) -> list[bytes]:
    # Layouts a leaky token could carry the id in (long enough not to match by chance).
    return [
        struct.pack(">Q", subscriber_id),
        struct.pack("<Q", subscriber_id),
        str(subscriber_id).encode().rjust(5, b"0"),
    ]


def test_round_trip_and_purpose(settings: Settings) -> None:
    token = make_token(settings, "unsubscribe", 42)
    assert read_token(settings, "unsubscribe", token) == 42
    with pytest.raises(TokenError):
        read_token(settings, "confirm", token)
    confirm = make_token(settings, "confirm", 42, issued_at=utcnow())
    with pytest.raises(TokenError):
        read_token(settings, "unsubscribe", confirm)
    with pytest.raises(ValueError):
        make_token(settings, "admin", 42)


def test_tokens_are_opaque(settings: Settings) -> None:
    """Nothing in the token reveals the id: not in clear, not in base64 of any layout,
    and neighbouring ids give unrelated tokens."""
    for sid in (1, 2, 7, 12345, 2**40 + 3):
        token = make_token(settings, "unsubscribe", sid)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        for encoding in _id_encodings(sid):
            assert encoding not in raw
            assert base64.urlsafe_b64encode(encoding).rstrip(b"=").decode() not in token
    a, b = make_token(settings, "unsubscribe", 1), make_token(settings, "unsubscribe", 2)
    common_prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y), len(a))
    assert common_prefix < 4


def test_forged_and_altered_tokens_are_refused(settings: Settings) -> None:
    token = make_token(settings, "unsubscribe", 5)
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    other_key = settings.model_copy(
        update={"secret_key": SecretStr("another-secret-0123456789abcdef")}
    )
    for bad in (
        flipped,
        token[:-2],
        token + "AA",
        "",
        "x" * 500,
        "../../etc/passwd",
        make_token(other_key, "unsubscribe", 5),
        "%00" + token,
    ):
        with pytest.raises(TokenError):
            read_token(settings, "unsubscribe", bad)


def test_confirm_tokens_expire_unsubscribe_tokens_do_not(settings: Settings) -> None:
    old = utcnow() - timedelta(hours=73)
    expired = make_token(settings, "confirm", 9, issued_at=old)
    with pytest.raises(TokenError, match="expired"):
        read_claims(settings, "confirm", expired, max_age=72 * 3600)
    fresh = make_token(settings, "confirm", 9, issued_at=utcnow() - timedelta(hours=71))
    assert read_claims(settings, "confirm", fresh, max_age=72 * 3600).subscriber_id == 9
    # An unsubscribe token carries no time: it works however old the email is, and a
    # check that demands an expiry refuses it rather than treating it as fresh.
    unsub = make_token(settings, "unsubscribe", 9)
    assert read_claims(settings, "unsubscribe", unsub).issued_at is None
    with pytest.raises(TokenError):
        read_claims(settings, "unsubscribe", unsub, max_age=60)


def test_bindings(settings: Settings) -> None:
    nonce = new_nonce()
    token = make_token(settings, "confirm", 3, binding=bytes.fromhex(nonce), issued_at=utcnow())
    claims = read_claims(settings, "confirm", token, max_age=60)
    assert binding_matches(bytes.fromhex(nonce), claims)
    assert not binding_matches(bytes.fromhex(new_nonce()), claims)
    assert address_binding(settings, "A@Example.com") == address_binding(settings, "a@example.com")
    assert address_binding(settings, "a@example.com") != address_binding(settings, "b@example.com")


def test_digest_links_are_bound_to_the_address(settings: Settings) -> None:
    message = IssueMessage(
        issue_id=1, week="2026-W47", subject="s", html="<p>x</p>", text="x", settings=settings
    )
    ada = Recipient(7, "ada@example.com", "Ada")
    url = message.unsubscribe_url(ada)
    assert url == message.unsubscribe_url(ada)  # deterministic: resends carry the same link
    token = url.rsplit("/", 1)[1]
    claims = read_claims(settings, "unsubscribe", token)
    assert claims.subscriber_id == 7
    assert binding_matches(address_binding(settings, "ada@example.com"), claims)
    # The same row id later given to someone else does not match the old link.
    assert not binding_matches(address_binding(settings, "eve@example.com"), claims)


@pytest.mark.parametrize("secret", [None, "changeme", "secret", "short-0123"])
def test_app_refuses_missing_or_placeholder_secret(settings: Settings, secret: str | None) -> None:
    bad = settings.model_copy(
        update={"secret_key": SecretStr(secret) if secret is not None else None}
    )
    with pytest.raises(ConfigError):
        create_app(bad)
    demo = bad.model_copy(update={"demo": True})
    assert create_app(demo).state.settings.demo
