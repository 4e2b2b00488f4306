"""RFC 8058 one-click unsubscribe from a real digest's headers, through the ASGI stack."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from subscriber_support import WebApp, import_sample, make_web, parse

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import make_token
from digest.jobs.weekly import weekly_job
from digest.mail.message import IssueMessage
from digest.store.engine import session_scope
from digest.store.subscriber_models import Subscriber
from digest.transports.base import SendResult
from digest.transports.memory import MemoryTransport
from subscribers.privacy import forget, show
from subscribers.service import add_subscriber

pytestmark = pytest.mark.clock  # unsubscribe links that never expire

S = Subscriber.__table__  # type: ignore[attr-defined]
WEEK = "2026-W47"
GMAIL = {"Content-Type": "application/x-www-form-urlencoded"}


def _status(app: WebApp, email: str) -> str | None:
    with app.engine.connect() as conn:
        return conn.execute(select(S.c.status).where(S.c.email == email)).scalar()


def _import(settings: Settings, app: WebApp, tmp_path: Path, week: str = WEEK) -> None:
    import_sample(app.engine, settings, tmp_path, week)


def _add(app: WebApp, email: str, name: str = "") -> None:
    with session_scope(app.engine) as session:
        add_subscriber(session, email, name)


def _list_unsubscribe_url(raw: bytes) -> str:
    msg = parse(raw)
    header = str(msg["List-Unsubscribe"])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https = [p.strip().strip("<>") for p in header.split(",") if "://" in p]
    mailto = [p.strip().strip("<>") for p in header.split(",") if p.strip().startswith("<mailto:")]
    assert len(https) == 1 and len(mailto) == 1
    return https[0]


def test_digest_one_click_unsubscribes_at_once_and_get_never_does(
    web: WebApp, tmp_path: Path
) -> None:
    _import(web.settings, web, tmp_path)
    _add(web, "ada@example.com", "<script>alert(1)</script>")
    _add(web, "bob@example.com", "Bob")
    outbox = MemoryTransport()
    weekly_job(web.settings, engine=web.engine, transport=outbox, week=WEEK)
    by_email = {m.recipient.email: m.raw for m in outbox.outbox}
    url = _list_unsubscribe_url(by_email["ada@example.com"])
    path = web.path(url)
    # The body's visible link is the same page.
    html = parse(by_email["ada@example.com"]).get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert url in html
    # The name is escaped in the digest too, and only a display name in To.
    assert "<script>" not in html and "Hi &lt;script&gt;alert(1)&lt;/script&gt;," in html
    assert parse(by_email["ada@example.com"])["To"].addresses[0].addr_spec == "ada@example.com"

    # A link scanner's GETs (any number) change nothing; the page has one button.
    for _ in range(3):
        page = web.client.get(path)
        assert page.status_code == 200 and page.text.count("<button") == 1
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert _status(web, "ada@example.com") == "active"

    # Exactly as Gmail sends it: form-urlencoded, no cookies, no auth.
    web.client.cookies.clear()
    r = web.client.post(path, content=b"List-Unsubscribe=One-Click", headers=GMAIL)
    assert r.status_code == 200 and "location" not in r.headers
    assert "set-cookie" not in r.headers
    assert _status(web, "ada@example.com") == "unsubscribed"
    assert _status(web, "bob@example.com") == "active"
    events = show(web.engine, "ada@example.com")["events"]
    assert events[-1]["action"] == "unsubscribe"
    assert events[-1]["source"] == "List-Unsubscribe one-click (RFC 8058)"
    # Again: idempotent, still 200.
    assert (
        web.client.post(path, content=b"List-Unsubscribe=One-Click", headers=GMAIL).status_code
        == 200
    )
    assert "not subscribed" in web.client.get(path).text


def test_multipart_and_the_page_button(sqlite_web: WebApp) -> None:
    web = sqlite_web
    _add(web, "m@example.com")
    _add(web, "p@example.com")
    ids = {}
    with web.engine.connect() as conn:
        for email in ("m@example.com", "p@example.com"):
            ids[email] = conn.execute(select(S.c.id).where(S.c.email == email)).scalar_one()
    message = IssueMessage(
        issue_id=1, week=WEEK, subject="s", html="x", text="x", settings=web.settings
    )
    m_url = message.unsubscribe_url(Recipient(ids["m@example.com"], "m@example.com"))
    p_url = message.unsubscribe_url(Recipient(ids["p@example.com"], "p@example.com"))
    r = web.client.post(web.path(m_url), files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200 and _status(web, "m@example.com") == "unsubscribed"
    r = web.client.post(web.path(p_url), data={"List-Unsubscribe": "One-Click", "via": "page"})
    assert r.status_code == 200 and _status(web, "p@example.com") == "unsubscribed"
    assert show(web.engine, "p@example.com")["events"][-1]["source"] == "unsubscribe page"


def test_refusals_change_nothing(sqlite_web: WebApp) -> None:
    web = sqlite_web
    _add(web, "z@example.com")
    with web.engine.connect() as conn:
        sid = conn.execute(select(S.c.id).where(S.c.email == "z@example.com")).scalar_one()
    message = IssueMessage(
        issue_id=1, week=WEEK, subject="s", html="x", text="x", settings=web.settings
    )
    good = web.path(message.unsubscribe_url(Recipient(sid, "z@example.com")))
    token = good.rsplit("/", 1)[1]
    confirm_token = make_token(web.settings, "confirm", sid)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for path in (f"/unsubscribe/{forged}", f"/unsubscribe/{confirm_token}", "/unsubscribe/x"):
        assert web.client.get(path).status_code == 400
        r = web.client.post(path, content=b"List-Unsubscribe=One-Click", headers=GMAIL)
        assert r.status_code == 400 and "not valid" in r.text
    # Without the one-click body the POST is refused too.
    for body in (b"", b"List-Unsubscribe=Yes", b"one-click"):
        r = web.client.post(good, content=body, headers=GMAIL)
        assert r.status_code == 400 and "List-Unsubscribe=One-Click" in r.text
    assert _status(web, "z@example.com") == "active"


def test_old_link_after_forget_cannot_touch_a_new_subscriber(sqlite_web: WebApp) -> None:
    web = sqlite_web
    _add(web, "old@example.com")
    with web.engine.connect() as conn:
        sid = conn.execute(select(S.c.id).where(S.c.email == "old@example.com")).scalar_one()
    message = IssueMessage(
        issue_id=1, week=WEEK, subject="s", html="x", text="x", settings=web.settings
    )
    old_link = web.path(message.unsubscribe_url(Recipient(sid, "old@example.com")))
    forget(web.engine, "old@example.com")
    _add(web, "new@example.com")  # SQLite may hand the freed row id to the next person
    r = web.client.post(old_link, content=b"List-Unsubscribe=One-Click", headers=GMAIL)
    assert r.status_code == 200
    assert _status(web, "new@example.com") == "active"


class UnsubscribingTransport(MemoryTransport):
    """Delivers like MemoryTransport; while the first batch goes out, a reader further
    down the queue clicks one-click unsubscribe through the web app."""

    def __init__(self, app: WebApp, path: str) -> None:
        super().__init__()
        self.web, self.path, self.clicked = app, path, False

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        if not self.clicked:
            self.clicked = True
            r = self.web.client.post(
                self.path, content=b"List-Unsubscribe=One-Click", headers=GMAIL
            )
            assert r.status_code == 200
        return super().send_batch(message, recipients)


def test_a_running_send_skips_who_unsubscribed_before_their_batch(
    sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = make_web(sqlite_web.settings, sqlite_web.engine, batch_size=1)
    _import(web.settings, web, tmp_path)
    for email in ("first@example.com", "second@example.com", "third@example.com"):
        _add(web, email)
    with web.engine.connect() as conn:
        third = conn.execute(select(S.c.id).where(S.c.email == "third@example.com")).scalar_one()
    message = IssueMessage(
        issue_id=1, week=WEEK, subject="s", html="x", text="x", settings=web.settings
    )
    link = web.path(message.unsubscribe_url(Recipient(third, "third@example.com")))
    transport = UnsubscribingTransport(web, link)
    result = weekly_job(web.settings, engine=web.engine, transport=transport, week=WEEK)
    assert result.report is not None
    assert sorted(m.recipient.email for m in transport.outbox) == [
        "first@example.com",
        "second@example.com",
    ]
    assert result.report.skipped == 1
