"""Pages that never dead-end: relative forms, a confirmation button, fresh unsubscribe
links, key rotation, HTML error pages, HEAD, favicon, docs without third-party script."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_support import Chromium, axe_violations, chromium  # noqa: F401
from fastapi.testclient import TestClient
from pydantic import SecretStr
from readers_support import published_samples
from sqlalchemy import select
from subscriber_support import WebApp, make_web, parse

from digest.core.clock import utcnow
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.mail.message import IssueMessage
from digest.store.engine import session_scope
from digest.store.subscriber_models import Subscriber
from digest.web.app import create_app
from subscribers.service import add_subscriber

S = Subscriber.__table__  # type: ignore[attr-defined]
GMAIL = {"Content-Type": "application/x-www-form-urlencoded"}
OLD_SECRET = "the-secret-before-rotation-0123456789"


def _add(web: WebApp, email: str, name: str = "") -> int:
    with session_scope(web.engine) as session:
        add_subscriber(session, email, name)
    with web.engine.connect() as conn:
        return int(conn.execute(select(S.c.id).where(S.c.email == email)).scalar_one())


def _status(web: WebApp, email: str) -> str:
    with web.engine.connect() as conn:
        return str(conn.execute(select(S.c.status).where(S.c.email == email)).scalar_one())


def _unsubscribe_path(settings: Settings, sid: int, email: str) -> str:
    message = IssueMessage(
        issue_id=1, week="2026-W47", subject="s", html="x", text="x", settings=settings
    )
    url = message.unsubscribe_url(Recipient(sid, email))
    return url[len(settings.base_url) :]


def test_forms_post_to_relative_urls_and_work_on_any_host(sqlite_web: WebApp) -> None:
    # DIGEST_BASE_URL names another host: the app is reached as 127.0.0.1:8000.
    app = create_app(
        sqlite_web.settings,
        engine=sqlite_web.engine,
        transport_factory=lambda _s: sqlite_web.outbox,
    )
    client = TestClient(app, base_url="http://127.0.0.1:8000")
    form = client.get("/").text
    assert 'action="/subscribe"' in form and sqlite_web.settings.base_url not in form
    r = client.post("/subscribe", data={"email": "local@example.com"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert len(sqlite_web.confirmation_links()) == 1
    assert 'action="/unsubscribe"' in client.get("/unsubscribe").text


def test_broken_unsubscribe_link_offers_a_fresh_one_and_the_mailto(sqlite_web: WebApp) -> None:
    web = sqlite_web
    _add(web, "ada@example.com", "Ada Lovelace")
    for method in ("get", "post"):
        r = web.client.request(
            method,
            "/unsubscribe/not-a-real-token",
            content=b"List-Unsubscribe=One-Click",
            headers=GMAIL,
        )
        assert r.status_code == 400 and "not valid" in r.text
        assert '<form method="post" action="/unsubscribe">' in r.text
        assert f"mailto:{web.settings.effective_unsubscribe_mailto}" in r.text
    answers = set()
    for email in ("ada@example.com", "nobody@example.com", "ADA@example.com", "not an address"):
        r = web.client.post("/unsubscribe", data={"email": email})
        answers.add((r.status_code, r.text))
    assert len(answers) == 1  # one answer, known or not: the form reveals nobody
    [(status, text)] = answers
    assert status == 200 and "fresh unsubscribe link is on its way" in text
    # One email, to the known address only, however often it is asked for.
    assert [m.recipient.email for m in web.outbox.outbox] == ["ada@example.com"]
    msg = parse(web.outbox.outbox[0].raw)
    assert msg["Subject"] == "Your link to unsubscribe from Weekly AI Tool Verdicts"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hi Ada," in body and "[[%" not in body
    [link] = [line for line in body.splitlines() if "/unsubscribe/" in line]
    page = web.client.get(web.path(link.strip()))
    assert page.status_code == 200 and page.text.count("<button") == 1
    assert _status(web, "ada@example.com") == "active"
    one_click = web.client.post(
        web.path(link.strip()), content=b"List-Unsubscribe=One-Click", headers=GMAIL
    )
    assert one_click.status_code == 200 and _status(web, "ada@example.com") == "unsubscribed"


def test_fresh_link_requests_are_rate_limited_per_client(sqlite_web: WebApp) -> None:
    web = make_web(sqlite_web.settings, sqlite_web.engine, subscribe_rate_limit=2)
    codes = [
        web.client.post("/unsubscribe", data={"email": f"r{i}@example.com"}).status_code
        for i in range(3)
    ]
    assert codes == [200, 200, 429]
    r = web.client.post("/unsubscribe", data={"email": "x@example.com"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_links_survive_a_key_rotation(sqlite_web: WebApp) -> None:
    old = sqlite_web.settings.model_copy(update={"secret_key": SecretStr(OLD_SECRET)})
    web = make_web(old, sqlite_web.engine)
    sid = _add(web, "rot@example.com")
    path = _unsubscribe_path(old, sid, "rot@example.com")
    web.client.post("/subscribe", json={"email": "new@example.com"})
    [confirm_link] = web.confirmation_links()

    rotated = sqlite_web.settings.model_copy(update={"secret_key_previous": SecretStr(OLD_SECRET)})
    after = make_web(rotated, sqlite_web.engine)
    assert after.client.get(path).status_code == 200
    assert after.client.post(web.path(confirm_link)).status_code == 200
    assert _status(after, "new@example.com") == "active"
    r = after.client.post(path, content=b"List-Unsubscribe=One-Click", headers=GMAIL)
    assert r.status_code == 200 and _status(after, "rot@example.com") == "unsubscribed"
    # New links are signed with the new key only.
    assert _unsubscribe_path(rotated, sid, "rot@example.com") != path

    forgotten = make_web(sqlite_web.settings, sqlite_web.engine)  # the old key dropped
    assert forgotten.client.get(path).status_code == 400
    with pytest.raises(Exception, match="DIGEST_SECRET_KEY_PREVIOUS"):
        Settings(secret_key="x" * 20, secret_key_previous="short").verification_keys()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/no/such/page", 404), ("post", "/archive", 405), ("get", "/redoc", 404)],
)
def test_browser_routes_get_html_error_pages(
    sqlite_web: WebApp, method: str, path: str, status: int
) -> None:
    r = getattr(sqlite_web.client, method)(path, headers={"Accept": "text/html"})
    assert r.status_code == status and r.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in r.text and 'href="/archive"' in r.text and 'href="/"' in r.text
    if status == 405:
        assert r.headers["Allow"] == "GET"
    # Machine routes keep JSON errors.
    api = sqlite_web.client.get("/webhooks/postmark")
    assert api.status_code == 405 and api.json() == {"detail": "Method Not Allowed"}


def test_head_favicon_and_docs_without_script(sqlite_web: WebApp) -> None:
    client = sqlite_web.client
    for path in ("/", "/subscribe", "/unsubscribe", "/archive", "/archive/feed.atom", "/docs"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == 200 and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"]
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in icon.content and 'rel="icon"' in client.get("/").text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "POST /subscribe" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    assert "default-src 'none'" in docs.headers["Content-Security-Policy"]
    off = make_web(sqlite_web.settings, sqlite_web.engine, api_docs=False)
    assert off.client.get("/docs").status_code == 404
    assert off.client.get("/openapi.json").status_code == 200


def test_public_pages_pass_axe(
    chromium: Chromium,  # noqa: F811
    sqlite_web: WebApp,
    tmp_path: Path,
) -> None:
    published_samples(sqlite_web.engine, tmp_path, now=utcnow())  # topics to choose on the forms
    sqlite_web.client.post("/subscribe", data={"email": "axe@example.com"})
    [link] = sqlite_web.confirmation_links()
    sid = _add(sqlite_web, "reader@example.com")
    preferences = _unsubscribe_path(sqlite_web.settings, sid, "reader@example.com").replace(
        "/unsubscribe/", "/preferences/"
    )
    page = sqlite_web.client.get(preferences)
    assert page.status_code == 200 and 'value="Developer Tools"' in page.text
    paths = ["/", "/unsubscribe", "/unsubscribe/broken", sqlite_web.path(link), "/nope", "/docs"]
    paths.append(preferences)
    for path in paths:
        assert axe_violations(chromium, sqlite_web.client.get(path).text, 375) == [], path
