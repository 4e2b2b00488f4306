"""Non-ASCII and unusable addresses fail alone, never the batch (issue 13, item 2).

Policy (docs/hardening.md): domains are stored and sent in ASCII (IDNA), however they
were typed; a non-ASCII local part is sent with SMTPUTF8 when the server offers it
and otherwise fails for that one recipient, recorded with the reason and without
suppressing the subscriber; an address no header can hold fails alone the same way.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_string, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from alembic import command
from fastapi.testclient import TestClient
from servers import RecordingHandler, RecordingSMTPServer, free_port
from sqlalchemy import column, insert, select
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Engine
from store_support import WEEK, dated, sample_items, write_json

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.delivery.queue import counts
from digest.jobs.weekly import weekly_job
from digest.store.engine import alembic_config, make_engine, session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Delivery
from digest.store.subscriber_models import Subscriber, Suppression
from digest.transports.smtp import SMTPTransport
from digest.web.app import create_app
from subscribers.consent import add_suppressions, email_hash, suppression_of
from subscribers.service import add_subscriber, normalize_email

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
X = Suppression.__table__  # type: ignore[attr-defined]
#: Stored before addresses were checked at input (or written by hand): no header can
#: hold them. Each must fail alone.
POISON = ["=?utf-8?b?eA0KWC1JOiB5DQo=?=@example.com", "two words@example.com"]


@contextmanager
def smtp(*, smtputf8: bool) -> Iterator[RecordingSMTPServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ready_timeout=10, enable_SMTPUTF8=smtputf8
    )
    controller.start()
    try:
        yield RecordingSMTPServer(host="127.0.0.1", port=port, handler=handler)
    finally:
        controller.stop()


def _seed(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    import_comparisons(engine, [write_json(tmp_path / "c.json", dated(sample_items(), settings))])
    with session_scope(engine) as session:
        for address in (
            "ada@example.com",
            "Jörg@Example.com",
            "b@MÜNCHEN.de",
            "c@xn--bcher-kva.ch",
        ):
            add_subscriber(session, address, "Reader")
    now = utcnow()
    # The table as revision 0005 has it (the model's later columns are not there yet).
    old = sa_table(
        "subscriber",
        *(column(c) for c in ("email", "name", "status", "source", "created_at", "updated_at")),
    )
    with engine.begin() as conn:
        conn.execute(
            insert(old),
            [
                {
                    "email": p,
                    "name": "",
                    "status": "active",
                    "source": "legacy",
                    "created_at": now,
                    "updated_at": now,
                    "confirmed_at": now,
                }
                for p in POISON
            ],
        )


def _states(engine: Engine) -> dict[str, tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(S.c.email, D.c.state, D.c.last_error, S.c.status).join(
                S, S.c.id == D.c.subscriber_id
            )
        ).all()
    return {r.email: (r.state, r.last_error or "", r.status) for r in rows}


def test_domains_are_stored_in_ascii_once(engine: Engine) -> None:
    assert normalize_email("b@MÜNCHEN.de") == "b@xn--mnchen-3ya.de"
    assert normalize_email("B@xn--mnchen-3ya.DE") == "b@xn--mnchen-3ya.de"
    assert normalize_email("Jörg@example.com") == "jörg@example.com"
    with session_scope(engine) as session:
        first, created = add_subscriber(session, "b@münchen.de")
        again, created_again = add_subscriber(session, "b@xn--mnchen-3ya.de")
    assert created and not created_again and first.id == again.id


@pytest.mark.parametrize("smtputf8", [False, True])
def test_smtp_send_goes_on_past_non_ascii_and_poison_addresses(
    smtputf8: bool, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _seed(engine, settings, tmp_path)
    with smtp(smtputf8=smtputf8) as server:
        s = settings.model_copy(
            update={"transport": "smtp", "smtp_host": server.host, "smtp_port": server.port}
        )
        result = weekly_job(s, engine=engine, week=WEEK, transport=SMTPTransport(s))
        got = server.recipients()
    assert result.report is not None and result.report.stopped is None
    states = _states(engine)
    assert got["ada@example.com"] == 1
    assert got["b@xn--mnchen-3ya.de"] == 1 and got["c@xn--bcher-kva.ch"] == 1
    if smtputf8:
        assert got["jörg@example.com"] == 1
        assert states["jörg@example.com"][0] == "sent"
        [copy] = [m for m in server.messages if "jörg@example.com" in m.rcpt_tos]
        parsed = message_from_string(copy.data.decode("utf-8"), policy=policy.SMTPUTF8)
        assert parsed["To"].addresses[0].addr_spec == "jörg@example.com"
    else:
        state, error, status = states["jörg@example.com"]
        assert (state, status) == ("failed", "active") and "SMTPUTF8" in error
        assert "jörg@example.com" not in got
    for poison in POISON:
        state, error, status = states[poison]
        assert (state, status) == ("failed", "active"), (poison, error)
        assert "not sent" in error
    with engine.connect() as conn:
        assert conn.execute(select(S.c.status).where(S.c.status != "active")).first() is None
        assert counts(conn, result.issue_id or 0)["sending"] == 0


def test_maildir_takes_utf8_and_skips_poison(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    _seed(engine, settings, tmp_path)
    s = settings.model_copy(update={"transport": "maildir"})
    result = weekly_job(s, engine=engine, week=WEEK)
    assert result.report is not None and result.report.stopped is None
    states = _states(engine)
    assert states["jörg@example.com"][0] == "sent"
    assert all(states[p][0] == "failed" for p in POISON)
    box = mailbox.Maildir(s.outbox, create=False)
    tos = {
        message_from_string(box.get_bytes(k).decode(), policy=policy.SMTPUTF8)["To"]
        .addresses[0]
        .addr_spec
        for k in box.iterkeys()
    }
    assert tos == {
        "ada@example.com",
        "jörg@example.com",
        "b@xn--mnchen-3ya.de",
        "c@xn--bcher-kva.ch",
    }


@pytest.mark.parametrize("smtputf8", [False, True])
def test_web_confirmation_to_a_non_ascii_address_does_not_crash(
    smtputf8: bool, settings: Settings, engine: Engine
) -> None:
    with smtp(smtputf8=smtputf8) as server:
        s = settings.model_copy(
            update={"transport": "smtp", "smtp_host": server.host, "smtp_port": server.port}
        )
        app = create_app(s, engine=engine, transport_factory=SMTPTransport)
        client = TestClient(app)
        for address in ("jörg@example.com", "b@münchen.de"):
            answer = client.post("/subscribe", json={"email": address, "name": "J"})
            assert answer.status_code == 202, answer.text
        got = server.recipients()
    assert got["b@xn--mnchen-3ya.de"] == 1
    assert got["jörg@example.com"] == (1 if smtputf8 else 0)


def test_migration_moves_unicode_domains_to_ascii(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0005")
    now = utcnow()
    # The table as revision 0005 had it: the model's later columns are not there yet.
    names = ("email", "name", "status", "source", "created_at", "updated_at")
    old = sa_table("subscriber", *(column(name) for name in names))
    with engine.begin() as conn:
        conn.execute(
            insert(old),
            [
                {
                    "email": e,
                    "name": "",
                    "status": st,
                    "source": "old",
                    "created_at": now.replace(tzinfo=None),
                    "updated_at": now.replace(tzinfo=None),
                }
                for e, st in (("a@münchen.de", "active"), ("u@bücher.ch", "unsubscribed"))
            ],
        )
        add_suppressions(conn, ["u@bücher.ch"], "unsubscribed", source="old")
    command.upgrade(cfg, "heads")
    with engine.connect() as conn:
        emails = set(conn.execute(select(S.c.email)).scalars())
        assert emails == {"a@xn--mnchen-3ya.de", "u@xn--bcher-kva.ch"}
        assert suppression_of(conn, "u@xn--bcher-kva.ch") == "unsubscribed"
    # A forgotten IDN address known only by its old (Unicode) hash stays suppressed.
    with engine.begin() as conn:
        conn.execute(
            insert(X).values(
                email_hash=email_hash("f@bücher.ch"),
                reason="unsubscribed",
                source="old",
                created_at=now,
            )
        )
        assert suppression_of(conn, "f@xn--bcher-kva.ch") == "unsubscribed"
    engine.dispose()
