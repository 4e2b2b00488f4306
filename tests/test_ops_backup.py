"""``digest backup PATH`` and ``digest restore PATH --yes``: back up, change, restore,
and the data is back; bad input changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from cli_support import DigestCLI
from sqlalchemy import update
from sqlalchemy.engine import Engine
from store_support import WEEK, dump_store, sample_emails, seed_store

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.jobs.weekly import weekly_job
from digest.store.models import Delivery
from digest.transports.memory import MemoryTransport


@pytest.fixture
def sent_store(settings: Settings, engine: Engine, tmp_path: Path) -> Engine:
    seed_store(engine, settings, tmp_path)
    weekly_job(settings, engine=engine, transport=MemoryTransport(), week=WEEK)
    return engine


def test_backup_change_restore_brings_the_data_back(
    sent_store: Engine, digest_cli: DigestCLI, tmp_path: Path, settings: Settings
) -> None:
    original = dump_store(sent_store)
    target = tmp_path / "backups" / "digest-backup.db"

    made = digest_cli.ok("backup", target)
    assert f"backup: {target}" in made.stdout
    assert f"{len(sample_emails())} subscribers" in made.stdout
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert copy.execute("SELECT count(*) FROM delivery").fetchone()[0] == len(sample_emails())

    digest_cli.ok("subscribers", "add", "late@example.org", "--name", "Late Comer")
    digest_cli.ok("subscribers", "forget", sample_emails()[0])
    changed = dump_store(sent_store)
    assert changed != original

    refused = digest_cli("restore", target)
    assert refused.exit_code == 2 and "--yes" in refused.output
    assert dump_store(sent_store) == changed

    restored = digest_cli.ok("restore", target, "--yes")
    assert dump_store(sent_store) == original
    (kept,) = Path(settings.database_url.removeprefix("sqlite:///")).parent.glob(
        "digest.db.before-restore-*"
    )
    assert str(kept) in restored.stdout
    with sqlite3.connect(kept) as before:  # the restore lost nothing either
        emails = {r[0] for r in before.execute("SELECT email FROM subscriber")}
    assert "late@example.org" in emails


def test_backup_refuses_to_overwrite_unless_forced(
    sent_store: Engine, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    target = tmp_path / "b.db"
    target.write_bytes(b"keep me")
    refused = digest_cli("backup", target)
    assert refused.exit_code == 1 and "exists" in refused.output
    assert target.read_bytes() == b"keep me"
    digest_cli.ok("backup", target, "--force")
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*) FROM subscriber").fetchone()[0] > 0


def test_restore_refuses_what_is_not_a_digest_backup(
    sent_store: Engine, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    original = dump_store(sent_store)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    result = digest_cli("restore", junk, "--yes")
    assert result.exit_code == 1 and "not a SQLite database" in result.output

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    result = digest_cli("restore", other, "--yes")
    assert result.exit_code == 1 and "not a digest store" in result.output

    future = tmp_path / "future.db"
    digest_cli.ok("backup", future)
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    result = digest_cli("restore", future, "--yes")
    assert result.exit_code == 1 and "does not know" in result.output

    missing = digest_cli("restore", tmp_path / "nope.db", "--yes")
    assert missing.exit_code == 1 and "no backup file" in missing.output
    assert dump_store(sent_store) == original


def test_restore_waits_for_a_running_sender(
    sent_store: Engine, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    target = tmp_path / "b.db"
    digest_cli.ok("backup", target)
    table = Delivery.__table__  # type: ignore[attr-defined]
    with sent_store.begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.id == 1)
            .values(state="sending", lease_expires_at=utcnow() + timedelta(minutes=5))
        )
    before = dump_store(sent_store)
    result = digest_cli("restore", target, "--yes")
    assert result.exit_code == 1 and "a sender is working" in result.output
    assert dump_store(sent_store) == before


def test_postgresql_gets_pg_dump_guidance_and_a_failure(digest_cli: DigestCLI) -> None:
    url = "postgresql://digest:s3cret-pass@db.internal:5432/digest"
    for command in (("backup", "x.dump"), ("restore", "x.dump", "--yes")):
        result = digest_cli(*command, DIGEST_DATABASE_URL=url)
        assert result.exit_code == 1
        assert "pg_dump --format=custom" in result.output
        assert "pg_restore" in result.output
        assert "postgresql://digest:***@db.internal:5432/digest" in result.output
        assert "s3cret" not in result.output


def test_restore_onto_a_new_machine_creates_the_database(
    sent_store: Engine, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    target = tmp_path / "b.db"
    digest_cli.ok("backup", target)
    fresh = f"sqlite:///{tmp_path / 'new-host' / 'digest.db'}"
    result = digest_cli.ok("restore", target, "--yes", DIGEST_DATABASE_URL=fresh)
    assert "before" not in result.stdout  # nothing was there to keep
    status = digest_cli.json("status", "--week", WEEK, "--json", DIGEST_DATABASE_URL=fresh)
    assert status["state"] == "sent" and status["counts"]["sent"] == len(sample_emails())
