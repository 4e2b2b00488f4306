"""Issue 22 item 2: no client can lock a console user out.

Wrong passwords lock the (account, client) pair with back-off; the real user from
their own client logs in whatever others send; a one-time set-password link lifts
every lock; and the answers are the same whether the account exists or not.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from console_support import BASE, EDITOR, PASSWORD, Console, csrf_of, make_console
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine
from subscriber_support import Store

from digest.accounts.lockout import (
    BASE_SECONDS,
    FORGET_SECONDS,
    MAX_SECONDS,
    LoginLockout,
    SharedLoginLockout,
)
from digest.accounts.service import reset_link
from digest.core.settings import Settings
from digest.store.engine import session_scope
from digest.web.app import create_app

pytestmark = pytest.mark.clock

ATTACKER, USER = "198.51.100.7", "203.0.113.9"


class Ticks:
    """An injected monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        # From the real time: the store's throttle rows are pruned by it.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(settings: Settings, engine: Engine, tmp_path: Path) -> tuple[Console, Ticks]:
    # The per-client-IP limit is lifted so the lock-out alone is under test.
    console = make_console(settings, engine, tmp_path, console_login_limit=10_000)
    ticks = Ticks()
    # What digest serve uses (the store's table), on the test's clock.
    console.app.state.console_login_lockout = SharedLoginLockout(engine, clock=ticks)
    return console, ticks


def _client(console: Console, ip: str) -> TestClient:
    return TestClient(console.app, base_url=BASE, client=(ip, 40000))


def _login(client: TestClient, email: str, password: str) -> Response:
    form = csrf_of(client.get("/console/login"))
    return client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf": form},
        follow_redirects=False,
    )


def test_an_anonymous_client_cannot_lock_the_real_user_out(
    rig: tuple[Console, Ticks],
) -> None:
    console, ticks = rig
    attacker = _client(console, ATTACKER)
    for _ in range(8):  # as often as it likes, the lock renewed all along
        _login(attacker, EDITOR, "not the password")
        ticks.now += 90
    assert "too many wrong attempts" in _login(attacker, EDITOR, PASSWORD).text
    # The user, from their own address, is in at once.
    assert _login(_client(console, USER), EDITOR, PASSWORD).status_code == 303
    # And from another address in the attacker's /64? IPv6 neighbours share a key; a
    # different network does not.
    assert _login(_client(console, "2001:db8:1::5"), EDITOR, PASSWORD).status_code == 303


def test_answers_do_not_reveal_which_accounts_exist(rig: tuple[Console, Ticks]) -> None:
    console, _ticks = rig

    def answers(email: str) -> list[tuple[int, str]]:
        client = _client(console, ATTACKER)
        said = []
        for _ in range(6):
            page = _login(client, email, "not the password")
            alert = page.text.split('id="login-error">', 1)[1].split("<", 1)[0]
            said.append((page.status_code, alert))
        return said

    known, unknown = answers(EDITOR), answers("nobody-here@example.com")
    assert known == unknown
    assert known[0][0] == 401 and "wrong address or password" in known[0][1]
    assert "too many wrong attempts" in known[-1][1]


def test_the_pair_backs_off_and_then_the_right_password_logs_in(
    rig: tuple[Console, Ticks],
) -> None:
    console, ticks = rig
    client = _client(console, USER)
    for _ in range(5):
        assert "wrong address or password" in _login(client, EDITOR, "typo typo typo").text
    lockout: LoginLockout = console.app.state.console_login_lockout
    account = EDITOR
    assert lockout.wait(account, USER) == BASE_SECONDS
    # Locked: even the right password waits (else the lock would test passwords).
    assert "try again in 60 seconds" in _login(client, EDITOR, PASSWORD).text
    ticks.now += BASE_SECONDS + 1
    _login(client, EDITOR, "typo typo typo")
    assert lockout.wait(account, USER) == 2 * BASE_SECONDS  # doubled
    for _ in range(4):  # 240, 480, 900 (not 960), 900
        ticks.now += MAX_SECONDS + 1
        _login(client, EDITOR, "typo typo typo")
    assert lockout.wait(account, USER) == MAX_SECONDS  # capped
    ticks.now += MAX_SECONDS + 1
    assert _login(client, EDITOR, PASSWORD).status_code == 303
    assert lockout.wait(account, USER) is None


def test_a_set_password_link_lifts_the_lock(rig: tuple[Console, Ticks]) -> None:
    console, _ticks = rig
    client = _client(console, USER)
    for _ in range(6):
        _login(client, EDITOR, "typo typo typo")
    assert "too many wrong attempts" in _login(client, EDITOR, PASSWORD).text
    with session_scope(console.engine) as session:
        token = reset_link(session, EDITOR)
    setup = client.get(f"/console/setup/{token}")
    new = "a brand new editor password"
    done = client.post(
        f"/console/setup/{token}",
        data={"password": new, "again": new, "csrf": csrf_of(setup)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert _login(_client(console, USER), EDITOR, new).status_code == 303


def test_every_server_process_sees_the_same_locks(rig: tuple[Console, Ticks]) -> None:
    console, ticks = rig
    other = create_app(console.settings, engine=console.engine)  # a second worker
    other.state.console_login_lockout = SharedLoginLockout(console.engine, clock=ticks)
    first = _client(console, ATTACKER)
    for _ in range(5):
        _login(first, EDITOR, "not the password")
    assert other.state.console_login_lockout.wait(EDITOR, ATTACKER) == BASE_SECONDS
    second = TestClient(other, base_url=BASE, client=(ATTACKER, 40001))
    answer = _login(second, EDITOR, PASSWORD)
    assert "too many wrong attempts" in answer.text, answer.headers
    user = TestClient(other, base_url=BASE, client=(USER, 40002))
    assert _login(user, EDITOR, PASSWORD).status_code == 303


@pytest.mark.parametrize("kind", ["memory", "shared"])
def test_both_lockouts_count_alike(store: Store, kind: str) -> None:
    ticks = Ticks()
    lockout = (
        LoginLockout(clock=ticks)
        if kind == "memory"
        else SharedLoginLockout(store.engine, clock=ticks)
    )
    pair = ("someone+%_@example.com", "2001:db8::/64")
    for _ in range(4):
        lockout.failed(*pair)
    assert lockout.wait(*pair) is None
    lockout.failed(*pair)
    assert lockout.wait(*pair) == BASE_SECONDS
    assert lockout.wait(pair[0], "192.0.2.1") is None and lockout.wait("x@y.z", pair[1]) is None
    ticks.now += BASE_SECONDS
    assert lockout.wait(*pair) is None
    lockout.failed(*pair)
    assert lockout.wait(*pair) == 2 * BASE_SECONDS
    ticks.now += FORGET_SECONDS + 1  # a day quiet: it starts afresh
    lockout.failed(*pair)
    assert lockout.wait(*pair) is None
    for _ in range(5):
        lockout.failed(*pair)
    lockout.clear("someone+%_@example.com")
    assert lockout.wait(*pair) is None
    for _ in range(5):
        lockout.failed(*pair)
    lockout.succeeded(*pair)
    assert lockout.wait(*pair) is None
