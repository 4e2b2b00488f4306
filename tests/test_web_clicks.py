"""Clicks through ``/r/<token>`` (issue 22 item 11, issue 28): a client counts once per
link per hour, across every server process; the redirect is always served; counts
are written in bulk by the process's flush, never by the request."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from store_support import WEEK, seed_store
from subscriber_support import Store, store  # noqa: F401

from digest.core.settings import Settings
from digest.core.tokens import TokenMinter
from digest.issue.click_buffer import ClickBuffer
from digest.issue.freeze import freeze_issue
from digest.store.engine import session_scope
from digest.store.models import ClickCount, ClickSeen, IssueLink
from digest.web.app import create_app

pytestmark = pytest.mark.clock

K = ClickCount.__table__  # type: ignore[attr-defined]
SEEN = ClickSeen.__table__  # type: ignore[attr-defined]
L = IssueLink.__table__  # type: ignore[attr-defined]


def _links(engine: Engine, settings: Settings, tmp_path: Path) -> list[str]:
    seed_store(engine, settings, tmp_path)
    with session_scope(engine) as session:
        assert freeze_issue(session, WEEK, settings) is not None
    with engine.connect() as conn:
        ids = conn.execute(select(L.c.id).order_by(L.c.id)).scalars().all()
    minter = TokenMinter(settings, "click")
    return [minter.make(link) for link in ids]


def _clicks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(K.c.clicks), 0))).scalar_one())


def test_a_client_counts_once_per_link_per_hour_and_is_always_redirected(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    tokens = _links(engine, settings, tmp_path)
    app = create_app(settings, engine=engine)
    app.state.clicks.stop()
    # The test flushes by hand: a background flush a second in (200 requests can take
    # that long on a loaded machine) would race the "nothing written yet" check.
    clicks = app.state.clicks = ClickBuffer(engine, settings, interval=3600.0)
    one = TestClient(app, client=("198.51.100.7", 1000), follow_redirects=False)
    answers = [one.get(f"/r/{tokens[0]}").status_code for _ in range(200)]
    assert answers == [302] * 200
    # No write per click: nothing is in the store until the process flushes.
    assert _clicks(engine) == 0
    assert clicks.flush() == 1 and _clicks(engine) == 1
    # Another address of the same IPv6 /64 is the same client; another network is not.
    for host in ("2001:db8:5:6::1", "2001:db8:5:6:ffff::2", "203.0.113.9"):
        client = TestClient(app, client=(host, 1000), follow_redirects=False)
        assert client.get(f"/r/{tokens[0]}").status_code == 302
        assert client.head(f"/r/{tokens[1]}").status_code == 302  # HEAD: not counted
    assert one.get(f"/r/{tokens[1]}").status_code == 302  # another link counts apart
    clicks.flush()
    assert _clicks(engine) == 1 + 2 + 1


def test_two_processes_count_a_client_once_and_an_hour_later_again(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    tokens = _links(store.engine, store.settings, tmp_path)
    now = [7_200_000.0 + 60]
    first, second = (
        ClickBuffer(store.engine, store.settings, clock=lambda: now[0]) for _ in range(2)
    )
    target = first.lookup(tokens[0])
    assert second.lookup(tokens[0]) == target
    for buffer in (first, second, first, second):
        buffer.record(target, "198.51.100.7")
    assert first.flush() + second.flush() == 1
    first.record(target, "198.51.100.8")
    second.record(target, "198.51.100.8")
    assert second.flush() + first.flush() == 1
    now[0] += 3600  # the next clock hour: the same client counts again
    first.record(target, "198.51.100.7")
    second.record(target, "198.51.100.7")
    assert first.flush() + second.flush() == 1
    assert _clicks(store.engine) == 3
    # Two hours on, the first hour's digests are gone from the store.
    now[0] += 2 * 3600
    first.record(target, "198.51.100.9")
    first.flush()
    with store.engine.connect() as conn:
        hours = set(conn.execute(select(SEEN.c.hour)).scalars())
    assert hours and min(hours) >= int(now[0] // 3600) - 1


def test_the_background_flush_writes_counts_without_a_request(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    tokens = _links(engine, settings, tmp_path)
    buffer = ClickBuffer(engine, settings, interval=0.05)
    buffer.record(buffer.lookup(tokens[0]), "198.51.100.7")
    try:
        for _ in range(400):  # the thread's own pace, not a timing claim
            if _clicks(engine):
                break
            buffer._stopped.wait(0.05)
        assert _clicks(engine) == 1
    finally:
        buffer.stop()
    # A clean stop writes what is left.
    buffer.record(buffer.lookup(tokens[1]), "198.51.100.7")
    buffer.stop()
    assert _clicks(engine) == 2


def test_a_forged_token_is_refused_and_never_cached(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    tokens = _links(engine, settings, tmp_path)
    app = create_app(settings, engine=engine)
    client = TestClient(app, follow_redirects=False)
    forged = tokens[0][:-2] + ("AA" if tokens[0][-2:] != "AA" else "BB")
    for _ in range(2):
        assert client.get(f"/r/{forged}").status_code == 404
    assert app.state.clicks.cached(forged) is None
