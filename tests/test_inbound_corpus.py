"""The bounce corpus (tests/data/bounces: DSNs and ARF reports in several MTAs' and
mailbox providers' formats, auto-replies, a reply) read, then fed through every way
in — the SMTP listener, the LMTP listener and the Maildir poller — after a real send
with VERP: each reader ends as the table says, every event names its source, and
feeding everything again changes nothing."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from bounce_corpus import Filling, names, sample
from conftest import throwaway_postgres
from inbound_support import deliver, events, kept, send_with_verp, verp_settings
from servers import free_port
from sqlalchemy.engine import Engine
from webhook_helpers import status_of

from digest.core.settings import Settings
from digest.jobs.status import issue_status
from digest.store.engine import make_engine, migrate
from digest.webhooks.mail_listener import running
from digest.webhooks.mail_reading import Kind, Severity, read
from digest.webhooks.mailbox import poll_once

pytestmark = pytest.mark.slow

#: sample → (what it is, the severity of its failure or None, the event it records or
#: None, the reader's status afterwards)
EXPECTED: dict[str, tuple[Kind, Severity | None, str | None, str]] = {
    "postfix-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "postfix-delayed": (Kind.BOUNCE, Severity.DELAYED, "deferred", "active"),
    "postfix-expired": (Kind.BOUNCE, Severity.SOFT, "bounced_soft", "active"),
    "exim-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "exim-mailbox-full": (Kind.BOUNCE, Severity.SOFT, "bounced_soft", "active"),
    "sendmail-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "exchange-legacy": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "office365-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "gmail-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "qmail-hard": (Kind.BOUNCE, Severity.HARD, "bounced_hard", "bounced"),
    "mangled-notice": (Kind.UNPARSED, None, "bounced_soft", "active"),
    "arf-yahoo": (Kind.COMPLAINT, None, "complained", "complained"),
    "arf-jmrp": (Kind.COMPLAINT, None, "complained", "complained"),
    "arf-not-spam": (Kind.FEEDBACK, None, None, "active"),
    "autoreply-rfc3834": (Kind.AUTO_REPLY, None, None, "active"),
    "autoreply-outlook": (Kind.AUTO_REPLY, None, None, "active"),
    "autoreply-precedence": (Kind.AUTO_REPLY, None, None, "active"),
    "challenge-response": (Kind.AUTO_REPLY, None, None, "active"),
    "human-reply": (Kind.REPLY, None, None, "active"),
}
#: Where each sample arrives: a reply goes to the Reply-To address, a feedback loop's
#: report to the address registered with it (the bounce address); the rest to the
#: reader's VERP address (RFC 3834: auto-replies go to the envelope sender).
TO_REPLY_ADDRESS = {"human-reply", "autoreply-outlook"}
TO_BOUNCE_ADDRESS = {"arf-jmrp"}


def test_the_corpus_is_the_table() -> None:
    assert sorted(EXPECTED) == names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_is_read_as_the_table_says(name: str) -> None:
    kind, severity, _event, _status = EXPECTED[name]
    reading = read(sample(name))
    assert reading.kind is kind
    if severity is not None:
        assert [(f.address, f.severity) for f in reading.failures] == [
            ("ada@example.com", severity)
        ]
    else:
        assert reading.failures == ()


def test_a_complaint_names_its_reader_and_the_returned_message() -> None:
    yahoo = read(sample("arf-yahoo"))
    assert yahoo.complained == ("ada@example.com",)
    assert yahoo.returned_senders == (Filling().verp,)
    jmrp = read(sample("arf-jmrp"))
    assert jmrp.complained == ()  # the address is redacted …
    assert jmrp.unsubscribe_urls == (Filling().unsubscribe,)  # … the signed link is not


def _envelope(settings: Settings, name: str, filling: Filling) -> str:
    if name in TO_REPLY_ADDRESS:
        assert settings.reply_to is not None
        return settings.reply_to
    if name in TO_BOUNCE_ADDRESS:
        return f"bounces@{settings.verp_domain}"
    return filling.verp


def _feed_listener(
    settings: Settings, engine: Engine, fillings: dict[str, Filling], lmtp: bool
) -> None:
    port = free_port()
    with running(engine, settings, host="127.0.0.1", port=port, lmtp=lmtp) as controller:
        for name, filling in fillings.items():
            rcpt = _envelope(settings, name, filling)
            assert deliver("127.0.0.1", port, sample(name, filling), [rcpt], lmtp=lmtp) == {}
        assert len(controller.handler.intakes) == len(fillings)


def _feed_maildir(
    settings: Settings, engine: Engine, fillings: dict[str, Filling], root: Path
) -> None:
    box = mailbox.Maildir(root / "bounces", create=True)
    for name, filling in fillings.items():
        # What the MDA adds: the address the message was delivered to.
        delivered = f"Delivered-To: {_envelope(settings, name, filling)}\r\n".encode()
        box.add(delivered + sample(name, filling))
    done = box.add_folder(settings.bounce_mailbox_done)
    before = len(done)
    configured = settings.model_copy(update={"bounce_mailbox": str(root / "bounces")})
    report = poll_once(engine, configured)
    assert (report.read, report.moved, report.left) == (len(fillings), len(fillings), 0)
    assert box.keys() == []  # moved out of the folder, not deleted:
    assert len(done) == before + len(fillings)


@pytest.mark.parametrize("way", ["smtp", "lmtp", "maildir"])
def test_every_sample_through_each_way_in(
    way: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _every_sample(way, settings, engine, tmp_path)


def test_every_sample_on_postgresql(settings: Settings, tmp_path: Path) -> None:
    with throwaway_postgres() as url:
        pg = make_engine(url)
        try:
            migrate(pg)
            _every_sample("smtp", settings.model_copy(update={"database_url": url}), pg, tmp_path)
        finally:
            pg.dispose()


def _every_sample(way: str, settings: Settings, engine: Engine, tmp_path: Path) -> None:
    s = verp_settings(settings)
    readers = {name: f"{name}@example.com" for name in EXPECTED}
    sent = send_with_verp(s, engine, tmp_path, list(readers.values()))
    fillings = {
        name: Filling(
            verp=sent[email].verp,
            rcpt=email,
            message_id=sent[email].message_id,
            unsubscribe=sent[email].unsubscribe,
            sender=sent[email].sender,
        )
        for name, email in readers.items()
    }

    def feed() -> None:
        if way == "maildir":
            _feed_maildir(s, engine, fillings, tmp_path)
        else:
            _feed_listener(s, engine, fillings, lmtp=way == "lmtp")

    feed()
    source = "mailbox" if way == "maildir" else "inbound"
    recorded = events(engine)
    expected_events = sorted(
        (source, "arf" if event == "complained" else "dsn", event, readers[name])
        for name, (_k, _s, event, _st) in EXPECTED.items()
        if event is not None
    )
    assert sorted(recorded) == expected_events
    for name, (_kind, _sev, _event, status) in EXPECTED.items():
        assert status_of(engine, readers[name]) == status, name
    assert kept(engine) == [("reply", source, readers["human-reply"])]

    info = issue_status(engine, "2026-W47")
    assert info is not None
    hard = sum(1 for v in EXPECTED.values() if v[2] == "bounced_hard")
    soft = sum(1 for v in EXPECTED.values() if v[2] == "bounced_soft")
    assert info["bounces"] == {"hard": hard, "soft": soft, "total": hard + soft}
    assert info["by_source"][source] == {"bounces": hard + soft, "complaints": 2}
    other = {"inbound": "mailbox", "mailbox": "inbound"}[source]
    assert info["by_source"][other] == {"bounces": 0, "complaints": 0}
    assert info["by_source"]["webhook"] == {"bounces": 0, "complaints": 0}

    feed()  # a redelivery of every message: nothing new
    assert sorted(events(engine)) == expected_events
    assert len(kept(engine)) == 1
