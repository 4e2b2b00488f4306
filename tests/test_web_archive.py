"""The public archive: index, web version without personal data, Atom feed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from email_support import CONTRAST_JS, Chromium, axe_violations, chromium, mjml_errors  # noqa: F401
from sqlmodel import Session
from subscriber_support import WebApp, make_web

from digest.core.clock import utcnow, window
from digest.issue.freeze import find_issue, freeze_issue
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons
from digest.store.models import IssueState
from digest.web.issue_page import page_source

pytestmark = pytest.mark.clock  # weeks and feed dates

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
    # The pick: the automatic subject (the page's h1) names it (issue 26).
    items[0]["tools"][0]["name"] = f"<b>Bold</b> & friends {week}"
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


def test_issue_page_is_a_page_of_the_site(sqlite_web: WebApp, tmp_path: Path) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    r = web.client.get(f"/archive/{number}")
    assert r.status_code == 200
    html = r.text
    # Nothing personal, nothing about being subscribed: a web variant, not the email.
    assert "[[%" not in html and "Hi " not in html and "/unsubscribe" not in html
    assert "You get this email" not in html and "View this issue in your browser" not in html
    # The site's header and navigation, the issue as the page's one h1, a subscribe box.
    assert 'href="/archive"' in html and 'href="/subscribe"' in html and 'href="/"' in html
    assert html.count("<h1") == 1 and (
        "Ship &lt;b&gt;Bold&lt;/b&gt; &amp; friends 2026-W45 over Ferrous Assist</h1>" in html
    )
    assert '<form method="post" action="/subscribe">' in html
    # Sharing and feed discovery.
    url = f"{web.settings.base_url}/archive/{number}"
    assert f'<meta property="og:url" content="{url}"' in html
    assert '<meta property="og:title" content="Ship &lt;b&gt;Bold&lt;/b&gt; &amp; friends' in html
    assert f'<link rel="canonical" href="{url}"' in html
    assert (
        '<link rel="alternate" type="application/atom+xml" title="Weekly AI Tool Verdicts" '
        f'href="{web.settings.base_url}/archive/feed.atom"'
    ) in html
    csp = r.headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "form-action 'self'" in csp
    # The form works: it subscribes (double opt-in) like the sign-up page.
    assert web.client.post("/subscribe", data={"email": "web@example.com"}).status_code == 200
    assert len(web.confirmation_links()) == 1
    # Old links by ISO week still land on the page.
    assert web.client.get("/archive/2026-W45").text == html


def test_atom_feed_carries_full_content_and_ids_that_survive_a_move(
    sqlite_web: WebApp, tmp_path: Path
) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    _issue(web, tmp_path, "2026-W46", IssueState.DRAFT)

    def entries(app: WebApp) -> list[ET.Element]:
        r = app.client.get("/archive/feed.atom")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/atom+xml")
        feed = ET.fromstring(r.content)  # noqa: S314 (our own feed, from the test server)
        assert feed.findtext(f"{ATOM}updated") and feed.findtext(f"{ATOM}id", "").startswith(
            "urn:uuid:"
        )
        return feed.findall(f"{ATOM}entry")

    [entry] = entries(web)
    entry_id = entry.findtext(f"{ATOM}id", "")
    assert entry_id.startswith("urn:uuid:") and len(entry_id) == len("urn:uuid:") + 36
    assert entry.findtext(f"{ATOM}title", "").startswith("Ship <b>Bold</b> & friends")
    url = f"{web.settings.base_url}/archive/{number}"
    assert entry.find(f"{ATOM}link").get("href") == url  # type: ignore[union-attr]
    content = entry.find(f"{ATOM}content")
    assert content is not None and content.get("type") == "html"
    body = content.text or ""
    # The whole issue: the picks at a glance, the verdict, the split lens with both
    # quotes, the cards, the links.
    assert "all four reviewers would; three of four would ship Ferrous Assist." in body
    assert 'href="#c-archive-2026-w45"' in body and 'id="c-archive-2026-w45"' in body
    assert "Where the reviewers split: the competition" in body
    assert "<strong>Ferrous Assist</strong> · would pass" in body
    assert "Readers' vote 64%" in body and "Read the &lt;b&gt;Bold&lt;/b&gt;" in body
    assert "<script" not in body
    # Another domain: the same entry id, links that follow the new base URL.
    moved = make_web(
        web.settings.model_copy(update={"base_url": "https://news.example"}), web.engine
    )
    [again] = entries(moved)
    assert again.findtext(f"{ATOM}id") == entry_id
    assert again.find(f"{ATOM}link").get("href") == f"https://news.example/archive/{number}"  # type: ignore[union-attr]


def test_issue_page_passes_the_validator_axe_and_contrast(
    sqlite_web: WebApp,
    tmp_path: Path,
    chromium: Chromium,  # noqa: F811
) -> None:
    web = sqlite_web
    number = _issue(web, tmp_path, "2026-W45", IssueState.SENT)
    with Session(web.engine) as session:
        issue = find_issue(session, number=number)
        assert issue is not None
        assert mjml_errors(page_source(session, issue, web.settings)) == []
    html = web.client.get(f"/archive/{number}").text
    for scheme in ("light", "dark"):
        assert axe_violations(chromium, html, 375, scheme) == [], scheme
        found = chromium.run(html, 600, scheme, lambda page: page.evaluate(CONTRAST_JS))
        low = [run for run in found["runs"] if run["ratio"] < 4.5]
        assert len(found["runs"]) > 40 and low == [], low[:5]
