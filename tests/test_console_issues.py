"""An issue in the console: previews, edits (recorded, re-compiled), test copies,
review, the send confirmation and send, pause / resume / cancel, delivery outcomes."""

from __future__ import annotations

import csv
import io
import re
from email import message_from_bytes, policy

import pytest
from console_support import EDITOR, OPERATOR, Console
from sqlalchemy import update

from digest.core.clock import utcnow
from digest.issue.freeze import find_issue, issue_rows
from digest.issue.history import history
from digest.jobs.preview import SAMPLE_RECIPIENT
from digest.jobs.schedule import prepare_draft
from digest.store.engine import session_scope
from digest.store.models import Delivery, Issue

pytestmark = pytest.mark.clock  # freezing and the comparisons new since


def _draft(console: Console) -> Issue:
    with session_scope(console.engine) as session:
        issue = prepare_draft(session, console.settings).issue
    assert issue is not None
    return issue


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").strip("\n").split("\n")


def _slugs(console: Console) -> list[tuple[str, bool]]:
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        return [(c.slug, full) for c, full in issue_rows(session, issue)]


def test_the_list_shows_each_issue_with_its_figures(console: Console) -> None:
    editor, csrf = console.login(EDITOR)
    assert "No issue yet" in editor.get("/console").text
    page = editor.post("/console/draft", data={"csrf": csrf})
    assert "The next issue was frozen as a draft" in page.text
    listing = editor.get("/console").text
    for column in (
        "Week",
        "State",
        "Review",
        "Goes out",
        "Sent",
        "Remaining",
        "Failed",
        "Bounced",
        "Complained",
    ):
        assert f">{column}</th>" in listing
    assert "open" not in re.findall(r">([A-Za-z]+)</th>", listing)
    assert 'href="/console/issues/1"' in listing and "Freeze the next issue" not in listing


def test_previews_are_what_is_sent(console: Console) -> None:
    issue = _draft(console)
    editor, _ = console.login(EDITOR)
    page = editor.get("/console/issues/1")
    assert 'width="600"' in page.text and 'width="375"' in page.text
    assert 'src="/console/issues/1/preview?scheme=dark"' in page.text
    preview = editor.get("/console/issues/1/preview")
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
    eml = editor.get("/console/issues/1/eml")
    assert eml.headers["content-disposition"] == 'attachment; filename="issue-1.eml"'
    parsed = message_from_bytes(eml.content, policy=policy.default)
    assert parsed["Subject"] == issue.subject
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert _lines(html) == _lines(preview.text)  # the same, bar MIME's CRLF line ends
    text = editor.get("/console/issues/1/text")
    assert text.headers["content-type"].startswith("text/plain")
    assert _lines(text.text) == _lines(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert f"Hi {SAMPLE_RECIPIENT.name.split()[0]}," in text.text  # the sample's greeting


def test_the_dark_preview_applies_the_emails_dark_styles(console: Console) -> None:
    from digest.console.views import preview_html

    issue = _draft(console)
    issue.html = issue.html.replace(
        "</head>",
        "<style>@media (prefers-color-scheme: dark) { body { color: #eee } }</style></head>",
    )
    dark = preview_html(issue, console.settings, dark=True)
    assert "@media all { body { color: #eee } }" in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    assert "prefers-color-scheme" not in dark
    assert "prefers-color-scheme: dark" in preview_html(issue, console.settings)
    editor, _ = console.login(EDITOR)
    assert editor.get("/console/issues/1/preview?scheme=sepia").status_code == 422


def test_an_edit_recompiles_and_is_recorded(console: Console) -> None:
    _draft(console)
    before = _slugs(console)
    editor, csrf = console.login(EDITOR)
    # Move the last comparison to the top as a full card, drop the second, and make
    # the first a link.
    slugs = [s for s, _ in before]
    positions = [str(i + 1) for i in range(len(slugs))]
    positions[-1] = "0"
    layouts = ["full" if full else "link" for _, full in before]
    layouts[0], layouts[1], layouts[-1] = "link", "drop", "full"
    answer = editor.post(
        "/console/issues/1/edit",
        data={
            "csrf": csrf,
            "subject": "Two voice agents, one verdict",
            "preheader": "And six more head-to-heads",
            "intro": "Our pick of the week.",
            "slug": slugs,
            "position": positions,
            "layout": layouts,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "done=edited" in answer.headers["location"]
    after = _slugs(console)
    assert after[0] == (slugs[-1], True)
    assert (slugs[0], False) in after and slugs[1] not in [s for s, _ in after]
    preview = editor.get("/console/issues/1/preview").text
    assert "Our pick of the week." in preview
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None and issue.id is not None
        [edit] = [e for e in history(session, issue.id) if e["action"] == "edited"]
    assert edit["actor"] == EDITOR
    assert edit["subject"][1] == "Two voice agents, one verdict"
    page = editor.get("/console/issues/1")
    assert f"edited</strong> by {EDITOR}" in page.text


def test_adding_a_new_comparison_and_bad_edits(console: Console) -> None:
    _draft(console)
    from store_support import sample_items, write_json

    from digest.store.importer import import_comparisons

    late = sample_items()[0]
    late.update(slug="a-late-arrival", title="Late Arrival vs Latecomer")
    late["published_at"] = utcnow().isoformat()
    import_comparisons(
        console.engine, [write_json(console.settings.outbox.parent / "late.json", [late])]
    )
    before = _slugs(console)
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    assert "Late Arrival vs Latecomer" in page and "Add new comparisons" in page
    base = {
        "csrf": csrf,
        "subject": "Subject",
        "slug": [s for s, _ in before],
        "position": [str(i) for i in range(len(before))],
        "layout": ["full" if f else "link" for _, f in before],
    }
    answer = editor.post(
        "/console/issues/1/edit",
        data={**base, "add_slug": ["a-late-arrival"], "add_layout": ["full"]},
    )
    assert answer.status_code == 200
    assert ("a-late-arrival", True) in _slugs(console)
    # Rows that do not line up, a stale form, an unknown layout, an empty subject: 4xx.
    for change in (
        {"position": ["1"]},
        {"slug": ["nope"], "position": ["1"], "layout": ["full"]},
        {"layout": ["sideways"] * len(before)},
        {"subject": "  "},
    ):
        refused = editor.post("/console/issues/1/edit", data={**base, **change})
        assert 400 <= refused.status_code < 500, change


def test_a_test_copy_goes_to_any_address_and_is_recorded(console: Console) -> None:
    issue = _draft(console)
    editor, csrf = console.login(EDITOR)
    refused = editor.post("/console/issues/1/test", data={"csrf": csrf, "to": "x\r\nBcc: a@b.c"})
    assert refused.status_code == 422 and console.outbox.outbox == []
    answer = editor.post("/console/issues/1/test", data={"csrf": csrf, "to": "Proof@Example.com"})
    assert answer.status_code == 200 and "[TEST] copy was accepted" in answer.text
    [copy] = console.outbox.outbox
    assert copy.recipient.email == "proof@example.com"
    assert (
        message_from_bytes(copy.raw, policy=policy.default)["Subject"] == f"[TEST] {issue.subject}"
    )
    assert "proof@example.com" in answer.text  # the history on the page


def test_approve_hold_and_release(console: Console) -> None:
    _draft(console)
    editor, csrf = console.login(EDITOR)
    held = editor.post(
        "/console/issues/1/review", data={"csrf": csrf, "decision": "hold", "note": "prices"}
    )
    assert "review: held" in held.text and f"held by {EDITOR}: prices" in held.text
    released = editor.post("/console/issues/1/review", data={"csrf": csrf, "decision": "release"})
    assert "review: pending" in released.text
    approved = editor.post("/console/issues/1/review", data={"csrf": csrf, "decision": "approve"})
    assert "review: approved" in approved.text
    assert (
        editor.post("/console/issues/1/review", data={"csrf": csrf, "decision": "ship"}).status_code
        == 422
    )


def test_the_operator_confirms_then_sends_and_sees_outcomes(console: Console) -> None:
    _draft(console)
    operator, csrf = console.login(OPERATOR)
    confirm = operator.get("/console/issues/1/send")
    assert "Send issue #1 to 12 subscribers?" in confirm.text
    assert "memory (tests: nobody real gets mail)" in confirm.text
    assert "digest@verdicts.test" in confirm.text
    assert "already went out this week" not in confirm.text
    answer = operator.post("/console/issues/1/send", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].endswith("#progress")
    console.wait_for_send()
    assert len(console.outbox.outbox) == 12
    page = operator.get("/console/issues/1")
    assert 'id="issue-state">sent<' in page.text and "<strong>12</strong> sent" in page.text
    # One delivery failed for good: the filter and the export show exactly it.
    with console.engine.begin() as conn:
        conn.execute(
            update(Delivery.__table__)  # type: ignore[attr-defined]
            .where(Delivery.__table__.c.id == 3)  # type: ignore[attr-defined]
            .values(state="failed", last_error="550 =cmd(evil) no such user")
        )
    failed = operator.get("/console/issues/1/deliveries", params={"show": "failed"})
    assert "1 recipient" in failed.text and "550 =cmd(evil) no such user" in failed.text
    export = operator.get("/console/issues/1/deliveries.csv", params={"show": "failed"})
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:3] == ["email", "state", "attempts"] and len(rows) == 2
    assert rows[1][1] == "failed" and rows[1][5] == "550 =cmd(evil) no such user"
    everyone = list(csv.reader(io.StringIO(operator.get("/console/issues/1/deliveries.csv").text)))
    assert len(everyone) == 13
    assert operator.get("/console/issues/1/deliveries", params={"show": "x"}).status_code == 422
    # Sending it again is refused with a reason; nobody gets a second copy.
    again = operator.post("/console/issues/1/send", data={"csrf": csrf})
    assert again.status_code == 409 and "only a draft is sent" in again.text
    assert len(console.outbox.outbox) == 12


def test_a_second_issue_in_one_week_needs_a_confirmation(console: Console) -> None:
    _draft(console)
    operator, csrf = console.login(OPERATOR)
    operator.post("/console/issues/1/send", data={"csrf": csrf})
    console.wait_for_send()
    from store_support import sample_items, write_json

    from digest.store.importer import import_comparisons

    item = sample_items()[1]
    item.update(slug="next-one", title="Next One vs Other One", published_at=utcnow().isoformat())
    import_comparisons(
        console.engine, [write_json(console.settings.outbox.parent / "n.json", [item])]
    )
    operator.post("/console/draft", data={"csrf": csrf})
    confirm = operator.get("/console/issues/2/send")
    assert "Issue #1 already went out this week" in confirm.text and 'name="again"' in confirm.text
    refused = operator.post("/console/issues/2/send", data={"csrf": csrf})
    assert refused.status_code == 409 and len(console.outbox.outbox) == 12
    operator.post("/console/issues/2/send", data={"csrf": csrf, "again": "yes"})
    console.wait_for_send()
    assert len(console.outbox.outbox) == 24


def test_pause_resume_and_cancel(console: Console) -> None:
    _draft(console)
    operator, csrf = console.login(OPERATOR)
    paused = operator.post("/console/issues/1/pause", data={"csrf": csrf})
    assert paused.status_code == 200 and 'id="issue-state">paused<' in paused.text
    assert f"paused by {OPERATOR}" in paused.text
    assert "Resume" in paused.text
    refused = operator.post("/console/issues/1/cancel", data={"csrf": csrf})
    assert refused.status_code == 422  # the "yes, cancel it" box
    operator.post("/console/issues/1/resume", data={"csrf": csrf})
    console.wait_for_send()
    assert len(console.outbox.outbox) == 12
    late = operator.post("/console/issues/1/cancel", data={"csrf": csrf, "sure": "yes"})
    assert late.status_code == 409 and "sent" in late.text
    assert operator.get("/console/issues/99").status_code == 404
    assert operator.get("/console/issues/not-a-number").status_code == 422


def test_cancel_skips_what_is_not_sent(console: Console) -> None:
    _draft(console)
    operator, csrf = console.login(OPERATOR)
    answer = operator.post("/console/issues/1/cancel", data={"csrf": csrf, "sure": "yes"})
    assert 'id="issue-state">cancelled<' in answer.text
    assert operator.post("/console/issues/1/send", data={"csrf": csrf}).status_code == 409
    assert console.outbox.outbox == []
