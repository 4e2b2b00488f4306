"""Postmark against a local server that checks the exact request and answers like
Postmark's ``/email/batch`` (per-message ErrorCode, 401/422, 429, 5xx, timeouts)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from provider_server import (
    Captured,
    ProviderServer,
    Reply,
    closed_port_url,
    configure,
    issue_message,
    recipients,
    seed_store,
)
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.transports import make_transport
from digest.transports.base import SendStatus
from digest.transports.postmark import PostmarkTransport

TOKEN = "pm-server-token-123"
_ids = itertools.count(1)


def _results(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for msg in entries:
        if "bounced" in msg["To"]:
            out.append(
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to an inactive recipient",
                    "To": msg["To"],
                }
            )
        else:
            out.append(
                {"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{next(_ids)}", "To": msg["To"]}
            )
    return out


def _mustache(template: str, model: dict[str, str]) -> str:
    """Postmark's Mustachio, as far as the digest uses it: {{{x}}} as is, {{x}} escaped."""
    for key, value in model.items():
        template = template.replace("{{{" + key + "}}}", value)
        template = template.replace("{{" + key + "}}", str(escape(value)))
    assert "{{" not in template, template
    return template


class PostmarkFake:
    """Postmark's /templates, /email/batch and /email/batchWithTemplates; keeps every
    message as Postmark would render it."""

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.rendered: list[dict[str, str]] = []

    def __call__(self, req: Captured) -> Reply:
        if req.headers["X-Postmark-Server-Token"] != TOKEN:
            return Reply(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})
        if req.method == "GET" and req.path.startswith("/templates/"):
            alias = req.path.removeprefix("/templates/")
            found = self.templates.get(alias)
            return Reply(200, found) if found else Reply(404, {"ErrorCode": 1101})
        if req.path == "/templates":
            body = req.json()
            if body["Alias"] in self.templates:
                return Reply(422, {"ErrorCode": 1123, "Message": "alias already exists"})
            self.templates[body["Alias"]] = body
            return Reply(200, {"TemplateId": len(self.templates), "Alias": body["Alias"]})
        if req.path == "/email/batchWithTemplates":
            entries = req.json()["Messages"]
            if len(entries) > 500:
                return Reply(422, {"ErrorCode": 300, "Message": "too many messages"})
            for entry in entries:
                template = self.templates[entry["TemplateAlias"]]
                model = entry["TemplateModel"]
                self.rendered.append(
                    {
                        "To": entry["To"],
                        "Subject": template["Subject"],
                        "HtmlBody": _mustache(template["HtmlBody"], model),
                        "TextBody": _mustache(template["TextBody"], model),
                    }
                )
            return Reply(200, _results(entries))
        if req.path != "/email/batch":
            return Reply(404, {"ErrorCode": 404, "Message": req.path})
        batch = req.json()
        if not isinstance(batch, list) or len(batch) > 500:
            return Reply(422, {"ErrorCode": 300, "Message": "too many messages"})
        self.rendered.extend(batch)
        return Reply(200, _results(batch))


def postmark(req: Captured) -> Reply:
    """Postmark's full-message batch endpoint only."""
    return PostmarkFake()(req)


def pm_settings(settings: Settings, url: str, **kw: object) -> Settings:
    return configure(
        settings, transport="postmark", postmark_token=TOKEN, postmark_base_url=url, **kw
    )


def test_stored_template_each_entry_carries_only_its_values(settings: Settings) -> None:
    fake = PostmarkFake()
    with ProviderServer(fake) as server:
        s = pm_settings(settings, server.url)
        message, rcpts = issue_message(s), recipients(3)
        with make_transport(s) as transport:
            first = transport.send_batch(message, rcpts[:2])
            second = transport.send_batch(message, rcpts[2:])
        # A second worker (a new transport) finds the template another one created.
        with make_transport(s) as transport:
            third = transport.send_batch(message, recipients(1, start=4))
    assert {r.status for r in first + second + third} == {SendStatus.SENT}
    paths = [(r.method, r.path) for r in server.requests]
    assert paths == [
        ("POST", "/templates"),
        ("POST", "/email/batchWithTemplates"),
        ("POST", "/email/batchWithTemplates"),
        ("POST", "/templates"),
        ("GET", f"/templates/{next(iter(fake.templates))}"),
        ("POST", "/email/batchWithTemplates"),
    ]
    [template] = fake.templates.values()
    assert "[[%" not in template["HtmlBody"] and template["Subject"] == message.subject
    entry = server.requests[1].json()["Messages"][0]
    assert "HtmlBody" not in entry and entry["TemplateModel"] == message.values(rcpts[0])
    headers = {h["Name"]: h["Value"] for h in entry["Headers"]}
    assert headers["Message-ID"] == message.message_id(rcpts[0])
    assert headers["List-Unsubscribe"] == message.list_unsubscribe(rcpts[0])
    # What Postmark renders is what the digest would have sent in full.
    for shown, rcpt in zip(fake.rendered, rcpts, strict=False):
        assert shown["HtmlBody"] == message.html_for(rcpt)
        assert shown["TextBody"] == message.text_for(rcpt)
    assert "Hi Ann&amp;Bob," in fake.rendered[2]["HtmlBody"]


def test_content_with_braces_goes_as_full_messages(settings: Settings) -> None:
    fake = PostmarkFake()
    with ProviderServer(fake) as server:
        s = pm_settings(settings, server.url)
        message = issue_message(s)
        message.html = message.html.replace("verdicts", "{{verdicts}}")
        with make_transport(s) as transport:
            transport.send_batch(message, recipients(2))
    assert [r.path for r in server.requests] == ["/email/batch"]


def test_exact_request_one_message_per_recipient(settings: Settings) -> None:
    with ProviderServer(postmark) as server:
        s = pm_settings(settings, server.url, postmark_templates=False)
        message, rcpts = issue_message(s), recipients(3)
        with make_transport(s) as transport:
            results = transport.send_batch(message, rcpts)
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert all(r.provider_id and r.provider_id.startswith("pm-") for r in results)
    (req,) = server.requests
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Accept"] == "application/json"
    body = req.json()
    assert len(body) == 3
    for entry, rcpt in zip(body, rcpts, strict=True):
        headers = {h["Name"]: h["Value"] for h in entry["Headers"]}
        assert entry["MessageStream"] == "broadcast"
        assert entry["From"] == s.from_address
        assert entry["To"] == message.to_header(rcpt)
        assert headers["Message-ID"] == message.message_id(rcpt)
        assert headers["List-Unsubscribe"] == message.list_unsubscribe(rcpt)
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert entry["HtmlBody"] == message.html_for(rcpt)
        assert entry["TextBody"] == message.text_for(rcpt)
        assert entry["Metadata"] == {"digest_issue": "7", "digest_delivery": str(rcpt.delivery_id)}
    # The name is HTML-escaped in the HTML part and raw in the text part.
    assert rcpts[2].name == "Ann&Bob <Team>"
    assert "Hi Ann&amp;Bob," in body[2]["HtmlBody"]
    assert "Hi Ann&Bob," in body[2]["TextBody"]


def test_partial_failure_in_a_200_answer(settings: Settings) -> None:
    rcpts = recipients(3)
    rcpts[1] = rcpts[1].__class__(2, "bounced@example.com", "", 1002)
    with ProviderServer(PostmarkFake()) as server:
        transport = PostmarkTransport(pm_settings(settings, server.url))
        with transport:
            results = transport.send_batch(issue_message(settings), rcpts)
    assert [r.status for r in results] == [SendStatus.SENT, SendStatus.FAILED, SendStatus.SENT]
    assert "406" in (results[1].error or "")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(401, {"ErrorCode": 10, "Message": "Bad token"}), TransportConfigError),
        (
            Reply(422, {"ErrorCode": 400, "Message": "Sender signature not defined"}),
            TransportConfigError,
        ),
        (Reply(429, {"Message": "slow down"}, {"Retry-After": "7"}), TransientTransportError),
        (Reply(503, b"unavailable"), TransientTransportError),
    ],
)
def test_whole_request_answers(settings: Settings, reply: Reply, error: type) -> None:
    with ProviderServer(lambda req: reply) as server:
        transport = PostmarkTransport(pm_settings(settings, server.url))
        with transport, pytest.raises(error) as info:
            transport.send_batch(issue_message(settings), recipients(2))
    # A 422 to the template is looked up (another worker's?) before giving up.
    assert len(server.requests) == (2 if reply.status == 422 else 1)
    if reply.status == 429:
        assert info.value.retry_after == 7.0


def test_every_message_refused_for_the_account_stops_the_send(settings: Settings) -> None:
    answer = [{"ErrorCode": 401, "Message": "Sender signature not confirmed"}] * 2
    with ProviderServer(lambda req: Reply(200, answer)) as server:
        transport = PostmarkTransport(pm_settings(settings, server.url))
        with transport, pytest.raises(TransportConfigError, match="not confirmed"):
            transport.send_batch(issue_message(settings), recipients(2))


def test_timeout_after_sending_is_never_resent(settings: Settings) -> None:
    fake = PostmarkFake()

    def hang_on_send(req: Captured) -> Reply:
        return Reply(hang=True) if req.path.startswith("/email/") else fake(req)

    with ProviderServer(hang_on_send) as server:
        transport = PostmarkTransport(pm_settings(settings, server.url, http_timeout=0.3))
        with transport:
            results = transport.send_batch(issue_message(settings), recipients(2))
    assert [r.path for r in server.requests] == ["/templates", "/email/batchWithTemplates"]
    # Postmark has no idempotency key: the batch may have gone out, so it is not retried.
    assert {r.status for r in results} == {SendStatus.SENT}
    assert all("outcome unknown" in (r.error or "") for r in results)
    assert all(r.provider_id is None for r in results)


def test_refused_connection_is_retried(settings: Settings) -> None:
    transport = PostmarkTransport(pm_settings(settings, closed_port_url()))
    with transport, pytest.raises(TransientTransportError, match="cannot connect"):
        transport.send_batch(issue_message(settings), recipients(1))


def test_missing_token_is_a_config_error(settings: Settings) -> None:
    from digest.exceptions import ConfigError

    with pytest.raises(ConfigError, match="DIGEST_POSTMARK_TOKEN"):
        make_transport(configure(settings, transport="postmark"))


def test_switch_by_settings_alone_batches_of_500(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_store(engine, tmp_path, [f"r{i}@example.com" for i in range(1100)])
    with ProviderServer(PostmarkFake()) as server:
        s = pm_settings(settings, server.url, batch_size=1100)
        result = weekly_job(s, engine=engine, week="2026-W47")
    assert result.report is not None and result.report.sent == 1100
    sends = [r for r in server.requests if r.path == "/email/batchWithTemplates"]
    assert [len(r.json()["Messages"]) for r in sends] == [500, 500, 100]
    assert [r.path for r in server.requests].count("/templates") == 1
    info = issue_status(engine, "2026-W47")
    assert info is not None and info["counts"]["sent"] == 1100
