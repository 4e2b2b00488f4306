"""SendGrid against a local server that checks ``/v3/mail/send`` exactly and answers
like SendGrid: 202 + X-Message-Id, 400 naming a personalization, 401/403, 429, 5xx."""

from __future__ import annotations

import time

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
from digest.mail.placeholders import placeholder
from digest.transports.base import SendStatus
from digest.transports.sendgrid import SendGridTransport

KEY = "SG.test-key"


def sendgrid(req: Captured) -> Reply:
    if req.path != "/v3/mail/send" or req.headers["Authorization"] != f"Bearer {KEY}":
        return Reply(401, {"errors": [{"message": "authorization required", "field": None}]})
    body = req.json()
    people = body["personalizations"]
    if not 1 <= len(people) <= 1000:
        return Reply(400, {"errors": [{"message": "too many", "field": "personalizations"}]})
    bad = [
        {
            "message": "Does not contain a valid address.",
            "field": f"personalizations.{i}.to.0.email",
        }
        for i, p in enumerate(people)
        if p["to"][0]["email"].startswith("invalid@")
    ]
    if bad:
        return Reply(400, {"errors": bad})
    return Reply(202, b"", {"X-Message-Id": f"sg{len(people)}xyz"})


def transport_for(settings: Settings, url: str) -> SendGridTransport:
    return SendGridTransport(configure(settings, sendgrid_api_key=KEY, sendgrid_base_url=url))


def render(body: dict, index: int, kind: str) -> str:
    """What SendGrid does with substitutions: replace each key in the content."""
    content = next(c["value"] for c in body["content"] if c["type"] == kind)
    for key, value in body["personalizations"][index]["substitutions"].items():
        content = content.replace(key, value)
    return content


def test_one_body_and_a_personalization_per_recipient(settings: Settings) -> None:
    with ProviderServer(sendgrid) as server:
        transport = transport_for(settings, server.url)
        message, rcpts = issue_message(transport.settings), recipients(3)
        with transport:
            results = transport.send_batch(message, rcpts)
    assert [(r.status, r.provider_id) for r in results] == [(SendStatus.SENT, "sg3xyz")] * 3
    (req,) = server.requests
    body = req.json()
    assert body["from"] == {"email": "digest@verdicts.test", "name": "Weekly AI Tool Verdicts"}
    assert len(body["content"]) == 2 and [c["type"] for c in body["content"]] == [
        "text/plain",
        "text/html",
    ]
    assert placeholder("greeting") in body["content"][0]["value"]
    assert body["headers"] == {
        "List-Id": message.list_id,
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    for i, rcpt in enumerate(rcpts):
        person = body["personalizations"][i]
        assert person["to"][0]["email"] == rcpt.email
        assert person["headers"]["Message-ID"] == message.message_id(rcpt)
        assert person["headers"]["List-Unsubscribe"] == message.list_unsubscribe(rcpt)
        assert person["custom_args"]["digest_delivery"] == str(rcpt.delivery_id)
        assert render(body, i, "text/html") == message.html_for(rcpt)
        assert render(body, i, "text/plain") == message.text_for(rcpt)
    # A display name with a comma or quote is quoted for SendGrid.
    assert body["personalizations"][1]["to"][0]["name"] == '"Zoë, \\"Q\\""'


def test_rejected_recipient_fails_alone_and_the_rest_are_sent(settings: Settings) -> None:
    rcpts = recipients(4)
    rcpts[2] = Recipient(3, "invalid@example.com", "", 1003)
    with ProviderServer(sendgrid) as server:
        transport = transport_for(settings, server.url)
        with transport:
            results = transport.send_batch(issue_message(transport.settings), rcpts)
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.SENT,
        SendStatus.FAILED,
        SendStatus.SENT,
    ]
    assert "valid address" in (results[2].error or "")
    assert [len(r.json()["personalizations"]) for r in server.requests] == [4, 3]


def test_batch_limit(settings: Settings) -> None:
    with ProviderServer(sendgrid) as server:
        transport = transport_for(settings, server.url)
        assert transport.max_batch == 1000
        with transport:
            results = transport.send_batch(issue_message(transport.settings), recipients(1000))
            with pytest.raises(ValueError, match="at most 1000"):
                transport.send_batch(issue_message(transport.settings), recipients(1001))
    assert len(results) == 1000 and len(server.requests) == 1


def test_rate_limit_reset_header_sets_the_wait(settings: Settings) -> None:
    reset = str(int(time.time()) + 30)
    reply = Reply(429, {"errors": [{"message": "too many requests"}]}, {"X-RateLimit-Reset": reset})
    with ProviderServer(lambda req: reply) as server:
        transport = transport_for(settings, server.url)
        with transport, pytest.raises(TransientTransportError) as info:
            transport.send_batch(issue_message(transport.settings), recipients(2))
    assert info.value.retry_after is not None and 20 <= info.value.retry_after <= 31


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_or_sender_rejected(settings: Settings, status: int) -> None:
    reply = Reply(
        status,
        {"errors": [{"message": "The from address does not match a verified Sender Identity."}]},
    )
    with ProviderServer(lambda req: reply) as server:
        transport = transport_for(settings, server.url)
        with transport, pytest.raises(TransportConfigError, match="Sender Identity"):
            transport.send_batch(issue_message(transport.settings), recipients(2))


def test_server_error_retries_but_gateway_timeout_is_uncertain(settings: Settings) -> None:
    with ProviderServer(lambda req: Reply(500, b"oops")) as server:
        transport = transport_for(settings, server.url)
        with transport, pytest.raises(TransientTransportError):
            transport.send_batch(issue_message(transport.settings), recipients(2))
    with ProviderServer(lambda req: Reply(504, b"upstream timed out")) as server:
        transport = transport_for(settings, server.url)
        with transport:
            results = transport.send_batch(issue_message(transport.settings), recipients(2))
    assert all(
        r.status is SendStatus.SENT and "outcome unknown" in (r.error or "") for r in results
    )


def test_read_timeout_is_not_resent(settings: Settings) -> None:
    with ProviderServer(lambda req: Reply(hang=True)) as server:
        transport = SendGridTransport(
            configure(
                settings, sendgrid_api_key=KEY, sendgrid_base_url=server.url, http_timeout=0.3
            )
        )
        with transport:
            results = transport.send_batch(issue_message(transport.settings), recipients(2))
    assert len(server.requests) == 1
    assert all("outcome unknown" in (r.error or "") for r in results)
