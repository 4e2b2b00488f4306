"""Postmark webhooks: basic auth from the URL, bounce/complaint/delivery records,
soft-bounce threshold, replays."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, event_count, event_time, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # event times and the soft-bounce window

AUTH = ("postmark-hook", "s3cret-hook-password")
CONFIG = {"postmark_webhook_user": AUTH[0], "postmark_webhook_password": AUTH[1]}
_ids = itertools.count(4_000_000)


def bounce(email: str, kind: str = "HardBounce", bounce_id: int | None = None) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "ID": bounce_id or next(_ids),
        "Type": kind,
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": email,
        "BouncedAt": event_time(),
        "Description": "The server was unable to deliver",
        "Metadata": {"digest_issue": "1"},
        "MessageStream": "broadcast",
    }


def test_unconfigured_webhook_refuses_everything(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "a@example.com")
    client = client_for(settings, engine)
    answer = client.post("/webhooks/postmark", json=bounce("a@example.com"), auth=AUTH)
    assert answer.status_code == 403
    assert status_of(engine, "a@example.com") == "active" and event_count(engine) == 0


def test_wrong_or_missing_credentials_change_nothing(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "a@example.com")
    client = client_for(settings, engine, **CONFIG)
    for auth in [None, (AUTH[0], "wrong"), ("other", AUTH[1])]:
        answer = client.post("/webhooks/postmark", json=bounce("a@example.com"), auth=auth)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert status_of(engine, "a@example.com") == "active" and event_count(engine) == 0


def test_hard_bounce_suppresses_and_a_replay_changes_nothing(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "a@example.com")
    client = client_for(settings, engine, **CONFIG)
    payload = bounce("a@example.com")
    first = client.post("/webhooks/postmark", json=payload, auth=AUTH)
    assert first.status_code == 200 and first.json()["recorded"] == 1
    assert status_of(engine, "a@example.com") == "bounced"
    again = client.post("/webhooks/postmark", json=payload, auth=AUTH)
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["recorded"] == 0
    assert event_count(engine) == 1


def test_complaint_and_subscription_change(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "c@example.com")
    add_reader(engine, "u@example.com")
    client = client_for(settings, engine, **CONFIG)
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": next(_ids),
        "Type": "SpamComplaint",
        "Email": "c@example.com",
        "MessageID": "m-1",
        "BouncedAt": event_time(),
    }
    change = {
        "RecordType": "SubscriptionChange",
        "MessageID": "m-2",
        "Recipient": "u@example.com",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "ChangedAt": event_time(),
    }
    for payload in (complaint, change):
        assert client.post("/webhooks/postmark", json=payload, auth=AUTH).status_code == 200
    assert status_of(engine, "c@example.com") == "complained"
    assert status_of(engine, "u@example.com") == "unsubscribed"


def test_soft_bounces_suppress_at_the_threshold(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "s@example.com")
    client = client_for(settings, engine, soft_bounce_limit=3, **CONFIG)
    for n in range(1, 4):
        answer = client.post(
            "/webhooks/postmark", json=bounce("s@example.com", "SoftBounce"), auth=AUTH
        )
        assert answer.status_code == 200
        assert status_of(engine, "s@example.com") == ("bounced" if n == 3 else "active")


def test_delivery_is_recorded_only_and_junk_is_refused(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "d@example.com")
    client = client_for(settings, engine, **CONFIG)
    delivered = {
        "RecordType": "Delivery",
        "MessageID": "m-9",
        "Recipient": "d@example.com",
        "DeliveredAt": event_time(),
        "Details": "250 OK",
    }
    assert client.post("/webhooks/postmark", json=delivered, auth=AUTH).json()["recorded"] == 1
    assert status_of(engine, "d@example.com") == "active"
    junk = client.post("/webhooks/postmark", content=b"{not json", auth=AUTH)
    assert junk.status_code == 400
    assert client.post("/webhooks/nope", json={}, auth=AUTH).status_code == 404
