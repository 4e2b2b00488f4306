"""SQLite locked mid-send for longer than ``DIGEST_DB_BUSY_TIMEOUT`` (issue 29): the
sender stops handing out mail while it cannot record it, carries on when the lock is
gone — every reader exactly once, exit 0, no traceback — and a lock that outlasts
``DIGEST_DB_OUTAGE_GRACE_SECONDS`` ends the send with exit 3 and one line, after which
``digest resume`` finishes it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from outage_support import (
    Outage,
    assert_everyone_once,
    assert_stopped_in_one_line,
    duplicates,
    figure,
    has_traceback,
    migrated,
    run_digest,
    send_env,
    store_settings,
)
from smtp_faults import FaultHandler, FaultPlan, FaultServer, fault_smtp, seed_issue_store
from store_support import WEEK

from digest.core.settings import Settings
from digest.jobs.status import issue_status

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

READERS = 1200
SLOW = FaultPlan(rate_slow=1.0, slow_seconds=0.003)


def locker(path: Path, seconds: float) -> float:
    """Hold the database's write lock for ``seconds`` (another process writing, a
    backup, a migration); returns when it was let go (monotonic)."""
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.monotonic()


@pytest.fixture
def store(tmp_path: Path) -> tuple[Settings, list[str]]:
    settings = store_settings(f"sqlite:///{tmp_path / 'digest.db'}", tmp_path)
    with migrated(settings.database_url) as engine:
        return settings, seed_issue_store(engine, settings, tmp_path, READERS)


def env_for(settings: Settings, server: FaultServer, **extra: str) -> dict[str, str]:
    return send_env(
        settings,
        server.host,
        server.port,
        DIGEST_DB_BUSY_TIMEOUT="0.5",
        DIGEST_BATCH_SIZE="50",
        **extra,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lock_longer_than_the_busy_timeout_is_ridden_out(
    tmp_path: Path, store: tuple[Settings, list[str]], workers: int
) -> None:
    settings, emails = store
    db = tmp_path / "digest.db"
    handler = FaultHandler(SLOW)
    with fault_smtp(handler) as server:
        env = env_for(settings, server, DIGEST_SMTP_CONNECTIONS="2")
        args = ["send", "--week", WEEK, "--yes"] + (["--workers", str(workers)] * (workers > 1))
        run = run_digest(args, env, tmp_path, "send")
        outage = Outage(handler, READERS // 4, lambda: locker(db, 4.0)).start()
        code, output = run.wait()
        outage.join()
    assert code == 0, output
    assert not has_traceback(output), output
    assert "locked" in output  # the outage was noticed (and said in one line)
    copies = handler.copies()
    assert set(copies) == set(emails) and set(copies.values()) == {1}
    with migrated(settings.database_url) as engine:
        info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "sent" and info["counts"]["sent"] == READERS
    figure(
        f"sqlite locked 4 s (busy timeout 0.5 s), {workers} worker(s)",
        sent=handler.total,
        duplicates=duplicates(handler),
        resumed_after_seconds=outage.resumed_after() or -1.0,
    )


def test_a_lock_past_the_grace_exits_3_then_resume_finishes(
    tmp_path: Path, store: tuple[Settings, list[str]]
) -> None:
    settings, emails = store
    db = tmp_path / "digest.db"
    handler = FaultHandler(SLOW)
    with fault_smtp(handler) as server:
        # The batch the sender had claimed ahead stays leased after it gives up (the
        # database refused its release), so the resume waits for that lease to run
        # out: a short lease keeps that wait short.
        env = env_for(
            settings, server, DIGEST_DB_OUTAGE_GRACE_SECONDS="2", DIGEST_LEASE_SECONDS="8"
        )
        run = run_digest(["send", "--week", WEEK, "--yes"], env, tmp_path, "send")

        def until_it_gives_up() -> float:
            conn = sqlite3.connect(db, timeout=60, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            run.proc.wait(timeout=120)
            conn.execute("COMMIT")
            conn.close()
            return time.monotonic()

        outage = Outage(handler, READERS // 4, until_it_gives_up).start()
        code, output = run.wait()
        outage.join()
        assert_stopped_in_one_line(code, output)
        resumed = run_digest(["resume", "--week", WEEK], env, tmp_path, "resume")
        code, output = resumed.wait()
    assert code == 0, output
    assert not has_traceback(output), output
    assert_everyone_once(handler, emails, duplicates_at_most=50)  # the batch in hand
