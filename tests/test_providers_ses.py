"""Amazon SES v2 through boto3, pointed at a local server that speaks SES's REST-JSON
``SendEmail`` (signed with dummy credentials from Settings; no AWS network)."""

from __future__ import annotations

import base64
import itertools
import json
from email import message_from_bytes, policy
from typing import Any

import pytest
from markupsafe import escape

pytest.importorskip("boto3", reason="boto3 (extra 'ses') is not installed")

from provider_server import (
    Captured,
    ProviderServer,
    Reply,
    closed_port_url,
    configure,
    issue_message,
    recipients,
)

from digest.core.settings import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.transports import make_transport
from digest.transports.base import SendStatus
from digest.transports.ses import SESTransport

_ids = itertools.count(1)


def ses_error(status: int, code: str, text: str) -> Reply:
    return Reply(status, {"message": text}, {"x-amzn-ErrorType": code})


def ses(req: Captured) -> Reply:
    """SES v2 SendEmail: SigV4 with our key, raw content, one recipient per call."""
    auth = req.headers["Authorization"] or ""
    if "Credential=AKIDTEST/" not in auth or "/eu-west-1/ses/aws4_request" not in auth:
        return ses_error(403, "UnrecognizedClientException", "The security token is invalid")
    if req.path != "/v2/email/outbound-emails":
        return ses_error(404, "NotFoundException", req.path)
    body = req.json()
    to = body["Destination"]["ToAddresses"]
    if "reject" in to[0]:
        return ses_error(400, "MessageRejected", "Email address is on the suppression list")
    if "throttle" in to[0]:
        return ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded")
    if "hang" in to[0]:
        return Reply(hang=True)
    base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
    return Reply(200, {"MessageId": f"ses-{next(_ids)}"})


def ses_settings(settings: Settings, url: str, **kw: object) -> Settings:
    """SES with raw messages (the bulk form has its own tests below)."""
    options: dict[str, object] = {"ses_bulk": False, **kw}
    return configure(
        settings,
        transport="ses",
        ses_region="eu-west-1",
        ses_base_url=url,
        ses_access_key_id="AKIDTEST",
        ses_secret_access_key="dummy-secret",
        **options,
    )


def _handlebars(template: str, data: dict[str, str]) -> str:
    """SES templates as the digest uses them: {{{x}}} as is, {{x}} HTML-escaped."""
    for key, value in data.items():
        template = template.replace("{{{" + key + "}}}", value)
        template = template.replace("{{" + key + "}}", str(escape(value)))
    assert "{{" not in template, template
    return template


class SESBulkFake:
    """SES v2 CreateEmailTemplate and SendBulkEmail; keeps each message as rendered."""

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, str]] = {}
        self.rendered: list[dict[str, Any]] = []

    def __call__(self, req: Captured) -> Reply:
        if "Credential=AKIDTEST/" not in (req.headers["Authorization"] or ""):
            return ses_error(403, "UnrecognizedClientException", "The security token is invalid")
        body = req.json()
        if req.path == "/v2/email/templates":
            name = body["TemplateName"]
            if name in self.templates:
                return ses_error(400, "AlreadyExistsException", f"{name} already exists")
            self.templates[name] = body["TemplateContent"]
            return Reply(200, {})
        if req.path != "/v2/email/outbound-bulk-emails":
            return ses_error(404, "NotFoundException", req.path)
        entries = body["BulkEmailEntries"]
        if len(entries) > 50:
            return ses_error(400, "BadRequestException", "at most 50 entries")
        template = self.templates[body["DefaultContent"]["Template"]["TemplateName"]]
        results = []
        for entry in entries:
            to = entry["Destination"]["ToAddresses"][0]
            data = json.loads(
                entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"]
            )
            if "reject" in to:
                results.append({"Status": "MESSAGE_REJECTED", "Error": "on the suppression list"})
                continue
            self.rendered.append(
                {
                    "to": to,
                    "html": _handlebars(template["Html"], data),
                    "text": _handlebars(template["Text"], data),
                    "headers": {h["Name"]: h["Value"] for h in entry["ReplacementHeaders"]},
                }
            )
            results.append({"Status": "SUCCESS", "MessageId": f"ses-{next(_ids)}"})
        return Reply(200, {"BulkEmailEntryResults": results})


def bulk_settings(settings: Settings, url: str, **kw: object) -> Settings:
    return ses_settings(settings, url, ses_bulk=True, **kw)


def test_bulk_stores_the_issue_once_and_sends_values_and_headers(settings: Settings) -> None:
    fake = SESBulkFake()
    rcpts = recipients(3)
    rcpts[1] = rcpts[1].__class__(2, "reject@example.com", "", 1002)
    with ProviderServer(fake) as server:
        s = bulk_settings(settings, server.url, ses_configuration_set="digest-events")
        message = issue_message(s)
        with make_transport(s) as transport:
            results = transport.send_batch(message, rcpts)
            results += transport.send_batch(message, recipients(2, start=10))
        with make_transport(s) as other_worker:
            results += other_worker.send_batch(message, recipients(1, start=20))
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.FAILED,
        SendStatus.SENT,
        SendStatus.SENT,
        SendStatus.SENT,
        SendStatus.SENT,
    ]
    paths = [r.path for r in server.requests]
    assert paths.count("/v2/email/templates") == 2  # the second worker's is AlreadyExists
    assert paths.count("/v2/email/outbound-bulk-emails") == 3 and len(fake.templates) == 1
    body = server.requests[1].json()
    assert body["ConfigurationSetName"] == "digest-events"
    assert body["FromEmailAddress"] == s.from_address
    for shown, rcpt in zip(fake.rendered[:2], [rcpts[0], rcpts[2]], strict=True):
        assert shown["html"] == message.html_for(rcpt) and shown["text"] == message.text_for(rcpt)
        assert shown["headers"]["List-Unsubscribe"] == message.list_unsubscribe(rcpt)
        assert shown["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert shown["headers"]["Message-ID"] == message.message_id(rcpt)
    per_recipient = len(server.requests[1].body) / 3
    assert per_recipient < 2048, per_recipient


def test_bulk_account_status_stops_after_recording_what_went(settings: Settings) -> None:
    fake = SESBulkFake()

    def paused_after_first(req: Captured) -> Reply:
        reply = fake(req)
        if req.path.endswith("outbound-bulk-emails"):
            results = reply.body["BulkEmailEntryResults"]
            for entry in results[1:]:
                entry.update(Status="ACCOUNT_SENDING_PAUSED", Error="sending paused")
        return reply

    with ProviderServer(paused_after_first) as server:
        transport = SESTransport(bulk_settings(settings, server.url))
        with transport:
            results = transport.send_batch(issue_message(settings), recipients(3))
            with pytest.raises(TransportConfigError, match="paused"):
                transport.send_batch(issue_message(settings), recipients(1, start=9))
    assert [r.status for r in results] == [SendStatus.SENT, SendStatus.RETRY, SendStatus.RETRY]


def test_raw_message_per_recipient(settings: Settings) -> None:
    with ProviderServer(ses) as server:
        s = ses_settings(settings, server.url, ses_configuration_set="digest-events")
        message, rcpts = issue_message(s), recipients(3)
        with make_transport(s) as transport:
            results = transport.send_batch(message, rcpts)
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert all(r.provider_id and r.provider_id.startswith("ses-") for r in results)
    assert len(server.requests) == 3
    for req, rcpt in zip(server.requests, rcpts, strict=True):
        body = req.json()
        assert body["Destination"] == {"ToAddresses": [rcpt.email]}
        assert body["FromEmailAddress"] == "digest@verdicts.test"
        assert body["ConfigurationSetName"] == "digest-events"
        raw = base64.b64decode(body["Content"]["Raw"]["Data"])
        assert raw == message.as_bytes(rcpt)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Message-ID"] == message.message_id(rcpt)
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_rejection_is_per_recipient_and_throttling_retries_the_rest(settings: Settings) -> None:
    rcpts = recipients(4)
    rcpts[1] = rcpts[1].__class__(2, "reject@example.com", "", 1002)
    rcpts[2] = rcpts[2].__class__(3, "throttle@example.com", "", 1003)
    with ProviderServer(ses) as server:
        transport = SESTransport(ses_settings(settings, server.url))
        with transport:
            results = transport.send_batch(issue_message(settings), rcpts)
    assert [r.status for r in results] == [
        SendStatus.SENT,
        SendStatus.FAILED,
        SendStatus.RETRY,
        SendStatus.RETRY,
    ]
    assert results[2].retry_after == 1.0
    assert len(server.requests) == 3  # the fourth was not tried while throttled


def test_bad_credentials_stop_the_send(settings: Settings) -> None:
    with ProviderServer(ses) as server:
        s = configure(ses_settings(settings, server.url), ses_access_key_id="AKIDWRONG")
        transport = SESTransport(s)
        with transport, pytest.raises(TransportConfigError, match="security token"):
            transport.send_batch(issue_message(settings), recipients(2))
    assert len(server.requests) == 1  # boto3's own retries are off


def test_timeout_marks_one_uncertain_and_retries_the_rest(settings: Settings) -> None:
    rcpts = recipients(3)
    rcpts[1] = rcpts[1].__class__(2, "hang@example.com", "", 1002)
    with ProviderServer(ses) as server:
        transport = SESTransport(ses_settings(settings, server.url, http_timeout=0.3))
        with transport:
            results = transport.send_batch(issue_message(settings), rcpts)
    assert [r.status for r in results] == [SendStatus.SENT, SendStatus.SENT, SendStatus.RETRY]
    assert "outcome unknown" in (results[1].error or "")
    assert len(server.requests) == 2


def test_server_error_retries(settings: Settings) -> None:
    reply = ses_error(500, "InternalFailure", "internal")
    with ProviderServer(lambda req: reply) as server:
        transport = SESTransport(ses_settings(settings, server.url))
        with transport:
            results = transport.send_batch(issue_message(settings), recipients(2))
    assert [r.status for r in results] == [SendStatus.RETRY] * 2


def test_refused_connection_is_retried(settings: Settings) -> None:
    transport = SESTransport(ses_settings(settings, closed_port_url()))
    with transport, pytest.raises(TransientTransportError, match="cannot connect"):
        transport.send_batch(issue_message(settings), recipients(2))
