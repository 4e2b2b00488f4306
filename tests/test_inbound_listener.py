"""``digest inbound``'s listener on its own: not a relay, an allow-list of our
addresses (a forged VERP tag is refused at RCPT), a size limit, LMTP's answer per
recipient, a 451 (not a lost message) when the store cannot take it, and replies
forwarded to DIGEST_REPLY_FORWARD (or kept in the console when that fails)."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from bounce_corpus import Filling, sample
from cli_support import DigestCLI, settings_env
from inbound_support import deliver, events, kept, send_with_verp, verp_settings
from servers import free_port, recording_smtp
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from webhook_helpers import status_of

from digest.core.settings import Settings
from digest.store.models import InboundMail
from digest.webhooks.mail_listener import running
from digest.webhooks.replies import smtp_forwarder

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"


def _refusal(port: int, rcpt: str) -> tuple[int, bytes]:
    client = smtplib.SMTP(HOST, port)
    try:
        client.ehlo()
        client.mail("")
        return client.rcpt(rcpt)
    finally:
        client.quit()


def test_only_our_addresses_are_taken_and_nothing_is_relayed(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    verp = sent["ada@example.com"].verp
    port = free_port()
    with running(engine, s, host=HOST, port=port):
        assert _refusal(port, "someone@example.com")[0] == 550  # not our domain: no relay
        assert b"5.7.1" in _refusal(port, "someone@example.com")[1]
        assert _refusal(port, "postmaster@bounces.verdicts.test")[0] == 550
        assert _refusal(port, verp)[0] == 250
        assert _refusal(port, f"bounces@{s.verp_domain}")[0] == 250
        assert _refusal(port, "replies@verdicts.test")[0] == 250
        forged = verp[: verp.index("-") + 1] + "0" * 20 + verp[verp.index("@") :]
        code, said = _refusal(port, forged)
        assert code == 550 and b"names no delivery" in said
        # A valid tag for delivery 1 does not name another delivery either.
        other = verp.replace("bounces+1-", "bounces+2-")
        assert _refusal(port, other)[0] == 550


def test_a_message_over_the_size_limit_is_refused(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings, inbound_max_bytes=10_000)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    port = free_port()
    big = sample("postfix-hard", sent["ada@example.com"]) + (b"x" * 70 + b"\r\n") * 300
    with running(engine, s, host=HOST, port=port):
        # smtplib declares SIZE, so the refusal comes at MAIL FROM (RFC 1870).
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            deliver(HOST, port, big, [sent["ada@example.com"].verp])
        assert refused.value.smtp_code == 552
        # A client that does not declare it is refused after the data.
        client = smtplib.SMTP(HOST, port)
        try:
            client.helo()
            assert client.mail("")[0] == 250
            assert client.rcpt(sent["ada@example.com"].verp)[0] == 250
            assert client.data(big)[0] == 552
        finally:
            client.close()
    assert events(engine) == [] and status_of(engine, "ada@example.com") == "active"


def test_lmtp_answers_once_per_recipient(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com", "bob@example.com"])
    port = free_port()
    rcpts = [sent["ada@example.com"].verp, f"bounces@{s.verp_domain}"]
    with running(engine, s, host=HOST, port=port, lmtp=True):
        client = smtplib.LMTP(HOST, port)
        try:
            client.ehlo()  # smtplib's LMTP says LHLO
            assert client.mail("")[0] == 250
            for rcpt in rcpts:
                assert client.rcpt(rcpt)[0] == 250
            code, _ = client.data(sample("postfix-hard", sent["ada@example.com"]))
            second = client.getreply()  # LMTP: a second answer for the second recipient
        finally:
            client.close()
    assert code == 250 and second[0] == 250
    assert status_of(engine, "ada@example.com") == "bounced"
    assert status_of(engine, "bob@example.com") == "active"


def test_a_store_that_cannot_take_the_message_answers_451(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE inbound_mail"))
    port = free_port()
    reply = sample("human-reply", sent["ada@example.com"])
    with running(engine, s, host=HOST, port=port), pytest.raises(smtplib.SMTPDataError) as refused:
        deliver(HOST, port, reply, ["replies@verdicts.test"])
    assert refused.value.smtp_code == 451  # the MTA keeps it and tries again


def test_a_reply_is_forwarded_wrapped_and_kept(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    port = free_port()
    with recording_smtp() as editor_box:
        forwarding = s.model_copy(
            update={
                "reply_forward": "editor@verdicts.test",
                "smtp_host": editor_box.host,
                "smtp_port": editor_box.port,
            }
        )
        with running(engine, forwarding, host=HOST, port=port, forward=smtp_forwarder(forwarding)):
            reply = sample("human-reply", sent["ada@example.com"])
            deliver(HOST, port, reply, ["replies@verdicts.test"])
            deliver(HOST, port, reply, ["replies@verdicts.test"])  # redelivered: once
        assert len(editor_box.messages) == 1
        forwarded = editor_box.messages[0]
    assert forwarded.rcpt_tos == ("editor@verdicts.test",)
    assert forwarded.mail_from == f"bounces@{s.verp_domain}"
    message = forwarded.parsed()
    assert message["Reply-To"] == "ada@example.com"
    assert message["From"] == s.from_address  # ours: the forward passes our DMARC
    assert "Reply from ada@example.com: Re: SmolVLM" in str(message["Subject"])
    attached = [p for p in message.walk() if p.get_content_type() == "message/rfc822"]
    assert len(attached) == 1 and b"Could you do the 7B models next?" in attached[0].as_bytes()
    with engine.connect() as conn:
        row = conn.execute(select(InboundMail.__table__)).one()  # type: ignore[attr-defined]
    assert row.forwarded_to == "editor@verdicts.test" and row.forward_error is None
    assert kept(engine) == [("reply", "inbound", "ada@example.com")]
    assert events(engine) == []


def test_a_failed_forward_keeps_the_reply_with_the_reason(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    nobody = free_port()  # no server listens here
    forwarding = s.model_copy(
        update={"reply_forward": "editor@verdicts.test", "smtp_host": HOST, "smtp_port": nobody}
    )
    port = free_port()
    with running(engine, forwarding, host=HOST, port=port, forward=smtp_forwarder(forwarding)):
        assert (
            deliver(
                HOST,
                port,
                sample("human-reply", sent["ada@example.com"]),
                ["replies@verdicts.test"],
            )
            == {}
        )
    with engine.connect() as conn:
        row = conn.execute(select(InboundMail.__table__)).one()  # type: ignore[attr-defined]
    assert row.forwarded_to is None and "cannot connect" in row.forward_error


def test_a_notice_that_only_names_an_address_suppresses_nobody(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Anyone can mail the bounce domain: a forged DSN or ARF report about a reader,
    without that reader's VERP address or signed link, is kept for people to judge."""
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, ["ada@example.com"])
    unsigned = Filling(
        verp=f"bounces@{s.verp_domain}",
        rcpt="ada@example.com",
        message_id=sent["ada@example.com"].message_id,
        unsubscribe="http://digest.test/unsubscribe/forged",
    )
    port = free_port()
    with running(engine, s, host=HOST, port=port):
        for name in ("postfix-hard", "exim-hard", "arf-yahoo", "mangled-notice"):
            deliver(HOST, port, sample(name, unsigned), [f"bounces@{s.verp_domain}"])
    assert events(engine) == []
    assert status_of(engine, "ada@example.com") == "active"
    assert sorted(k for k, _src, _sender in kept(engine)) == [
        "bounce",
        "bounce",
        "complaint",
        "unparsed",
    ]


def test_digest_inbound_needs_the_addresses_it_takes(settings: Settings) -> None:
    result = DigestCLI(env=settings_env(settings))("inbound", "--port", str(free_port()))
    assert result.exit_code == 1
    assert "set DIGEST_VERP_DOMAIN or DIGEST_BOUNCE_ADDRESS" in result.output
