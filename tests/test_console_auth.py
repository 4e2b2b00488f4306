"""The console's accounts in the browser: login, sessions, logout, set-password
links, CSRF and origin checks, the login limit per IP, roles, the JSON API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from console_support import (
    BASE,
    EDITOR,
    OPERATOR,
    PASSWORD,
    Console,
    csrf_of,
    make_console,
)
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from digest.accounts.service import add_user, token_hash
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.jobs.schedule import prepare_draft
from digest.store.account_models import ConsoleSession
from digest.store.engine import session_scope

TOKEN = "operator-token-for-tests-0123456789"

pytestmark = pytest.mark.clock  # sessions and set-password links that expire


def _draft(console: Console) -> None:
    with session_scope(console.engine) as session:
        assert prepare_draft(session, console.settings).created


def test_anonymous_visitors_are_sent_to_the_login_form(console: Console) -> None:
    client = console.client()
    answer = client.get("/console/issues/1?x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/issues/1%3Fx%3D1"
    login = client.get("/console/login")
    assert login.status_code == 200 and 'name="password"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert "'unsafe-inline'" not in login.headers["content-security-policy"]
    assert login.headers["referrer-policy"] == "same-origin"
    # A POST without a session changes nothing and also lands on the login form.
    assert client.post("/console/draft", data={}, follow_redirects=False).status_code == 303


def test_login_sets_a_hashed_server_side_session_and_logout_ends_it(console: Console) -> None:
    client = console.client()
    form = client.get("/console/login")
    wrong = client.post(
        "/console/login", data={"email": EDITOR, "password": "nope" * 4, "csrf": csrf_of(form)}
    )
    assert wrong.status_code == 401 and "wrong address or password" in wrong.text
    answer = client.post(
        "/console/login",
        data={
            "email": EDITOR,
            "password": PASSWORD,
            "csrf": csrf_of(form),
            "next": "/console/charts",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/charts"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # http base URL; see the https test below
    token = client.cookies["digest_console"]
    with Session(console.engine) as session:
        [row] = session.exec(select(ConsoleSession)).all()
    assert row.id == token_hash(token) and token not in row.id
    hours = (row.expires_at - row.created_at) / timedelta(hours=1)
    assert hours == console.settings.console_session_hours

    home = client.get("/console")
    assert EDITOR in home.text and "(editor)" in home.text
    assert client.post("/console/logout", data={"csrf": csrf_of(home)}).status_code == 200
    with Session(console.engine) as session:
        assert session.exec(select(ConsoleSession)).all() == []
    # The old cookie is worth nothing now, even when presented again.
    stale = console.client()
    stale.cookies.set("digest_console", token, path="/console")
    assert stale.get("/console", follow_redirects=False).status_code == 303


def test_secure_cookie_on_https(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    console = make_console(settings, engine, tmp_path, base_url="https://digest.test")
    client = console.client()
    client.base_url = "https://digest.test"  # type: ignore[assignment]
    form = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"email": EDITOR, "password": PASSWORD, "csrf": csrf_of(form)},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "Secure" in answer.headers["set-cookie"]


def test_an_expired_session_logs_out(console: Console) -> None:
    client, _csrf = console.login(EDITOR)
    with session_scope(console.engine) as session:
        for row in session.exec(select(ConsoleSession)):
            row.expires_at = utcnow() - timedelta(seconds=1)
            session.add(row)
    assert client.get("/console", follow_redirects=False).status_code == 303
    with Session(console.engine) as session:
        assert session.exec(select(ConsoleSession)).all() == []


def test_login_needs_its_form_token_and_refuses_open_redirects(console: Console) -> None:
    client = console.client()
    answer = client.post("/console/login", data={"email": EDITOR, "password": PASSWORD})
    assert answer.status_code == 403 and "expired" in answer.text
    form = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={
            "email": EDITOR,
            "password": PASSWORD,
            "csrf": csrf_of(form),
            "next": "//evil.example/console",
        },
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/console"


def test_every_form_needs_the_sessions_csrf_token_and_our_origin(console: Console) -> None:
    _draft(console)
    editor, csrf = console.login(EDITOR)
    _other, other_csrf = console.login(EDITOR)
    assert csrf != other_csrf
    url = "/console/issues/1/review"
    for data, headers in (
        ({"decision": "approve"}, {}),
        ({"decision": "approve", "csrf": other_csrf}, {}),
        ({"decision": "approve", "csrf": csrf}, {"Origin": "https://evil.example"}),
        # What a browser sends under Referrer-Policy: no-referrer: refused too.
        ({"decision": "approve", "csrf": csrf}, {"Origin": "null"}),
        ({"decision": "approve", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        refused = editor.post(url, data=data, headers=headers)
        assert refused.status_code == 403, (data, headers)
    page = editor.get("/console/issues/1")
    assert "review: pending" in page.text
    ok = editor.post(url, data={"decision": "approve", "csrf": csrf}, headers={"Origin": BASE})
    assert ok.status_code == 200 and "review: approved" in ok.text


def test_login_attempts_are_limited_per_client_ip(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = make_console(settings, engine, tmp_path, console_login_limit=3)
    client = console.client()
    form = csrf_of(client.get("/console/login"))
    for _ in range(3):
        answer = client.post(
            "/console/login", data={"email": OPERATOR, "password": "x" * 12, "csrf": form}
        )
        assert answer.status_code == 401
    # Even the right password waits now: the limit counts attempts, not accounts.
    answer = client.post(
        "/console/login", data={"email": EDITOR, "password": PASSWORD, "csrf": form}
    )
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert "Too many login attempts" in answer.text


def test_a_client_waits_after_repeated_wrong_passwords(console: Console) -> None:
    client = console.client()
    form = csrf_of(client.get("/console/login"))
    for _ in range(5):
        client.post("/console/login", data={"email": EDITOR, "password": "y" * 12, "csrf": form})
    answer = client.post(
        "/console/login", data={"email": EDITOR, "password": PASSWORD, "csrf": form}
    )
    assert answer.status_code == 401 and "too many wrong attempts" in answer.text


def test_the_set_password_link_works_once(console: Console) -> None:
    with session_scope(console.engine) as session:
        token = add_user(session, "new@example.com", "editor").setup_token
    assert token is not None
    client = console.client()
    page = client.get(f"/console/setup/{token}")
    assert page.status_code == 200 and "new@example.com" in page.text
    short = client.post(
        f"/console/setup/{token}",
        data={"password": "short", "again": "short", "csrf": csrf_of(page)},
    )
    assert short.status_code == 422 and "at least 12 characters" in short.text
    differ = client.post(
        f"/console/setup/{token}",
        data={"password": PASSWORD, "again": PASSWORD + "!", "csrf": csrf_of(page)},
    )
    assert differ.status_code == 422 and "differ" in differ.text
    assert client.post(f"/console/setup/{token}", data={"password": PASSWORD}).status_code == 403
    done = client.post(
        f"/console/setup/{token}",
        data={"password": PASSWORD, "again": PASSWORD, "csrf": csrf_of(page)},
    )
    assert done.status_code == 200 and "Your password is set" in done.text
    assert "new@example.com (editor)" in done.text
    assert client.get(f"/console/setup/{token}").status_code == 404
    console.login("new@example.com")


def test_roles_are_enforced_by_the_server_and_reflected_in_the_pages(console: Console) -> None:
    _draft(console)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1")
    assert "Send to 12 subscribers" not in page.text and "Approve" in page.text
    assert "/console/subscribers" not in editor.get("/console").text
    for path in ("/console/issues/1/send", "/console/subscribers", "/console/issues/1/deliveries"):
        refused = editor.get(path)
        assert refused.status_code == 403 and "operator account" in refused.text, path
    for path in ("send", "pause", "cancel", "resume"):
        refused = editor.post(f"/console/issues/1/{path}", data={"csrf": csrf, "sure": "yes"})
        assert refused.status_code == 403, path
    refused = editor.post(
        "/console/subscribers/add", data={"csrf": csrf, "email": "x@example.com", "consent": "x"}
    )
    assert refused.status_code == 403
    assert console.outbox.outbox == []
    operator, _ = console.login(OPERATOR)
    page = operator.get("/console/issues/1")
    assert "Send to 12 subscribers" in page.text


def test_json_status_with_the_bearer_token_or_a_session(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = make_console(settings, engine, tmp_path, admin_token=SecretStr(TOKEN))
    _draft(console)
    anonymous = console.client()
    assert anonymous.get("/console/api/status").status_code == 401
    bad = anonymous.get("/console/api/status", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    good = anonymous.get("/console/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert good.status_code == 200 and good.json()["issue"]["number"] == 1
    editor, _ = console.login(EDITOR)
    assert (
        editor.get("/console/api/status", params={"number": 1}).json()["issue"]["state"] == "draft"
    )
