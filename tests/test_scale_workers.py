"""Many senders, one issue: ``digest send --workers N`` and long-running ``digest
worker`` processes on SQLite and PostgreSQL — each subscriber once (at most one batch
of duplicates per killed worker, same Message-IDs), pause reaches every worker, and
the lease owners name each "machine"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import settings_env
from conftest import TEST_SECRET, throwaway_postgres
from smtp_faults import (
    FaultHandler,
    FaultPlan,
    fault_smtp,
    seed_issue_store,
    smtp_settings,
    start_issue,
)
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.settings import Settings
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine, migrate
from digest.store.models import Delivery

pytestmark = pytest.mark.slow

DIGEST = Path(sys.executable).parent / "digest"
BATCH = 25
D = Delivery.__table__  # type: ignore[attr-defined]


def _env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(settings_env(settings))
    env.update(
        DIGEST_TRANSPORT="smtp",
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(port),
        DIGEST_SMTP_CONNECTIONS="1",
        DIGEST_BATCH_SIZE=str(BATCH),
        DIGEST_LEASE_SECONDS="3",
        DIGEST_RETRY_BASE_SECONDS="0.05",
        DIGEST_RETRY_MAX_SECONDS="0.2",
        **extra,
    )
    return env


def _wait(condition: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    with throwaway_postgres() as url:
        settings = Settings(
            database_url=url,
            secret_key=TEST_SECRET,
            transport="memory",
            base_url="http://digest.test",
            from_address="Weekly AI Tool Verdicts <digest@verdicts.test>",
            allow_unsafe_send=True,
            preflight_health_timeout=0,
        )
        engine = make_engine(url)
        migrate(engine)
        yield settings, engine
        engine.dispose()


def test_send_with_two_worker_processes_on_sqlite(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    emails = seed_issue_store(engine, settings, tmp_path, 300)
    handler = FaultHandler(FaultPlan(rate_451=0.05))
    with fault_smtp(handler) as server:
        s = smtp_settings(settings, server, batch_size=BATCH, smtp_connections=2)
        result = weekly_job(s, engine=engine, week=WEEK, workers=2)
    assert result.report is not None
    assert "by 2 worker processes" in result.report.summary()
    assert result.report.sent == 300 and result.report.stopped is None
    copies = handler.copies()
    assert set(copies) == set(emails) and set(copies.values()) == {1}
    info = issue_status(engine, WEEK)
    assert info is not None and info["state"] == "sent" and info["counts"]["sent"] == 300


def test_digest_send_with_workers_leaves_the_sqlite_store_closed(
    tmp_path: Path, settings: Settings, engine: Engine
) -> None:
    """The real command, end to end: its workers come from the fork server, and the
    command ends without a shutdown collection (``gc.freeze``), so it must close its
    database connections itself. SQLite removes the ``-wal`` and ``-shm`` files only
    when the last connection closes; left open, they would stay beside the file."""
    emails = seed_issue_store(engine, settings, tmp_path, 120)
    engine.dispose()
    database = tmp_path / "digest.db"
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        env = _env(settings, server.port)
        done = subprocess.run(
            [str(DIGEST), "send", "--week", WEEK, "--yes", "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "120 sent" in done.stdout and "by 2 worker processes" in done.stdout
    assert set(handler.copies()) == set(emails) and set(handler.copies().values()) == {1}
    assert database.exists()
    assert not [p.name for p in tmp_path.glob("digest.store.engine-*")]


@pytest.mark.postgres
def test_four_workers_on_postgres_one_killed_every_subscriber_once(
    tmp_path: Path, pg: tuple[Settings, Engine]
) -> None:
    settings, engine = pg
    emails = seed_issue_store(engine, settings, tmp_path, 600)
    number = start_issue(engine, settings)
    handler = FaultHandler(FaultPlan(rate_slow=1.0, slow_seconds=0.004))
    owners: set[str] = set()
    with fault_smtp(handler) as server:
        procs = [
            subprocess.Popen(
                [str(DIGEST), "worker", "--issue", str(number), "--until-done"],
                env=_env(settings, server.port, DIGEST_WORKER_NAME=f"machine-{'ab'[i % 2]}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(4)
        ]

        def leased() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(D.c.lease_owner).where(D.c.lease_owner.is_not(None))
                ).scalars()
                owners.update(o.split(":")[0] for o in rows)
            return {"machine-a", "machine-b"} <= owners and handler.total >= 150

        _wait(leased, "both machines to hold leases")
        procs[0].send_signal(signal.SIGKILL)
        for proc in procs[1:]:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
            assert b"worker:" in out
        procs[0].wait(timeout=10)
    copies = handler.copies()
    assert set(copies) == set(emails), "somebody was missed"
    assert sum(n - 1 for n in copies.values()) <= BATCH  # the killed worker's one batch
    for email, n in copies.items():
        if n > 1:
            assert len(handler.message_ids(email)) == 1, email
    info = issue_status(engine, number=number)
    assert info is not None and info["state"] == "sent" and info["counts"]["sent"] == 600


@pytest.mark.postgres
def test_pause_reaches_every_worker(tmp_path: Path, pg: tuple[Settings, Engine]) -> None:
    settings, engine = pg
    emails = seed_issue_store(engine, settings, tmp_path, 2400)
    number = start_issue(engine, settings)
    handler = FaultHandler(FaultPlan(rate_slow=1.0, slow_seconds=0.004))
    with fault_smtp(handler) as server:
        env = _env(settings, server.port)

        def worker(*args: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [str(DIGEST), "worker", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )

        # Workers that leave when their issue stops sending: each one's exit is its
        # acknowledgement that it saw the pause (after recording the batch in hand).
        procs = [worker("--issue", str(number), "--until-done") for _ in range(3)]
        _wait(lambda: handler.total >= 100, "the send to get going")
        subprocess.run(
            [str(DIGEST), "pause", "--issue", str(number)], env=env, check=True, timeout=60
        )
        at_pause = handler.total
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
        # What the three had in hand, or handed over before they read the pause.
        assert handler.total - at_pause <= 3 * BATCH
        assert _in_flight(engine) == 0 and _state(engine, number) == "paused"
        assert handler.total < len(emails)
        # A long-running worker picks the issue up once it is resumed, then SIGTERM.
        daemon = worker("--poll", "0.2")
        subprocess.run(
            [str(DIGEST), "resume", "--issue", str(number), "--no-send"],
            env=env,
            check=True,
            timeout=60,
        )
        _wait(lambda: _state(engine, number) == "sent", "the resumed send to finish", 120)
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=60)
        assert daemon.returncode == 0 and b"stopped by a signal" in out
    copies = handler.copies()
    assert set(copies) == set(emails) and set(copies.values()) == {1}


def _in_flight(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(text("SELECT count(*) FROM delivery WHERE state = 'sending'")).scalar_one()
        )


def _state(engine: Engine, number: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT state FROM issue WHERE number = :n"), {"n": number}
            ).scalar_one()
        )


def _busiest_second(times: list[float]) -> int:
    """The most deliveries in any one-second window."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def _run_workers(env: dict[str, str], number: int, count: int) -> None:
    procs = [
        subprocess.Popen(
            [str(DIGEST), "worker", "--issue", str(number), "--until-done"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()


@pytest.mark.postgres
def test_the_global_rate_holds_across_workers(tmp_path: Path, pg: tuple[Settings, Engine]) -> None:
    settings, engine = pg
    emails = seed_issue_store(engine, settings, tmp_path, 200)
    number = start_issue(engine, settings)
    rate = 40
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        # Three workers with one shared limit; each alone would be allowed all of it.
        _run_workers(_env(settings, server.port, DIGEST_RATE_LIMIT=str(rate)), number, 3)
    assert set(handler.copies()) == set(emails)
    assert _busiest_second(handler.delivered_at) <= rate + BATCH


@pytest.mark.postgres
def test_a_domain_limit_holds_while_other_domains_flow(
    tmp_path: Path, pg: tuple[Settings, Engine]
) -> None:
    settings, engine = pg
    emails = seed_issue_store(engine, settings, tmp_path, 150)
    slow = [f"slow{i:02d}@slow.example" for i in range(20)]
    from sqlalchemy import update

    from digest.store.subscriber_models import Subscriber

    S = Subscriber.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:  # the first 20 readers move to the limited domain
        for old, new in zip(emails, slow, strict=False):
            conn.execute(update(S).where(S.c.email == old).values(email=new))
    number = start_issue(engine, settings)
    handler = FaultHandler()
    with fault_smtp(handler) as server:
        env = _env(settings, server.port, DIGEST_DOMAIN_LIMITS="slow.example=4/s")
        _run_workers(env, number, 2)
    copies = handler.copies()
    assert set(copies) == set(slow) | set(emails[20:]) and set(copies.values()) == {1}
    at = {rcpt: when for rcpt, when in handler.arrivals}
    slow_times = [at[r] for r in slow]
    other_times = [at[r] for r in emails[20:]]
    # The limited domain never gets more than its burst plus a second's worth …
    assert _busiest_second(slow_times) <= 2 * 4
    # … and waiting for it holds nobody else up: the rest were all done before it was.
    assert max(other_times) < max(slow_times)
    info = issue_status(engine, number=number)
    assert info is not None and info["state"] == "sent" and info["counts"]["failed"] == 0


def test_workers_come_from_a_fork_server_that_preloads_what_they_import() -> None:
    """The fork server skips a module it cannot import without a word, and every
    worker would then import it again itself: each one named must exist."""
    import multiprocessing

    from digest.delivery.launch import PRELOAD, worker_context

    # In a fresh interpreter, as the fork server imports them (and so that the freeze
    # does not reach this test process): each imports, and what they imported is out
    # of the collector's reach afterwards (see digest/cli/preload.py).
    probe = "import gc, importlib, sys\nfor name in sys.argv[1:]: importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", probe + "print(gc.get_freeze_count())", *PRELOAD],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10_000
    expected = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    assert worker_context().get_start_method() == expected
