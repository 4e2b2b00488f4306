"""Resend webhooks (Svix signatures) with a ``whsec_`` secret generated here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, event_count, event_time, status_of

from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # event times and the soft-bounce window


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET = new_secret()


def signed(
    body: bytes, secret: str = SECRET, msg_id: str | None = None, ts: int | None = None
) -> dict[str, str]:
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    stamp = str(int(time.time()) if ts is None else ts)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    # Svix may list several signatures (key rotation): one valid one is enough.
    return {
        "svix-id": msg_id,
        "svix-timestamp": stamp,
        "svix-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} "
        f"v1,{base64.b64encode(mac).decode()}",
        "Content-Type": "application/json",
    }


def event(kind: str, email: str, **data: Any) -> bytes:
    return json.dumps(
        {
            "type": kind,
            "created_at": event_time(),
            "data": {"email_id": "re-1", "to": [email], "tags": {"digest_issue": "2"}, **data},
        }
    ).encode()


def test_bounce_and_complaint_apply_and_replays_change_nothing(
    settings: Settings, engine: Engine
) -> None:
    add_reader(engine, "r@example.com")
    add_reader(engine, "c@example.com")
    client = client_for(settings, engine, resend_webhook_secret=SECRET)
    body = event(
        "email.bounced",
        "r@example.com",
        bounce={"type": "Permanent", "subType": "General", "message": "no mailbox"},
    )
    headers = signed(body)
    answer = client.post("/webhooks/resend", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert status_of(engine, "r@example.com") == "bounced"
    assert client.post("/webhooks/resend", content=body, headers=headers).json()["duplicates"] == 1
    complaint = event("email.complained", "c@example.com")
    assert (
        client.post("/webhooks/resend", content=complaint, headers=signed(complaint)).status_code
        == 200
    )
    assert status_of(engine, "c@example.com") == "complained"
    assert event_count(engine) == 2


def test_transient_bounce_is_soft(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "r@example.com")
    client = client_for(settings, engine, resend_webhook_secret=SECRET, soft_bounce_limit=2)
    for n in (1, 2):
        body = event("email.bounced", "r@example.com", bounce={"type": "Transient"})
        client.post("/webhooks/resend", content=body, headers=signed(body))
        assert status_of(engine, "r@example.com") == ("bounced" if n == 2 else "active")


def test_forged_resigned_stale_and_unsigned_are_refused(settings: Settings, engine: Engine) -> None:
    add_reader(engine, "r@example.com")
    client = client_for(settings, engine, resend_webhook_secret=SECRET)
    body = event("email.bounced", "r@example.com", bounce={"type": "Permanent"})
    good = signed(body)
    attempts = [
        (body.replace(b"Permanent", b"Transient"), good),
        (body, signed(body, secret=new_secret())),
        (body, signed(body, ts=int(time.time()) - 3600)),
        (body, {**good, "svix-id": "msg_other"}),  # the id is part of what is signed
        (body, {"Content-Type": "application/json"}),
    ]
    for content, headers in attempts:
        assert client.post("/webhooks/resend", content=content, headers=headers).status_code == 401
    assert event_count(engine) == 0 and status_of(engine, "r@example.com") == "active"
    assert (
        client_for(settings, engine)
        .post("/webhooks/resend", content=body, headers=good)
        .status_code
        == 403
    )
