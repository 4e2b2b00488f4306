"""Mailgun against a local server that parses the multipart request, expands the
recipient-variables the way Mailgun does and answers like Mailgun."""

from __future__ import annotations

import base64
import json
import re

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
from digest.exceptions import ConfigError, TransientTransportError, TransportConfigError
from digest.transports import make_transport
from digest.transports.base import SendStatus
from digest.transports.mailgun import MailgunTransport

KEY = "key-mailgun-test"
DOMAIN = "mg.verdicts.test"
AUTH = "Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()
_VAR = re.compile(r"%recipient\.([^%]+)%")


def mailgun(req: Captured) -> Reply:
    if req.headers["Authorization"] != AUTH:
        return Reply(401, b"Forbidden")
    if req.path != f"/v3/{DOMAIN}/messages":
        return Reply(404, {"message": "Domain not found: " + req.path})
    fields = req.form()
    to = [v for k, v in fields if k == "to"]
    if len(to) > 1000:
        return Reply(400, {"message": "Too many recipients"})
    if any("invalid" in t for t in to):
        return Reply(
            400, {"message": "'to' parameter is not a valid address. please check documentation"}
        )
    return Reply(200, {"id": "<20261123.1.abc@mg.verdicts.test>", "message": "Queued. Thank you."})


def expand(req: Captured) -> dict[str, dict[str, str]]:
    """Each recipient's message as Mailgun builds it: every %recipient.KEY% filled in."""
    fields = req.form()
    variables = json.loads(dict(fields)["recipient-variables"])
    out = {}
    for address, values in variables.items():
        out[address] = {
            k: _VAR.sub(lambda m, v=values: v[m.group(1)], value)  # type: ignore[misc]
            for k, value in fields
            if k != "to" and k != "recipient-variables"
        }
    return out


def mg_settings(settings: Settings, url: str, **kw: object) -> Settings:
    return configure(
        settings,
        transport="mailgun",
        mailgun_api_key=KEY,
        mailgun_domain=DOMAIN,
        mailgun_base_url=url,
        **kw,
    )


def test_one_request_with_recipient_variables(settings: Settings) -> None:
    with ProviderServer(mailgun) as server:
        s = mg_settings(settings, server.url)
        message, rcpts = issue_message(s), recipients(3)
        with make_transport(s) as transport:
            results = transport.send_batch(message, rcpts)
    assert [(r.status, r.provider_id) for r in results] == [
        (SendStatus.SENT, "20261123.1.abc@mg.verdicts.test")
    ] * 3
    (req,) = server.requests
    assert req.headers["Content-Type"].startswith("multipart/form-data")
    fields = req.form()
    assert [v for k, v in fields if k == "to"] == [message.to_header(r) for r in rcpts]
    assert sum(1 for k, _ in fields if k == "html") == 1  # the body goes once
    assert dict(fields)["h:List-Unsubscribe"] == "%recipient.h:List-Unsubscribe%"
    assert dict(fields)["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    built = expand(req)
    message_ids = set()
    for rcpt in rcpts:
        mine = built[rcpt.email]
        assert mine["h:Message-ID"] == message.message_id(rcpt)
        assert mine["h:List-Unsubscribe"] == message.list_unsubscribe(rcpt)
        assert mine["html"] == message.html_for(rcpt)
        assert mine["text"] == message.text_for(rcpt)
        assert mine["v:digest_delivery"] == str(rcpt.delivery_id)
        message_ids.add(mine["h:Message-ID"])
    assert len(message_ids) == 3


def test_rejected_address_is_isolated(settings: Settings) -> None:
    rcpts = recipients(8)
    rcpts[5] = Recipient(6, "invalid@example.com", "", 1006)
    with ProviderServer(mailgun) as server:
        transport = MailgunTransport(mg_settings(settings, server.url))
        with transport:
            results = transport.send_batch(issue_message(settings), rcpts)
    assert [r.status for r in results].count(SendStatus.SENT) == 7
    assert results[5].status is SendStatus.FAILED
    # Every good address went out exactly once.
    sent_to = [
        v
        for req in server.requests
        if "invalid" not in str(req.form())
        for k, v in req.form()
        if k == "to"
    ]
    assert sorted(sent_to) == sorted(
        issue_message(settings).to_header(r) for i, r in enumerate(rcpts) if i != 5
    )


def test_unknown_domain_and_bad_key_stop_the_send(settings: Settings) -> None:
    with ProviderServer(mailgun) as server:
        wrong_domain = MailgunTransport(
            configure(mg_settings(settings, server.url), mailgun_domain="other.test")
        )
        with wrong_domain, pytest.raises(TransportConfigError, match="DIGEST_MAILGUN_DOMAIN"):
            wrong_domain.send_batch(issue_message(settings), recipients(1))
        bad_key = MailgunTransport(
            configure(mg_settings(settings, server.url), mailgun_api_key="nope")
        )
        with bad_key, pytest.raises(TransportConfigError):
            bad_key.send_batch(issue_message(settings), recipients(1))
    with pytest.raises(ConfigError, match="DIGEST_MAILGUN_DOMAIN"):
        MailgunTransport(configure(settings, mailgun_api_key=KEY))


def test_throttling_server_errors_and_timeouts(settings: Settings) -> None:
    with ProviderServer(lambda req: Reply(429, b"", {"Retry-After": "12"})) as server:
        transport = MailgunTransport(mg_settings(settings, server.url))
        with transport, pytest.raises(TransientTransportError) as info:
            transport.send_batch(issue_message(settings), recipients(2))
    assert info.value.retry_after == 12.0
    with ProviderServer(lambda req: Reply(502, b"bad gateway")) as server:
        transport = MailgunTransport(mg_settings(settings, server.url))
        with transport, pytest.raises(TransientTransportError):
            transport.send_batch(issue_message(settings), recipients(2))
    with ProviderServer(lambda req: Reply(hang=True)) as server:
        transport = MailgunTransport(mg_settings(settings, server.url, http_timeout=0.3))
        with transport:
            results = transport.send_batch(issue_message(settings), recipients(2))
    assert len(server.requests) == 1
    assert all("outcome unknown" in (r.error or "") for r in results)
