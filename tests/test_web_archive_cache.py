"""The archive served from memory (issue 28): a sent issue's page is rendered once and
never again; a page of an issue still sending and the feed follow the store within
the recheck interval; every answer has an ETag and a matching If-None-Match gets 304."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from subscriber_support import WebApp

from digest.core.clock import utcnow, window
from digest.issue.freeze import freeze_issue
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from digest.store.models import Issue, IssueState
from digest.web.app import create_app
from digest.web.archive_cache import RECHECK_SECONDS

pytestmark = pytest.mark.clock  # weeks and feed dates

SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "sample" / "comparisons.json"
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741


def _issue(web: WebApp, tmp_path: Path, week: str, state: IssueState) -> int:
    items = json.loads(SAMPLE.read_text(encoding="utf-8"))[:1]
    start, _ = window(week, web.settings.tz)
    items[0]["published_at"] = start.replace(hour=12).isoformat()
    items[0]["slug"] = f"cache-{week.lower()}"
    src = tmp_path / f"{week}.json"
    src.write_text(json.dumps(items), encoding="utf-8")
    import_comparisons(web.engine, [src])
    with session_scope(web.engine) as session:
        issue = freeze_issue(session, week, web.settings)
        assert issue is not None
        issue.state = state
        issue.started_at = utcnow()
        session.add(issue)
        return issue.number


def _retitle(web: WebApp, number: int, subject: str) -> None:
    """What an edit does to the row: new words, a new updated_at."""
    with web.engine.begin() as conn:
        conn.execute(
            update(I).where(I.c.number == number).values(subject=subject, updated_at=utcnow())
        )


def _tick(web: WebApp) -> None:
    cache = web.client.app.state.archive_cache  # type: ignore[attr-defined]
    now = cache.clock()
    cache.clock = lambda: now + RECHECK_SECONDS + 0.1


def test_a_sent_issue_page_is_rendered_once_with_an_etag(
    sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    first = web.client.get(f"/archive/{number}")
    assert first.status_code == 200 and first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=3600"
    assert "default-src 'none'" in first.headers["content-security-policy"]
    assert first.headers["x-frame-options"] == "DENY"  # the security headers stay
    again = web.client.get(f"/archive/{number}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    # Served from memory: even a change behind the app's back does not re-render it.
    _retitle(web, number, "Changed behind its back")
    _tick(web)
    assert web.client.get(f"/archive/{number}").content == first.content


def test_a_page_still_sending_follows_an_edit(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W46", IssueState.SENDING)
    first = web.client.get(f"/archive/{number}")
    assert first.headers["cache-control"] == "public, max-age=60"
    _retitle(web, number, "An edited subject line")
    _tick(web)
    edited = web.client.get(f"/archive/{number}", headers={"If-None-Match": first.headers["etag"]})
    assert edited.status_code == 200 and "An edited subject line" in edited.text
    assert edited.headers["etag"] != first.headers["etag"]


def test_the_feed_follows_a_new_public_issue(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    _issue(web, tmp_path, "2026-W44", IssueState.SENT)
    first = web.client.get("/archive/feed.atom")
    assert first.status_code == 200 and first.headers["etag"]
    assert first.text.count("<entry>") == 1
    cached = web.client.get("/archive/feed.atom", headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304
    _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    _tick(web)
    newer = web.client.get("/archive/feed.atom", headers={"If-None-Match": first.headers["etag"]})
    assert newer.status_code == 200 and newer.text.count("<entry>") == 2


def test_another_base_url_is_another_page(sqlite_web: WebApp, tmp_path: Path) -> None:
    """A base URL change takes a restart, and the restarted process renders anew."""
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    assert web.settings.base_url in web.client.get(f"/archive/{number}").text
    moved = web.settings.model_copy(update={"base_url": "https://moved.example.net"})
    restarted = TestClient(create_app(moved, engine=web.engine))
    page = restarted.get(f"/archive/{number}").text
    assert "https://moved.example.net/archive/" in page
    assert f"{web.settings.base_url}/archive/" not in page
    feed = restarted.get("/archive/feed.atom").text
    assert "https://moved.example.net/archive/feed.atom" in feed


def test_answers_from_memory_equal_the_routes_answers(sqlite_web: WebApp, tmp_path: Path) -> None:
    """The first GET goes through the route (and fills the caches); the next ones are
    answered before routing (digest/web/fast.py): the same status, headers and body."""
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    for path in (f"/archive/{number}", "/archive/feed.atom"):
        routed, fast = (web.client.get(path) for _ in range(2))
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content
        assert dict(fast.headers) == dict(routed.headers), path
        head = web.client.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == routed.headers["etag"]
