"""``digest serve --workers 2``: two real server processes on one store (issue 28
items 2 and 3). A storm of one-click unsubscribes — every link several times, one of
them forty times — records each unsubscribe exactly once; the sign-up throttle is one
budget for both processes; a client's clicks count once; /metrics adds up both."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import TEST_SECRET, rig_settings, throwaway_postgres
from servers import digest_serve, free_port, wait_for
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine
from store_support import WEEK, seed_store

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter
from digest.issue.freeze import freeze_issue
from digest.store.engine import make_engine, migrate, session_scope
from digest.store.models import ClickCount, Issue, IssueLink
from digest.store.subscriber_models import ConsentEvent, Subscriber, Suppression

pytestmark = [pytest.mark.clock, pytest.mark.slow]

DIGEST = str(Path(sys.executable).with_name("digest"))
S = Subscriber.__table__  # type: ignore[attr-defined]
C = ConsentEvent.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
K = ClickCount.__table__  # type: ignore[attr-defined]
L = IssueLink.__table__  # type: ignore[attr-defined]
READERS = 60
SIGNUPS = 4


@contextmanager
def _store(backend: str, tmp_path: Path) -> Iterator[tuple[Settings, Engine]]:
    if backend == "sqlite":
        settings = rig_settings(tmp_path)
        engine = make_engine(settings.database_url)
        yield settings, engine
        engine.dispose()
        return
    with throwaway_postgres() as url:
        engine = make_engine(url)
        yield rig_settings(tmp_path, database_url=url), engine
        engine.dispose()


def _seed(settings: Settings, engine: Engine, tmp_path: Path) -> tuple[list[str], str]:
    """A sent issue and READERS active readers: their unsubscribe tokens, a click token."""
    migrate(engine)
    seed_store(engine, settings, tmp_path)
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(update(I).values(state="sent", started_at=now, finished_at=now))
        conn.execute(
            insert(S),
            [
                {
                    "email": f"storm{i:03d}@example.com",
                    "status": "active",
                    "source": "test",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(READERS)
            ],
        )
        rows = conn.execute(
            select(S.c.id, S.c.email).where(S.c.email.like("storm%")).order_by(S.c.id)
        ).all()
        link = conn.execute(select(func.min(L.c.id))).scalar_one()
    minter = TokenMinter(settings, "unsubscribe")
    return [minter.for_address(r.id, r.email) for r in rows], TokenMinter(settings, "click").make(
        link
    )


@contextmanager
def _serve(settings: Settings, tmp_path: Path, workers: int) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PROMETHEUS"))}
    env.update(
        DIGEST_DATABASE_URL=settings.database_url,
        DIGEST_SECRET_KEY=TEST_SECRET,
        DIGEST_BASE_URL="http://digest.test",
        DIGEST_TRANSPORT="maildir",
        DIGEST_OUTBOX=str(tmp_path / "outbox"),
        DIGEST_SUBSCRIBE_RATE_LIMIT=str(SIGNUPS),
    )
    port = free_port()
    with digest_serve(env, tmp_path, port, "--workers", str(workers)) as base:
        yield base
    text = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in text, text
    if workers > 1:
        assert len(set(re.findall(r"Started server process \[(\d+)\]", text))) == workers, text


def _storm(base: str, requests: list[tuple[str, str, dict[str, str] | None]]) -> list[int]:
    with httpx.Client(base_url=base, timeout=60) as client:

        def one(request: tuple[str, str, dict[str, str] | None]) -> int:
            method, path, data = request
            return client.request(method, path, data=data).status_code

        with ThreadPoolExecutor(24) as pool:
            return list(pool.map(one, requests))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_record_every_unsubscribe_once_and_share_every_limit(
    backend: str, tmp_path: Path
) -> None:
    with _store(backend, tmp_path) as (settings, engine):
        tokens, click = _seed(settings, engine, tmp_path)
        with engine.connect() as conn:
            before = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
        one_click = {"List-Unsubscribe": "One-Click"}
        storm = [("POST", f"/unsubscribe/{t}", one_click) for t in tokens * 3]
        storm += [("POST", f"/unsubscribe/{tokens[0]}", one_click)] * 40
        storm += [("GET", f"/r/{click}", None)] * 50
        storm += [("POST", "/subscribe", {"email": f"new{i}@example.com"}) for i in range(12)]
        with _serve(settings, tmp_path, workers=2) as base:
            answers = _storm(base, storm)
            unsubscribes = answers[: len(tokens) * 3 + 40]
            assert set(unsubscribes) == {200}
            assert set(answers[-62:-12]) == {302}  # every click redirected
            # One budget for both processes: exactly the limit got through.
            assert sorted(answers[-12:]) == [200] * SIGNUPS + [429] * (12 - SIGNUPS)
            pages = {httpx.get(f"{base}/archive/1").headers["etag"] for _ in range(6)}
            assert len(pages) == 1  # both processes render the same page
            scrapes = [httpx.get(f"{base}/metrics").text for _ in range(4)]
        with engine.connect() as conn:
            logged = dict(
                conn.execute(
                    select(C.c.subscriber_id, func.count())
                    .where(C.c.action == "unsubscribe")
                    .group_by(C.c.subscriber_id)
                ).all()
            )
            statuses = set(
                conn.execute(select(S.c.status).where(S.c.email.like("storm%"))).scalars()
            )
            suppressed = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
            clicks = conn.execute(select(func.sum(K.c.clicks))).scalar_one()
        assert len(logged) == READERS and set(logged.values()) == {1}
        assert statuses == {"unsubscribed"} and suppressed - before == READERS
        assert clicks == 1  # one client, one link, one hour — written by the clean stop
        # Whichever process answered the scrape, it counted both processes' redirects.
        for text in scrapes:
            assert 'digest_web_requests_total{status="302"} 50.0' in text, text


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _workers_of(proc: subprocess.Popen[bytes]) -> list[int]:
    """The server processes (spawned interpreters), not multiprocessing's tracker."""
    return [
        child
        for child in _children(proc.pid)
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        and "resource_tracker" not in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
    ]


def _gone(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_dead_worker_stops_the_set_and_a_killed_parent_takes_its_workers(
    tmp_path: Path,
) -> None:
    settings = rig_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PROMETHEUS"))}
    env.update(DIGEST_DATABASE_URL=settings.database_url, DIGEST_SECRET_KEY=TEST_SECRET)
    for how in ("worker dies", "parent killed"):
        port = free_port()
        with (tmp_path / f"{how}.log").open("wb") as out:
            proc = subprocess.Popen(
                [DIGEST, "serve", "--port", str(port), "--workers", "2"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )

        def up(port: int = port) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(up, "digest serve --workers to answer")
            wait_for(lambda p=proc: len(_workers_of(p)) == 2, "two worker processes")  # type: ignore[misc]
            workers = _workers_of(proc)
            if how == "worker dies":
                os.kill(workers[0], signal.SIGKILL)
                assert proc.wait(timeout=60) == 1  # for systemd to restart the set
            else:
                proc.kill()
                proc.wait()
            wait_for(lambda w=workers: _gone(w), "every worker to stop")  # type: ignore[misc]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    """Even by another `digest serve --workers` (whose SO_REUSEPORT sockets ours could
    otherwise join, splitting its traffic with a stranger)."""
    settings = rig_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PROMETHEUS"))}
    env.update(DIGEST_DATABASE_URL=settings.database_url, DIGEST_SECRET_KEY=TEST_SECRET)
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        done = subprocess.run(
            [DIGEST, "serve", "--port", str(port), "--workers", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
    finally:
        holder.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout
