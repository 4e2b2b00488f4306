"""Resend against a local server that checks ``/emails/batch`` and keeps Resend's
idempotency record, so a batch retried after a timeout is proven not to go out twice."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from provider_server import (
    Captured,
    ProviderServer,
    Reply,
    configure,
    issue_message,
    recipients,
)

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.transports.base import SendStatus
from digest.transports.resend import ResendTransport

KEY = "re_test_key"


class FakeResend:
    """Resend's batch endpoint with its idempotency record and permissive validation."""

    def __init__(self, hang_first: bool = False) -> None:
        self.delivered: list[str] = []
        self.keys: dict[str, Reply] = {}
        self.hang_first = hang_first
        self.lock = threading.Lock()

    def __call__(self, req: Captured) -> Reply:
        if req.path != "/emails/batch" or req.headers["Authorization"] != f"Bearer {KEY}":
            return Reply(401, {"name": "validation_error", "message": "API key is invalid"})
        key = req.headers["Idempotency-Key"]
        with self.lock:
            if key in self.keys:
                return self.keys[key]
            batch: list[dict[str, Any]] = req.json()
            if len(batch) > 100:
                return Reply(422, {"message": "batch larger than 100"})
            data, errors = [], []
            for i, email in enumerate(batch):
                if "@" not in email["to"][0]:
                    errors.append({"index": i, "message": "Invalid `to` field."})
                else:
                    self.delivered.append(email["to"][0])
                    data.append({"id": f"re-{len(self.delivered)}"})
            reply = Reply(200, {"data": data, "errors": errors})
            self.keys[key] = reply
            if self.hang_first:
                self.hang_first = False
                return Reply(hang=True)
            return reply


def transport_for(settings: Settings, url: str, **kw: object) -> ResendTransport:
    return ResendTransport(configure(settings, resend_api_key=KEY, resend_base_url=url, **kw))


def test_exact_request(settings: Settings) -> None:
    fake = FakeResend()
    with ProviderServer(fake) as server:
        transport = transport_for(settings, server.url)
        message, rcpts = issue_message(transport.settings), recipients(3)
        with transport:
            results = transport.send_batch(message, rcpts)
    assert [(r.status, r.provider_id) for r in results] == [
        (SendStatus.SENT, "re-1"),
        (SendStatus.SENT, "re-2"),
        (SendStatus.SENT, "re-3"),
    ]
    (req,) = server.requests
    assert req.headers["x-batch-validation"] == "permissive"
    assert req.headers["Idempotency-Key"].startswith("digest-7-")
    for entry, rcpt in zip(req.json(), rcpts, strict=True):
        assert entry["to"] == [message.to_header(rcpt)]
        assert entry["headers"]["Message-ID"] == message.message_id(rcpt)
        assert entry["headers"]["List-Unsubscribe"] == message.list_unsubscribe(rcpt)
        assert entry["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert entry["html"] == message.html_for(rcpt)
        assert {"name": "digest_delivery", "value": str(rcpt.delivery_id)} in entry["tags"]


def test_idempotency_key_depends_on_issue_and_batch(settings: Settings) -> None:
    transport = transport_for(settings, "http://127.0.0.1:9")
    message = issue_message(transport.settings)
    key = transport.idempotency_key
    assert key(message, recipients(3)) == key(message, recipients(3))
    assert key(message, recipients(3)) != key(message, recipients(3, start=2))
    assert key(message, recipients(3)) != key(issue_message(transport.settings, 8), recipients(3))
    assert len(key(message, recipients(100))) <= 256


def test_timeout_then_retry_is_answered_from_the_idempotency_record(settings: Settings) -> None:
    fake = FakeResend(hang_first=True)
    with ProviderServer(fake) as server:
        transport = transport_for(settings, server.url, http_timeout=0.3)
        message, rcpts = issue_message(transport.settings), recipients(3)
        with transport:
            with pytest.raises(TransientTransportError, match="idempotency key"):
                transport.send_batch(message, rcpts)
            results = transport.send_batch(message, rcpts)
    assert len(server.requests) == 2
    assert (
        server.requests[0].headers["Idempotency-Key"]
        == (server.requests[1].headers["Idempotency-Key"])
    )
    assert len(fake.delivered) == 3  # not 6: the retry did not send again
    assert [r.provider_id for r in results] == ["re-1", "re-2", "re-3"]


def test_permissive_batch_fails_only_the_rejected_entry(settings: Settings) -> None:
    rcpts = recipients(3)
    rcpts[1] = Recipient(2, "broken", "", 1002)
    with ProviderServer(FakeResend()) as server:
        transport = transport_for(settings, server.url)
        with transport:
            results = transport.send_batch(issue_message(transport.settings), rcpts)
    assert [(r.status, r.provider_id) for r in results] == [
        (SendStatus.SENT, "re-1"),
        (SendStatus.FAILED, None),
        (SendStatus.SENT, "re-2"),
    ]


@pytest.mark.parametrize(
    ("reply", "error", "retry_after"),
    [
        (
            Reply(429, {"message": "Too many requests"}, {"retry-after": "2"}),
            TransientTransportError,
            2.0,
        ),
        (
            Reply(429, {"message": "Too many requests"}, {"ratelimit-reset": "4"}),
            TransientTransportError,
            4.0,
        ),
        (
            Reply(409, {"name": "concurrent_idempotent_requests", "message": "concurrent"}),
            TransientTransportError,
            5.0,
        ),
        (Reply(500, {"message": "internal"}), TransientTransportError, None),
        (Reply(401, {"message": "API key is invalid"}), TransportConfigError, None),
        (Reply(403, {"message": "domain not verified"}), TransportConfigError, None),
        (Reply(422, {"message": "Invalid `from` field."}), TransportConfigError, None),
    ],
)
def test_whole_request_answers(
    settings: Settings, reply: Reply, error: type, retry_after: float | None
) -> None:
    with ProviderServer(lambda req: reply) as server:
        transport = transport_for(settings, server.url)
        with transport, pytest.raises(error) as info:
            transport.send_batch(issue_message(transport.settings), recipients(2))
    if retry_after is not None:
        assert info.value.retry_after == retry_after
    assert transport.max_batch == 100
