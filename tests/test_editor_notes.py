"""Editors write: a note in Markdown above the comparisons and a one-line take per
comparison, safe and the same in the HTML part, the text part, the archive and the
feed; edited in the console (live preview) and from the CLI; recorded in the history."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cli_support import DigestCLI
from console_support import EDITOR, Console

from digest.core.notes import note_html, note_text
from digest.issue.freeze import find_issue, issue_rows, issue_takes
from digest.issue.history import history
from digest.jobs.schedule import prepare_draft
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope

pytestmark = pytest.mark.clock  # freezing: the comparisons new since the last issue

NOTE = """A quiet week for *coding* tools; read [how we score](https://example.com/method)
before the verdicts.

<script>alert("gotcha")</script>

- **Voice** is busy
- spreadsheets too

![tracker](https://tracker.example/pixel.png) <img src="https://tracker.example/p.gif">
"""
TAKE = "Our pick: the cheaper one wins on day one."


def _unsafe(text: str) -> list[str]:
    return [bad for bad in ("<script", "gotcha", "tracker.example", "<img") if bad in text]


def _draft_slugs(console: Console) -> list[str]:
    with session_scope(console.engine) as session:
        issue = prepare_draft(session, console.settings).issue
        assert issue is not None
        return [c.slug for c, _ in issue_rows(session, issue)]


def _parts(console: Console) -> tuple[str, str]:
    [stored] = [m for m in console.outbox.outbox if m.recipient.email == "reader@example.com"]
    msg = message_from_bytes(stored.raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


def test_the_note_and_a_take_are_safe_and_everywhere(console: Console) -> None:
    slugs = _draft_slugs(console)
    from readers_support import add_reader

    add_reader(console.engine, "reader@example.com")
    editor, csrf = console.login(EDITOR)
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        subject = issue.subject
    takes = [""] * len(slugs)
    takes[0] = TAKE
    answer = editor.post(
        "/console/issues/1/edit",
        data={
            "csrf": csrf,
            "subject": subject,
            "preheader": "",
            "intro": "",
            "note": NOTE,
            "slug": slugs,
            "position": [str(i) for i in range(len(slugs))],
            "layout": ["full"] * len(slugs),
            "take": takes,
        },
    )
    assert answer.status_code == 200
    # The console: the saved note shown as the email shows it, the history says who.
    assert '<a href="https://example.com/method" rel="noopener">how we score</a>' in answer.text
    assert "note: “”" in answer.text and f"take on {slugs[0]}" in answer.text
    preview = editor.get("/console/issues/1/preview").text
    assert 'href="https://example.com/method"' in preview and TAKE in preview
    assert _unsafe(preview) == []
    weekly_job(console.settings, engine=console.engine, transport=console.outbox)
    html, text = _parts(console)
    assert 'href="https://example.com/method"' in html and "<em>coding</em>" in html
    assert "<li><strong>Voice</strong> is busy</li>" in html
    assert f"Editor’s take: {TAKE}" in html
    assert "how we score (https://example.com/method)" in text
    assert "- Voice is busy" in text and f"Editor’s take: {TAKE}" in text
    # The note sits above the comparisons, in both parts.
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        first = issue_rows(session, issue)[0][0].title
    assert text.index("how we score") < text.index(f"{'-' * 72}\r\n{first}")
    assert html.index("how we score") < html.index(f"{first}</a></h2>")
    assert _unsafe(html) == [] and _unsafe(text) == []
    page = console.client().get("/archive/1").text
    assert 'href="https://example.com/method"' in page and TAKE in page
    assert _unsafe(page) == []
    feed = console.client().get("/archive/feed.atom").text
    atom = "{http://www.w3.org/2005/Atom}"
    [entry] = ET.fromstring(feed).iter(f"{atom}entry")  # noqa: S314 (our own feed)
    content = entry.find(f"{atom}content")
    assert content is not None and content.text is not None
    assert 'href="https://example.com/method"' in content.text and TAKE in content.text
    assert _unsafe(content.text) == []


def test_the_live_preview_is_the_server_rendered_safe_note(console: Console) -> None:
    _draft_slugs(console)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    assert 'src="/console/static/editor.js"' in page
    assert 'data-preview="/console/issues/1/note-preview"' in page
    shown = editor.post("/console/issues/1/note-preview", data={"csrf": csrf, "note": NOTE})
    assert shown.status_code == 200
    assert shown.text == note_html(NOTE, styled=False) and _unsafe(shown.text) == []
    assert editor.post("/console/issues/1/note-preview", data={"note": NOTE}).status_code == 403
    script = editor.get("/console/static/editor.js")
    assert script.status_code == 200 and "note-preview" in script.text


def test_markdown_keeps_links_emphasis_and_lists_and_nothing_else() -> None:
    html = note_html(NOTE + "\n[bad](javascript:alert(1)) <b onclick=x>bold</b>\n\n1. one\n2. two")
    assert "<ol>\n<li>one</li>" in html
    assert "javascript:" not in html.split("[bad]")[0] and "onclick" not in html
    assert "<b" not in html and _unsafe(html) == []
    assert note_html("   ") == "" and note_text("") == ""
    text = note_text("Read [this](https://example.com/x) and *that*.\n\n1. one\n2. two")
    assert text == "Read this (https://example.com/x) and that.\n\n1. one\n2. two"


def test_digest_edit_note_file_and_takes(
    console: Console, digest_cli: DigestCLI, tmp_path: Path
) -> None:
    slugs = _draft_slugs(console)
    note = tmp_path / "note.md"
    note.write_text(NOTE, encoding="utf-8")
    done = digest_cli("edit", "--note-file", note, "--take", f"{slugs[1]}={TAKE}")
    assert done.exit_code == 0, done.output
    assert "note" in done.output and "takes" in done.output
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None and issue.id is not None
        assert issue.note == NOTE.strip()
        assert issue_takes(session, issue) == {slugs[1]: TAKE}
        assert _unsafe(issue.html) == [] and "how we score (https://example.com/method)" in (
            issue.text
        )
        [entry] = [e for e in history(session, issue.id) if e["action"] == "edited"]
    assert entry["note"] == ["", NOTE.strip()]
    # A take can be removed; a bad one is a one-line error; an empty file clears the note.
    note.write_text("", encoding="utf-8")
    cleared = digest_cli("edit", "--note-file", note, "--take", f"{slugs[1]}=")
    assert cleared.exit_code == 0, cleared.output
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        assert issue.note == "" and issue_takes(session, issue) == {}
    bad = digest_cli("edit", "--take", "no-equals-sign")
    assert bad.exit_code == 2 and "SLUG=TEXT" in bad.output and "Traceback" not in bad.output
    unknown = digest_cli("edit", "--take", "not-in-issue=hello")
    assert unknown.exit_code == 1 and "not in the issue" in unknown.output


def test_a_browsers_line_ends_are_not_refused(console: Console) -> None:
    """Browsers send a textarea's lines ending CRLF; the text checks refuse a bare CR,
    so the note and intro are taken with plain line ends."""
    slugs = _draft_slugs(console)
    editor, csrf = console.login(EDITOR)
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        subject = issue.subject
    answer = editor.post(
        "/console/issues/1/edit",
        data={
            "csrf": csrf,
            "subject": subject,
            "intro": "First line.\r\nSecond line.",
            "note": "A *note*\r\n\r\n- one\r\n- two\r\n",
            "slug": slugs,
            "position": [str(i) for i in range(len(slugs))],
            "layout": ["full"] * len(slugs),
            "take": [""] * len(slugs),
        },
    )
    assert answer.status_code == 200, answer.text[:500]
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        assert issue.note == "A *note*\n\n- one\n- two" and "\r" not in issue.intro
