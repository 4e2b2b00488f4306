"""SendGrid event webhook: ECDSA P-256 signatures made with a key generated here."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, event_count, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # signed timestamps

SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def signed(key: ec.EllipticCurvePrivateKey, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIG: base64.b64encode(signature).decode(),
        TS: stamp,
        "Content-Type": "application/json",
    }


def events(*items: dict[str, Any]) -> bytes:
    return json.dumps(list(items)).encode()


def item(email: str, event: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "event": event,
        "sg_event_id": event_id,
        "timestamp": 1795000000,
        "sg_message_id": "abc123.filterdrecv-1.2",
        **extra,
    }


def setup(settings: Settings, engine: Engine) -> tuple[TestClient, ec.EllipticCurvePrivateKey]:
    private, public = keypair()
    add_reader(engine, "b@example.com")
    add_reader(engine, "c@example.com")
    return client_for(settings, engine, sendgrid_webhook_public_key=public), private


def test_signed_batch_is_applied_and_a_replay_changes_nothing(
    settings: Settings, engine: Engine
) -> None:
    client, key = setup(settings, engine)
    body = events(
        item("b@example.com", "bounce", "ev-1", type="bounce", status="5.1.1", digest_issue="4"),
        item("c@example.com", "spamreport", "ev-2"),
        item("c@example.com", "open", "ev-3"),
    )
    answer = client.post("/webhooks/sendgrid", content=body, headers=signed(key, body))
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == 2
    assert status_of(engine, "b@example.com") == "bounced"
    assert status_of(engine, "c@example.com") == "complained"
    again = client.post("/webhooks/sendgrid", content=body, headers=signed(key, body))
    assert again.json()["duplicates"] == 2 and event_count(engine) == 2


def test_forged_resigned_stale_and_unsigned_are_refused(settings: Settings, engine: Engine) -> None:
    client, key = setup(settings, engine)
    body = events(item("b@example.com", "bounce", "ev-9", type="bounce"))
    forged = body.replace(b"b@example.com", b"c@example.com")
    other_key, _ = keypair()
    attempts = [
        (forged, signed(key, body)),  # payload changed after signing
        (body, signed(other_key, body)),  # re-signed with someone else's key
        (body, signed(key, body, ts=int(time.time()) - 3600)),  # captured an hour ago
        (body, {"Content-Type": "application/json"}),  # unsigned
        (body, {**signed(key, body), SIG: "bm90IGEgc2lnbmF0dXJl"}),  # garbage signature
    ]
    for content, headers in attempts:
        answer = client.post("/webhooks/sendgrid", content=content, headers=headers)
        assert answer.status_code == 401, answer.text
    assert event_count(engine) == 0
    assert status_of(engine, "b@example.com") == "active"
    assert status_of(engine, "c@example.com") == "active"


def test_blocked_is_soft_and_deferred_is_recorded(settings: Settings, engine: Engine) -> None:
    client, key = setup(settings, engine)
    body = events(
        item("b@example.com", "bounce", "ev-20", type="blocked"),
        item("b@example.com", "deferred", "ev-21"),
        item("c@example.com", "dropped", "ev-22", reason="Unsubscribed Address"),
    )
    answer = client.post("/webhooks/sendgrid", content=body, headers=signed(key, body))
    assert answer.json()["recorded"] == 3
    assert status_of(engine, "b@example.com") == "active"  # one soft bounce is not enough
    assert status_of(engine, "c@example.com") == "unsubscribed"


def test_unconfigured_or_bad_key_is_403(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "b@example.com")
    key, _ = keypair()
    body = events(item("b@example.com", "bounce", "ev-30"))
    for extra in ({}, {"sendgrid_webhook_public_key": "not base64 der"}):
        client = client_for(settings, engine, **extra)
        assert (
            client.post("/webhooks/sendgrid", content=body, headers=signed(key, body)).status_code
            == 403
        )
