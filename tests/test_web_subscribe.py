"""POST /subscribe and the confirmation link, through the ASGI stack."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select, update
from subscriber_support import WebApp, make_web, parse

from digest.core.clock import utcnow
from digest.core.tokens import make_token
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from subscribers.lifecycle import suppress
from subscribers.privacy import show

pytestmark = pytest.mark.clock  # confirmation links that expire

S = Subscriber.__table__  # type: ignore[attr-defined]
SCRIPT = "<script>alert(1)</script>"


def _status(app: WebApp, email: str) -> str | None:
    with app.engine.connect() as conn:
        return conn.execute(select(S.c.status).where(S.c.email == email)).scalar()


def test_form_subscribe_confirm_and_consent_log(web: WebApp) -> None:
    r = web.client.post(
        "/subscribe",
        data={"email": " Ada@Example.COM ", "name": "Ada"},
        headers={"User-Agent": "Firefox/130"},
    )
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert _status(web, "ada@example.com") == "pending"
    [link] = web.confirmation_links()
    msg = parse(web.outbox.outbox[0].raw)
    assert msg["To"].addresses[0].addr_spec == "ada@example.com"
    assert msg["Message-ID"] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # A link scanner's GETs (any number) confirm nobody: the page has one button.
    for _ in range(2):
        r = web.client.get(web.path(link))
        assert r.status_code == 200 and r.text.count("<button") == 1
        assert "Confirm</button>" in r.text and '<form method="post">' in r.text
    assert _status(web, "ada@example.com") == "pending"
    r = web.client.post(web.path(link))
    assert r.status_code == 200 and "Thank you — you're subscribed" in r.text
    assert _status(web, "ada@example.com") == "active"
    info = show(web.engine, "ada@example.com")
    assert [(e["action"], e["source"], e["user_agent"]) for e in info["events"]] == [
        ("subscribe", "web form", "Firefox/130"),
        ("confirm", "confirmation link", "testclient"),
    ]
    assert all(e["ip"] == "testclient" for e in info["events"])
    # A second visit (or the reader after a scanner): "you're subscribed", not an error.
    for again in (web.client.get(web.path(link)), web.client.post(web.path(link))):
        assert again.status_code == 200 and "already confirmed" in again.text
    assert len(show(web.engine, "ada@example.com")["events"]) == 2


def test_json_subscribe(web: WebApp) -> None:
    r = web.client.post("/subscribe", json={"email": "bob@example.com"})
    assert r.status_code == 202 and r.json()["status"] == "accepted"
    assert _status(web, "bob@example.com") == "pending"
    assert len(web.confirmation_links()) == 1


def test_same_answer_whether_or_not_the_address_is_known(sqlite_web: WebApp) -> None:
    web = sqlite_web
    web.client.post("/subscribe", json={"email": "known@example.com"})
    web.client.post(web.path(web.confirmation_links()[0]))
    answers = set()
    for address in (
        "known@example.com",
        "fresh@example.com",
        "pending@example.com",
        "pending@example.com",
    ):
        r = web.client.post("/subscribe", json={"email": address})
        answers.add((r.status_code, r.text))
        f = web.client.post("/subscribe", data={"email": address})
        # The page names the address typed (issue 26), and only that differs.
        assert f'<strong class="address">{address}</strong>' in f.text
        typed = f.text.replace(address, "ADDRESS").replace(quote(address, safe=""), "ADDRESS")
        answers.add((f.status_code, typed))
    assert len(answers) == 2  # one JSON answer and one HTML page, for everyone
    # The active address got no second email; the pending one got one only (the
    # resend cool-down stops the form from being used to flood a mailbox).
    recipients = [
        s.recipient.email
        for s in web.outbox.outbox
        if str(parse(s.raw)["Subject"]).startswith("Confirm")  # not the welcome
    ]
    assert recipients.count("known@example.com") == 1
    assert recipients.count("pending@example.com") == 1


def test_honeypot_stores_and_sends_nothing(web: WebApp) -> None:
    r = web.client.post("/subscribe", data={"email": "bot@example.com", "website": "http://x"})
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert _status(web, "bot@example.com") is None and not web.outbox.outbox


def test_rate_limit_per_ip(sqlite_web: WebApp) -> None:
    app = make_web(sqlite_web.settings, sqlite_web.engine, subscribe_rate_limit=3)
    codes = [
        app.client.post("/subscribe", json={"email": f"r{i}@example.com"}).status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]
    r = app.client.post("/subscribe", data={"email": "r9@example.com"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "too many" in r.text


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"json": {"email": "a@example.com\r\nBcc: victim@example.com"}}, 422, "line breaks"),
        ({"data": {"email": "a@example.com\nBcc: v@example.com"}}, 422, "line breaks"),
        ({"json": {"email": "b@example.com", "name": "x" * 10_240}}, 422, "longer than 200"),
        ({"json": {"email": "not-an-address"}}, 422, "invalid address"),
        ({"json": {"email": ""}}, 422, "required"),
        ({"json": {"name": "no address"}}, 422, "required"),
        ({"json": {"email": ["a@example.com"]}}, 422, "must be a string"),
        ({"json": {"email": "a@example.com", "name": 5}}, 422, "must be a string"),
        ({"json": ["a@example.com"]}, 422, "object"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"content": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        (
            {"content": b"email=a@example.com", "headers": {"Content-Type": "text/plain"}},
            415,
            "form",
        ),
        (
            {"content": b"x" * 70_000, "headers": {"Content-Type": "application/json"}},
            413,
            "too large",
        ),
        ({"files": {"email": ("a.txt", b"a@example.com")}}, 422, "files"),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(
    sqlite_web: WebApp, kwargs: dict[str, object], status: int, reason: str
) -> None:
    r = sqlite_web.client.post("/subscribe", **kwargs)
    assert r.status_code == status, r.text
    assert reason in r.text
    assert not sqlite_web.outbox.outbox
    with sqlite_web.engine.connect() as conn:
        assert conn.execute(select(S.c.id)).first() is None


def test_form_error_page_escapes_what_was_typed(sqlite_web: WebApp) -> None:
    r = sqlite_web.client.post("/subscribe", data={"email": SCRIPT, "name": SCRIPT})
    assert r.status_code == 422
    assert SCRIPT not in r.text and "&lt;script&gt;" in r.text
    assert 'role="alert"' in r.text


def test_script_name_is_escaped_in_the_confirmation_email(sqlite_web: WebApp) -> None:
    sqlite_web.client.post("/subscribe", data={"email": "x@example.com", "name": SCRIPT})
    msg = parse(sqlite_web.outbox.outbox[0].raw)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # In a header the name is only a display name, never a new header line.
    assert msg["To"].addresses[0].display_name == SCRIPT
    assert msg["To"].addresses[0].addr_spec == "x@example.com"


def test_name_cannot_inject_headers(sqlite_web: WebApp) -> None:
    r = sqlite_web.client.post(
        "/subscribe", json={"email": "y@example.com", "name": "Eve\r\nBcc: all@example.com"}
    )
    assert r.status_code == 202
    raw = sqlite_web.outbox.outbox[0].raw
    assert b"\r\nBcc:" not in raw
    assert parse(raw)["Bcc"] is None


def test_forged_expired_and_cross_purpose_confirm_links(sqlite_web: WebApp) -> None:
    web = sqlite_web
    web.client.post("/subscribe", json={"email": "c@example.com"})
    [link] = web.confirmation_links()
    with web.engine.connect() as conn:
        sid, nonce = conn.execute(
            select(S.c.id, S.c.confirm_nonce).where(S.c.email == "c@example.com")
        ).one()
    expired = make_token(
        web.settings,
        "confirm",
        sid,
        binding=bytes.fromhex(nonce),
        issued_at=utcnow() - timedelta(hours=web.settings.confirm_link_hours + 1),
    )
    unsubscribe_token = make_token(web.settings, "unsubscribe", sid)
    token = link.rsplit("/", 1)[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for bad, words in (
        (expired, "expired"),
        (unsubscribe_token, "not valid"),
        (forged, "not valid"),
        ("nonsense", "not valid"),
    ):
        for r in (web.client.get(f"/confirm/{bad}"), web.client.post(f"/confirm/{bad}")):
            assert r.status_code == 400 and words in r.text
            assert 'href="/subscribe"' in r.text  # a way on: subscribe again
        assert _status(web, "c@example.com") == "pending"
    assert web.client.post(web.path(link)).status_code == 200


def test_a_suppressed_address_needs_the_new_link(sqlite_web: WebApp) -> None:
    web = sqlite_web
    web.client.post("/subscribe", json={"email": "d@example.com"})
    first = web.confirmation_links()[0]
    web.client.post(web.path(first))
    with web.engine.begin() as conn:
        conn.execute(update(S).where(S.c.email == "d@example.com").values(confirm_sent_at=None))
        sid = conn.execute(select(S.c.id).where(S.c.email == "d@example.com")).scalar_one()
        suppress(conn, [sid], SubscriberStatus.UNSUBSCRIBED, source="test")
    web.client.post("/subscribe", json={"email": "d@example.com"})
    assert _status(web, "d@example.com") == "unsubscribed"
    second = web.confirmation_links()[1]
    assert web.client.get(web.path(first)).status_code == 400  # the old link stays dead
    assert web.client.post(web.path(first)).status_code == 400
    assert _status(web, "d@example.com") == "unsubscribed"
    assert web.client.post(web.path(second)).status_code == 200
    assert _status(web, "d@example.com") == "active"


def test_pages_carry_security_headers_and_work_without_script(sqlite_web: WebApp) -> None:
    for path in ("/", "/subscribe", "/unsubscribe", "/archive"):
        r = sqlite_web.client.get(path)
        assert r.status_code == 200
        csp = r.headers["Content-Security-Policy"]
        # No inline or third-party script: at most our own file (the sign-up form's
        # time zone), and every page works without it.
        assert "default-src 'none'" in csp and "script-src 'self';" in csp
        assert "unsafe-inline'; script" not in csp.replace("style-src 'unsafe-inline'", "")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "set-cookie" not in r.headers
        scripts = re.findall(r"<script[^>]*>", r.text)
        assert all('src="/static/timezone.js"' in tag for tag in scripts), scripts
        assert '<html lang="en">' in r.text and 'name="viewport"' in r.text
    form = sqlite_web.client.get("/").text
    assert '<label for="email">' in form and 'id="email"' in form
    assert 'tabindex="-1"' in form and 'aria-hidden="true"' in form  # the honeypot
    assert sqlite_web.client.get("/openapi.json").json()["paths"]["/subscribe"]["post"]


def test_i_never_asked_for_this(sqlite_web: WebApp) -> None:
    """The confirmation's own List-Unsubscribe suppresses the address at once; the
    confirm link then no longer works."""
    web = sqlite_web
    web.client.post("/subscribe", json={"email": "victim@example.com", "name": "V"})
    msg = parse(web.outbox.outbox[0].raw)
    [url] = [u.strip(" <>") for u in str(msg["List-Unsubscribe"]).split(",") if "://" in u]
    r = web.client.post(
        web.path(url),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and _status(web, "victim@example.com") == "unsubscribed"
    [link] = web.confirmation_links()
    assert web.client.get(web.path(link)).status_code == 400
    assert web.client.post(web.path(link)).status_code == 400
    assert _status(web, "victim@example.com") == "unsubscribed"
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "[[%" not in html and "[[%" not in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
