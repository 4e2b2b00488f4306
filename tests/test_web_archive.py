"""The public archive: index, web version without personal data, Atom feed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from subscriber_support import WebApp

from digest.db import session_scope
from digest.importer import import_comparisons
from digest.issues import find_issue, freeze_issue
from digest.models import IssueState
from digest.timeutil import utcnow, window

SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "sample" / "comparisons.json"
ATOM = "{http://www.w3.org/2005/Atom}"


def _issue(web: WebApp, tmp_path: Path, week: str, state: IssueState) -> int:
    """Freeze an issue for ``week`` and put it in ``state``; returns its number. (Only one
    issue may be open at a time, so open states are given after all are frozen.)"""
    items = json.loads(SAMPLE.read_text(encoding="utf-8"))[:1]
    start, _ = window(week, web.settings.tz)
    items[0]["published_at"] = start.replace(hour=12).isoformat()
    items[0]["slug"] = f"archive-{week.lower()}"
    items[0]["title"] = f"<b>Bold</b> & friends {week}"
    src = tmp_path / f"{week}.json"
    src.write_text(json.dumps(items), encoding="utf-8")
    import_comparisons(web.engine, [src])
    with session_scope(web.engine) as session:
        issue = freeze_issue(session, week, web.settings)
        assert issue is not None
        issue.state = IssueState.SENT
        session.add(issue)
        number = issue.number
    _set(web, number, state)
    return number


def _set(web: WebApp, number: int, state: IssueState) -> None:
    with session_scope(web.engine) as session:
        issue = find_issue(session, number=number)
        assert issue is not None
        issue.state = state
        issue.started_at = None if state in (IssueState.DRAFT, IssueState.CANCELLED) else utcnow()
        session.add(issue)


def test_archive_lists_only_published_issues(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    sent = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    cancelled = _issue(web, tmp_path, "2026-W44", IssueState.CANCELLED)
    sending = _issue(web, tmp_path, "2026-W46", IssueState.SENT)
    draft = _issue(web, tmp_path, "2026-W47", IssueState.SENT)
    _set(web, sending, IssueState.SENDING)
    _set(web, draft, IssueState.DRAFT)
    index = web.client.get("/archive")
    assert index.status_code == 200
    assert f"/archive/{sent}" in index.text and f"/archive/{sending}" in index.text
    assert "2026-W47" not in index.text and "2026-W44" not in index.text
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; friends" in index.text
    assert index.text.index("2026-W46") < index.text.index("2026-W45")  # newest first
    assert web.client.get(f"/archive/{draft}").status_code == 404  # drafts stay private
    assert web.client.get("/archive/2026-W47").status_code == 404
    assert web.client.get(f"/archive/{cancelled}").status_code == 404
    # Links in issues sent before numbering named the week: they still work.
    assert web.client.get("/archive/2026-W45").status_code == 200
    assert web.client.get("/archive/not-a-week").status_code == 404
    assert web.client.get("/archive/2026-W99").status_code == 404


def test_web_version_has_no_personal_data(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    r = web.client.get("/archive/2026-W45")
    assert r.status_code == 200
    assert "[[%" not in r.text
    assert "Hi " not in r.text  # nobody is greeted on the web
    assert f'href="{web.settings.base_url}/unsubscribe"' in r.text
    assert "/unsubscribe/" not in r.text  # no personal token
    assert "&lt;b&gt;Bold&lt;/b&gt;" in r.text
    assert "script-src" not in r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]


def test_atom_feed(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    _issue(web, tmp_path, "2026-W46", IssueState.DRAFT)
    r = web.client.get("/archive/feed.atom")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
    feed = ET.fromstring(r.content)  # noqa: S314 (our own feed, from the test server)
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.findtext(f"{ATOM}id") == f"{web.settings.base_url}/archive/{number}"
    assert entry.findtext(f"{ATOM}title", "").startswith("<b>Bold</b> & friends")
    assert entry.find(f"{ATOM}link").get("href") == f"{web.settings.base_url}/archive/{number}"  # type: ignore[union-attr]
    assert feed.findtext(f"{ATOM}updated")
