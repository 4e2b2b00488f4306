"""Issue 22 item 3: one helper decides who "a client" is for every throttled route.

Twelve addresses of one IPv6 /64 are one client: the sign-up form, the fresh
unsubscribe link form and the console login each answer 429 once the budget of that
/64 is spent (before the fix, the last two counted each address on its own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_support import BASE, csrf_of, make_console
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.http.client import client_key, rate_key
from digest.http.throttle import SharedThrottle

pytestmark = pytest.mark.clock

SAME_64 = [f"2001:db8:1:2:{i:x}::{i + 7:x}" for i in range(1, 13)]
LIMIT = 3


def _statuses(settings: Settings, engine: Engine, tmp_path: Path, route: str) -> list[int]:
    console = make_console(
        settings,
        engine,
        tmp_path,
        subscribe_rate_limit=LIMIT,
        console_login_limit=LIMIT,
    )
    statuses = []
    for n, address in enumerate(SAME_64):
        client = TestClient(console.app, base_url=BASE, client=(address, 40000 + n))
        if route == "login":
            form = csrf_of(client.get("/console/login"))
            data = {"email": f"nobody{n}@example.com", "password": "x" * 12, "csrf": form}
            answer = client.post("/console/login", data=data)
        else:
            answer = client.post(route, data={"email": f"reader{n}@example.com"})
        statuses.append(answer.status_code)
    return statuses


@pytest.mark.parametrize("route", ["/subscribe", "/unsubscribe", "login"])
def test_twelve_addresses_of_one_slash_64_share_one_budget(
    settings: Settings, engine: Engine, tmp_path: Path, route: str
) -> None:
    statuses = _statuses(settings, engine, tmp_path, route)
    assert 429 not in statuses[:LIMIT], statuses
    assert statuses[LIMIT:] == [429] * (len(SAME_64) - LIMIT), statuses


def test_the_client_key_is_the_address_or_its_slash_64() -> None:
    class Scope:
        def __init__(self, host: str) -> None:
            self.client = type("C", (), {"host": host})()

    assert {client_key(Scope(a)) for a in SAME_64} == {"2001:db8:1:2::/64"}  # type: ignore[arg-type]
    assert client_key(Scope("::ffff:198.51.100.7")) == "198.51.100.7"  # type: ignore[arg-type]
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")


def test_the_shared_throttle_is_one_budget_for_every_process(engine: Engine) -> None:
    """Two throttles on one store (two server processes) draw on one budget, and a
    refused request spends none of it."""
    now = [1_000_000.0]
    first, second = (SharedThrottle(engine, "form", 4, 600, clock=lambda: now[0]) for _ in range(2))
    allowed = [t.hit("198.51.100.7") is None for t in (first, second) * 3]
    assert allowed == [True, True, True, True, False, False]
    assert first.hit("198.51.100.8") is None  # another client has its own budget
    # Half-way into the next window, half of the last one still counts: 2 + 1 ≤ 4 …
    now[0] = (now[0] // 600 + 1.5) * 600
    assert [first.hit("198.51.100.7") is None for _ in range(3)] == [True, True, False]
    # … and a window later, the whole budget is back.
    now[0] += 1200
    assert all(second.hit("198.51.100.7") is None for _ in range(4))
