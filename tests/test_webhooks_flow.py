"""End to end: send through a provider API (a local server), receive its bounce and
complaint webhooks, see them in ``digest status --json``, and find the addresses gone
from the next issue's send. Also the event store on PostgreSQL and its migration."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import throwaway_postgres
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from provider_server import Captured, ProviderServer, Reply, configure, seed_store
from sqlalchemy import select
from sqlalchemy.engine import Engine
from webhook_helpers import add_reader, client_for, status_of

from digest.core.settings import Settings
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine, migrate
from digest.store.models import Delivery
from digest.webhooks.events import EventKind, MailEvent, MailEventRecord, apply_events

pytestmark = pytest.mark.clock  # issues of given weeks

KEY = "SG.flow"


def sendgrid(req: Captured) -> Reply:
    return Reply(202, b"", {"X-Message-Id": "flowmsg"})


def test_bounce_and_complaint_from_the_provider_remove_the_address(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    emails = [f"reader{i}@example.com" for i in range(6)]
    seed_store(engine, tmp_path, emails)
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    with ProviderServer(sendgrid) as server:
        s = configure(
            settings,
            transport="sendgrid",
            sendgrid_api_key=KEY,
            sendgrid_base_url=server.url,
            sendgrid_webhook_public_key=public,
        )
        first = weekly_job(s, engine=engine, week="2026-W47")
        assert first.report is not None and first.report.sent == 6

        client = client_for(s, engine)
        body = json.dumps(
            [
                {
                    "email": "reader1@example.com",
                    "event": "bounce",
                    "type": "bounce",
                    "sg_event_id": "e1",
                    "sg_message_id": "flowmsg.filter-1",
                    "timestamp": 1795000000,
                },
                {
                    "email": "reader2@example.com",
                    "event": "spamreport",
                    "sg_event_id": "e2",
                    "sg_message_id": "flowmsg.filter-2",
                    "timestamp": 1795000000,
                },
                {
                    "email": "reader3@example.com",
                    "event": "delivered",
                    "sg_event_id": "e3",
                    "sg_message_id": "flowmsg.filter-3",
                    "timestamp": 1795000000,
                },
            ]
        ).encode()
        stamp = str(int(time.time()))
        signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        answer = client.post(
            "/webhooks/sendgrid",
            content=body,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            },
        )
        assert answer.status_code == 200, answer.text

        info = issue_status(engine, "2026-W47")
        assert info is not None
        assert info["bounces"] == {"hard": 1, "soft": 0, "total": 1}
        assert info["complaints"] == 1
        assert info["events"]["delivered"] == 1
        assert status_of(engine, "reader1@example.com") == "bounced"
        assert status_of(engine, "reader2@example.com") == "complained"

        seed_store(engine, tmp_path, [], published_at="2026-11-19T10:00:00+00:00", suffix="-w48")
        server.requests.clear()
        # Both issues start this (real) week: the second is an operator's deliberate one.
        second = weekly_job(s, engine=engine, week="2026-W48", again=True)
    assert second.report is not None and second.report.sent == 4
    sent_to = {p["to"][0]["email"] for r in server.requests for p in r.json()["personalizations"]}
    assert sent_to == {e for e in emails if e not in ("reader1@example.com", "reader2@example.com")}


def test_status_json_from_the_cli_shows_bounces_and_complaints(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from digest.cli import app
    from digest.core.settings import get_settings
    from digest.transports.memory import MemoryTransport

    seed_store(engine, tmp_path, ["x@example.com"])
    weekly_job(settings, engine=engine, week="2026-W47", transport=MemoryTransport())
    with engine.connect() as conn:
        provider_id = conn.execute(
            select(Delivery.__table__.c.provider_id)  # type: ignore[attr-defined]
        ).scalar_one()
    # Tied to the issue through the provider's message id the send loop stored.
    apply_events(
        engine,
        [
            MailEvent(
                "postmark",
                "b1",
                EventKind.BOUNCED_SOFT,
                "x@example.com",
                datetime.now(UTC),
                provider_message_id=provider_id,
            )
        ],
        settings,
    )
    # The CLI reads its configuration from the environment, like an operator's shell.
    monkeypatch.setenv("DIGEST_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DIGEST_SECRET_KEY", "test-secret-key-0123456789abcdef")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["status", "--week", "2026-W47", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["bounces"] == {"hard": 0, "soft": 1, "total": 1} and data["complaints"] == 0


def test_model_matches_migration(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    mine = [d for d in diff if "mail_event" in repr(d)]
    assert mine == []


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    with throwaway_postgres() as url:
        eng = make_engine(url)
        try:
            migrate(eng)
            yield eng
        finally:
            eng.dispose()


@pytest.mark.postgres
def test_events_on_postgres(settings: Settings, pg_engine: Engine) -> None:
    sid = add_reader(pg_engine, "pg@example.com")
    s = configure(settings, soft_bounce_limit=2)
    soft = [
        MailEvent("mailgun", f"ev-{i}", EventKind.BOUNCED_SOFT, "PG@example.com", datetime.now(UTC))
        for i in range(2)
    ]
    first = apply_events(pg_engine, soft[:1], s)
    assert first.recorded == 1 and status_of(pg_engine, "pg@example.com") == "active"
    again = apply_events(pg_engine, soft, s)
    assert again.duplicates == 1 and again.recorded == 1
    assert status_of(pg_engine, "pg@example.com") == "bounced"
    with pg_engine.connect() as conn:
        table = MailEventRecord.__table__  # type: ignore[attr-defined]
        rows = conn.execute(select(table.c.subscriber_id)).scalars().all()
        assert rows == [sid, sid]
        assert conn.execute(select(Delivery.__table__.c.id)).first() is None  # type: ignore[attr-defined]
