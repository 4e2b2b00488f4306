"""Mailgun webhooks: HMAC-SHA256 of timestamp + token with a signing key made here."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, event_count, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # signed timestamps

KEY = secrets.token_hex(16)


def payload(
    event: dict[str, Any], key: str = KEY, ts: int | None = None, token: str | None = None
) -> dict[str, Any]:
    stamp = str(int(time.time()) if ts is None else ts)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": stamp, "token": token, "signature": signature},
        "event-data": event,
    }


def failed(
    email: str,
    event_id: str,
    severity: str = "permanent",
    reason: str = "bounce",
) -> dict[str, Any]:
    return {
        "id": event_id,
        "event": "failed",
        "severity": severity,
        "reason": reason,
        "recipient": email,
        "timestamp": time.time(),
        "message": {"headers": {"message-id": "20261123.1.abc@mg.verdicts.test"}},
        "delivery-status": {"code": 550, "description": "No such user"},
        "user-variables": {"digest_issue": "3", "digest_delivery": "1"},
    }


def test_permanent_failure_suppresses_and_replays_change_nothing(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "m@example.com")
    client = client_for(settings, engine, mailgun_webhook_signing_key=KEY)
    body = payload(failed("m@example.com", "mg-1"))
    answer = client.post("/webhooks/mailgun", json=body)
    assert answer.status_code == 200, answer.text
    assert status_of(engine, "m@example.com") == "bounced"
    assert client.post("/webhooks/mailgun", json=body).json()["duplicates"] == 1
    # The same event re-signed with a fresh token is still the same event.
    assert (
        client.post("/webhooks/mailgun", json=payload(failed("m@example.com", "mg-1"))).json()[
            "duplicates"
        ]
        == 1
    )
    assert event_count(engine) == 1


def test_temporary_failure_is_deferred_and_complaint_suppresses(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "t@example.com")
    add_reader(engine, "c@example.com")
    client = client_for(settings, engine, mailgun_webhook_signing_key=KEY)
    temp = failed("t@example.com", "mg-2", severity="temporary", reason="generic")
    complaint = {
        "id": "mg-3",
        "event": "complained",
        "recipient": "c@example.com",
        "timestamp": time.time(),
    }
    for event in (temp, complaint):
        assert client.post("/webhooks/mailgun", json=payload(event)).status_code == 200
    assert status_of(engine, "t@example.com") == "active"
    assert status_of(engine, "c@example.com") == "complained"


def test_forged_resigned_stale_and_unsigned_are_refused(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "m@example.com")
    client = client_for(settings, engine, mailgun_webhook_signing_key=KEY)
    good = payload(failed("m@example.com", "mg-4"))
    tampered = {**good, "signature": {**good["signature"], "token": "another-token"}}
    attempts: list[Any] = [
        tampered,
        payload(failed("m@example.com", "mg-4"), key=secrets.token_hex(16)),
        payload(failed("m@example.com", "mg-4"), ts=int(time.time()) - 86400),
        {"event-data": failed("m@example.com", "mg-4")},
        ["not", "an", "object"],
    ]
    for body in attempts:
        assert client.post("/webhooks/mailgun", json=body).status_code == 401
    assert client.post("/webhooks/mailgun", content=b"garbage").status_code == 401
    assert event_count(engine) == 0 and status_of(engine, "m@example.com") == "active"
    unconfigured = client_for(settings, engine)
    assert unconfigured.post("/webhooks/mailgun", json=good).status_code == 403


def test_a_signature_goes_with_one_body_only(settings: Settings, engine: Engine) -> None:
    """Mailgun signs timestamp + token, not the body (issue 13, item 5): a captured
    signature replayed with another body is refused and changes nothing; the identical
    request again (a provider retry) is accepted as a duplicate."""
    add_reader(engine, "keep@example.com")
    add_reader(engine, "victim@example.com")
    client = client_for(settings, engine, mailgun_webhook_signing_key=KEY)
    genuine = payload(failed("keep@example.com", "mg-10", severity="temporary"))
    assert client.post("/webhooks/mailgun", json=genuine).status_code == 200
    assert client.post("/webhooks/mailgun", json=genuine).status_code == 200  # a retry
    forged = {"signature": genuine["signature"], "event-data": failed("victim@example.com", "x")}
    answer = client.post("/webhooks/mailgun", json=forged)
    assert answer.status_code == 401 and "already used" in answer.text
    assert status_of(engine, "victim@example.com") == "active"


def test_non_finite_timestamps_are_refused(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "n@example.com")
    client = client_for(settings, engine, mailgun_webhook_signing_key=KEY)
    for stamp in ("nan", "NaN", "inf", "-inf"):
        token = secrets.token_hex(25)
        signature = hmac.new(KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        body = {
            "signature": {"timestamp": stamp, "token": token, "signature": signature},
            "event-data": failed("n@example.com", f"mg-{stamp}"),
        }
        answer = client.post("/webhooks/mailgun", json=body)
        assert answer.status_code == 401 and "timestamp" in answer.text, stamp
    assert status_of(engine, "n@example.com") == "active"
