"""The store on both databases: every test here runs on SQLite and, when
``DIGEST_TEST_POSTGRES_URL`` is set, on PostgreSQL too (each run in a fresh schema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import throwaway_postgres
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from store_support import WEEK, dated, dump_store, sample_items, seed_store, write_json

from digest.core.settings import Settings
from digest.delivery.queue import enqueue
from digest.exceptions import ImportValidationError
from digest.issue.freeze import freeze_issue
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine, migrate, session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Comparison
from digest.transports.memory import MemoryTransport

pytestmark = pytest.mark.clock  # dates on PostgreSQL

TABLES = {"comparison", "tool", "review", "issue", "issue_comparison", "delivery", "subscriber"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """Settings whose database is a fresh SQLite file or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield settings
        return
    with throwaway_postgres() as url:
        yield settings.model_copy(update={"database_url": url})


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(store_settings.database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_migrate_creates_every_table_and_is_idempotent(store: Engine) -> None:
    names = set(inspect(store).get_table_names())
    assert names >= TABLES
    assert "alembic_version" in names
    migrate(store)  # a second run is a no-op
    assert set(inspect(store).get_table_names()) == names


def test_import_reimport_and_all_or_nothing(
    store: Engine, store_settings: Settings, tmp_path: Path
) -> None:
    items = dated(sample_items(), store_settings)
    summary = import_comparisons(store, [write_json(tmp_path / "a.json", items)])
    assert summary.created == len(items) and summary.updated == 0

    items[0]["tools"][1]["tagline"] = "Changed tagline"
    items[0]["tools"][1]["community_pct"] = None
    again = import_comparisons(store, [write_json(tmp_path / "b.json", items)])
    assert again.created == 0 and again.updated == len(items)
    with Session(store) as session:
        rows = session.exec(select(Comparison)).all()
        assert len(rows) == len(items)
        first = next(c for c in rows if c.slug == items[0]["slug"])
        assert first.tools[1].tagline == "Changed tagline"
        assert first.tools[1].community_pct is None
        assert [r.lens for r in first.tools[0].reviews] == [
            "dx",
            "competition",
            "thesis",
            "business",
        ]

    before = dump_store(store)
    broken = json.loads(json.dumps(items))
    broken[1]["tools"][0]["reviews"] = broken[1]["tools"][0]["reviews"][:3]
    broken[0]["title"] = "Would be written if imports were not atomic"
    with pytest.raises(ImportValidationError, match="missing lens business"):
        import_comparisons(store, [write_json(tmp_path / "c.json", broken)])
    assert dump_store(store) == before


def test_times_round_trip_as_aware_utc(
    store: Engine, store_settings: Settings, tmp_path: Path
) -> None:
    items = sample_items()[:1]
    items[0]["published_at"] = "2026-11-15T23:30:00+13:00"
    import_comparisons(store, [write_json(tmp_path / "t.json", items)])
    with Session(store) as session:
        stored = session.exec(select(Comparison)).one()
    assert stored.published_at == datetime(2026, 11, 15, 10, 30, tzinfo=UTC)
    assert stored.published_at.utcoffset() is not None


def test_freeze_enqueue_send_on_memory_transport(
    store: Engine, store_settings: Settings, tmp_path: Path
) -> None:
    _count, emails = seed_store(store, store_settings, tmp_path)
    with session_scope(store) as session:
        issue = freeze_issue(session, WEEK, store_settings)
        assert issue is not None and issue.id is not None
        issue_id = issue.id
    with session_scope(store) as session:
        again = freeze_issue(session, WEEK, store_settings)
        assert again is not None and again.id == issue_id  # one issue per week

    # Enqueue twice: still one delivery row per (issue, subscriber). Rows are counted
    # in the table, not from enqueue's return value (a driver's rowcount for
    # INSERT ... SELECT is not reliable: psycopg 3 under SQLAlchemy 2.1 reports -1).
    for _ in range(2):
        with store.begin() as conn:
            enqueue(conn, issue_id)
    queued = issue_status(store, WEEK)
    assert queued is not None
    assert queued["total"] == queued["counts"]["queued"] == len(emails)

    transport = MemoryTransport()
    result = weekly_job(store_settings, engine=store, transport=transport, week=WEEK)
    assert result.report is not None and result.report.sent == len(emails)
    assert sorted(m.recipient.email for m in transport.outbox) == sorted(emails)
    assert len({m.message_id for m in transport.outbox}) == len(emails)

    rerun = weekly_job(store_settings, engine=store, transport=transport, week=WEEK)
    assert rerun.outcome == "already-sent"
    assert len(transport.outbox) == len(emails)
    info = issue_status(store, WEEK)
    assert info is not None
    assert info["state"] == "sent"
    assert info["counts"]["sent"] == len(emails) == info["total"]
